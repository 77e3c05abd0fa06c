// Package sandbox starts and ends the processes behind jobs. It is mechanism
// only: processes, process groups, file descriptors, cgroups (v1 and v2),
// namespaces, the init helper and its C reaper, prepared initiators and
// usage; it knows nothing of TOML, WebSockets or the ledger.
//
// A job has exactly three descriptors: fd 1 is a pipe, and fd 0 and fd 2 are
// the same end of one socketpair (so the three streams cost the supervisor
// two fds; stdout, the bulk stream, gets the cheaper pipe). Every other descriptor of the server is close-on-exec. A sandboxed
// job's exit status travels in its init's comm, not on a fourth descriptor.
//
// Exactly one Runner may exist in a process at a time, because it owns every
// child of the process: it reaps them all from one goroutine (the server is a
// child subreaper, so orphaned grandchildren are reaped too). Do not start
// children with os/exec while a Runner is open; their Wait would race ours.
package sandbox

import (
	"errors"

	"fmt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"strings"
	"syscall"
	"time"
)

var (
	// ErrExited is returned when signalling a process that has already exited.
	ErrExited = errors.New("process has exited")
	// ErrRunnerBusy is returned by NewRunner while another Runner is open.
	ErrRunnerBusy = errors.New("another sandbox.Runner owns this process's children")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("sandbox runner is closed")
)

// InitArg is the argv[1] that makes the chimirror binary (or a test binary)
// act as a job's init. In Linux builds with cgo the C init (init_linux.c)
// takes it before Go starts; otherwise main must hand it to RunInit first,
// before flags, logging or anything that opens files.
const InitArg = "sandbox-init"

// goInitArg runs the Go init even where the C one is built in, so the tests
// hold both to one contract.
const goInitArg = "sandbox-init-go"

// IsInit reports whether args (os.Args) ask for a job's init; main must
// then call RunInit, which never returns.
func IsInit(args []string) bool {
	return len(args) > 1 && (args[1] == InitArg || args[1] == goInitArg)
}

// Spec describes one process to start. Path must be absolute: executables are
// resolved when configuration is loaded, never per job.
type Spec struct {
	Path string
	Args []string // argv, including argv[0]
	Env  []string // the complete environment; nothing is inherited
	Dir  string   // working directory; empty means the server's
	// Isolation, when set, runs the job sandboxed (Linux, root).
	Isolation *Isolation
}

// Isolation asks for a sandboxed job: its own cgroup with Resources, new
// pid, mount, UTS and IPC namespaces (and network unless Network), a fresh
// /proc, a private /tmp, rlimits, no_new_privs, no capabilities, and UID:GID.
// A nil Isolation in a Spec means a plain process.
type Isolation struct {
	ID string // names the cgroup and is the hostname
	// CgroupParent is the directory, under the server's own cgroup in each
	// hierarchy, that holds the job's cgroup; DefaultCgroupParent if empty.
	// Leftovers sweeps one parent, so servers that must not sweep each
	// other's jobs use different parents.
	CgroupParent  string
	CgroupVersion int // 1 or 2; 0 means CgroupVersion()
	Resources     *specs.LinuxResources
	Rlimits       []specs.POSIXRlimit
	Network       bool // keep the host's network namespace
	TmpSizeBytes  int64
	UID, GID      uint32 // the target's ids; inside the user namespace when UserNamespace
	// UserNamespace gives the job a user namespace of its own: ids 0–65535
	// inside are UserNamespaceBase… on the host, so even a job running as
	// root inside is an unprivileged, unused uid outside.
	UserNamespace bool
}

// UserNamespaceBase is the first host id of a user-namespaced job's range.
const UserNamespaceBase = 100000

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code   int            // exit code, or 128+signal when Signal != 0 (shell convention)
	Signal syscall.Signal // the signal that killed it, or 0
	// Rusage of the process and its reaped descendants.
	UserCPU     time.Duration
	SystemCPU   time.Duration
	MaxRSSBytes int64
}

// String renders the status as "exit 3" or "signal KILL".
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "signal " + SignalName(s.Signal)
	}
	return fmt.Sprintf("exit %d", s.Code)
}

// Usage is what a job has consumed, read from its cgroup.
type Usage struct {
	CPUUserNs, CPUSystemNs int64
	CPUThrottledNs         int64
	MemoryCurrentBytes     int64
	// MemoryPeakBytes is -1 when the kernel does not report it (cgroup v2
	// before Linux 5.19 has no memory.peak): unknown, not zero.
	MemoryPeakBytes int64
	OOMKills        int64
	PidsCurrent     int64
	// PidsPeak is -1 when unknown (pids.peak is Linux ≥ 6.1, v2 only).
	PidsPeak int64
	// PidsLimitHits counts forks refused by the pids limit.
	PidsLimitHits int64
}

// ParseSignal accepts "TERM", "SIGTERM" or "term". Which names a config may
// use is policies' business (CanonicalSignal); this only maps them.
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if s := unix.SignalNum("SIG" + n); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}

// SignalName returns "TERM" for SIGTERM, or "SIG<n>" for an unnamed signal.
func SignalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return fmt.Sprintf("SIG%d", int(s))
}

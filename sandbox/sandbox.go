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
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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
	return len(args) > 1 && (args[1] == InitArg || args[1] == goInitArg || args[1] == execArg)
}

// execArg runs the Go init's exec helper (see execFiltered in
// init_linux.go), where RunInit is called.
const execArg = "sandbox-exec"

// Spec describes one process to start. Path must be absolute: executables are
// resolved when configuration is loaded, never per job.
type Spec struct {
	Path string
	Args []string // argv, including argv[0]
	Env  []string // the complete environment; nothing is inherited
	// Dir is the working directory; empty means the server's for a plain
	// process and / for a sandboxed one, which never sees the server's.
	Dir string
	// Isolation, when set, runs the job sandboxed (Linux, root).
	Isolation *Isolation
}

// Isolation asks for a sandboxed job: its own cgroup with Resources; new
// pid, mount, UTS, IPC and cgroup namespaces (and network unless Network);
// a root of its own built from View; rlimits, no_new_privs, no
// capabilities, a seccomp filter and a uid no other running job has.
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
	// OOMGroup: when the OOM killer kills a process of the job, the rest
	// of the job is killed too. v2 does it in the kernel
	// (memory.oom.group); v1 has no such control, so there Process.Usage
	// kills the job the first time it reads an OOM kill, and a caller that
	// sets OOMGroup samples Usage (the supervisor does, each sample).
	OOMGroup bool
	Rlimits  []specs.POSIXRlimit
	Network  bool // keep the host's network namespace
	// TmpSizeBytes sizes the job's own tmpfs, which holds its /tmp,
	// /var/tmp, /run, /dev/shm and View.Tmpfs together; 0 is the kernel's
	// default, half of RAM. Its pages are charged to the job's memory
	// cgroup.
	TmpSizeBytes int64
	// UID and GID are the target's ids (inside the user namespace when
	// UserNamespace). With DynamicUser the Runner picks them instead.
	UID, GID uint32
	// DynamicUser gives the job a uid and gid of its own (systemd's
	// DynamicUser=): one of the Runner's DynamicIDs, held by no other
	// running job, or DynamicNamespaceID inside a user namespace of its own.
	DynamicUser bool
	// UserName and GroupName are the job's ids' names in the /etc/passwd
	// and /etc/group made for it; empty means "job".
	UserName, GroupName string
	// UserNamespace gives the job a user namespace of its own: ids 0–65535
	// inside are a block of the Runner's UserNamespaceIDs that no other
	// running job has, so even a job running as root inside is an
	// unprivileged, unused uid outside.
	UserNamespace bool
	// View is the job's filesystem.
	View View
	// Seccomp is the job's syscall filter (CompileSeccomp); nil for none.
	Seccomp *SeccompFilter
}

// fillers is how many goroutines fill a pool: a prepare spends part of its
// time waiting on the helper, so a second one keeps both cores busy.
const fillers = 2

// PoolHolds is the most sandboxes a pool of size holds prepared at once,
// each with its ids: size ready, and one per filler waiting to hand its
// over.
func PoolHolds(size int) int { return size + fillers }

// DynamicNamespaceID is a dynamic user's uid and gid inside a user
// namespace of its own: the namespace's block makes it unique on the host.
const DynamicNamespaceID = 1000

// View is what a sandboxed job sees of the filesystem. Its root is a fresh
// tmpfs, read-only once built, that holds:
//   - RO and RW: host paths bound at the same place, with what is mounted
//     below them, read-only or read-write, never with devices or setuid. A
//     path that is a symlink on the host is the same symlink in the view.
//   - /tmp, /var/tmp, /run, /dev/shm and each Tmpfs path: directories of
//     the job's own tmpfs (see Isolation.TmpSizeBytes);
//   - /dev with null, zero, full, random, urandom, tty and a new devpts
//     instance (ptmx), and nothing else;
//   - a fresh /proc with runc's masked and read-only paths, and /proc/cmdline
//     masked too;
//   - /etc/passwd, /etc/group, /etc/hosts and /etc/nsswitch.conf made for
//     the job (root, nobody and the job's own ids only), unless RO binds
//     the host's;
//   - a fresh read-only /sys, only with Sys.
//
// Hide lists host paths that stay out of sight even inside a bound path:
// each is masked by an empty read-only directory or an empty file.
type View struct {
	RO, RW []string
	Tmpfs  []string
	Hide   []string
	Sys    bool
}

// Visible reports whether the host path p can be seen inside the view:
// it is at or below an RO or RW path and not at or below a Hide path. p
// must be absolute and clean.
func (v View) Visible(p string) bool {
	for _, h := range v.Hide {
		if Within(p, h) {
			return false
		}
	}
	for _, b := range v.RO {
		if Within(p, b) {
			return true
		}
	}
	for _, b := range v.RW {
		if Within(p, b) {
			return true
		}
	}
	return false
}

// Within reports whether path p is dir or below it (both clean and absolute).
func Within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

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

// SignalName returns "TERM" for SIGTERM, or "SIG<n>" for an unnamed signal.
func SignalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return fmt.Sprintf("SIG%d", int(s))
}

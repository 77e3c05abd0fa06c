package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The parent/init handshake. The init is born in the job's namespaces (and,
// on v2, its cgroup) with fds 0–2 the job's stdio and fd 3 a sync socket; it
// runs nothing of the job until the parent says go. Messages are framed as
// in init_wire_linux.go. The init is C (init_linux.c, run from an ELF
// constructor before any Go runtime) or, without cgo, Go (RunInit); both
// keep this contract.
//
//	supervisor (Runner.Prepare, Launch)       init: chimirror sandbox-init
//	──────────────────────────────────        ───────────────────────────────
//	create cgroup (v2: dir fd)
//	clone NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET]
//	      [v2: CLONE_INTO_CGROUP] ──────────► block all signals; read fd 3
//	v1: AddProc(init) in every controller
//	send "prepare" message ─────────────────► lo up, / rprivate, /proc,
//	                                          tmpfs /tmp, rlimits,
//	                                          no_new_privs, bounding set
//	                                          (CAP_KILL only)
//	read "prepared" or "error: …" ◄────────── reply; wait for the job
//	   … an initiator may wait in a pool here (cold part done) …
//	send "job" message ─────────────────────► hostname = job ID
//	                                          fork+exec target as uid:gid
//	                                          drop own caps to CAP_KILL
//	read "ok" or "error: …" ◄──────────────── reply; close 0, 1, 2 and 3
//	close sync socket (3 fds remain)          PID 1: reap all, forward signals
//	                                          target exits: kill the rest,
//	                                          comm := "cm:eN" / "cm:sN",
//	reaper: waitid(WNOWAIT), read comm,       exit
//	        kill cgroup, reap  ◄──────────────
//
// If the parent dies, or discards a prepared initiator, fd 3 reads EOF and
// the init exits 111 without running anything; Pdeathsig kills it too.
type prepareConfig struct {
	NewNet       bool // a fresh network namespace: bring lo up
	UID, GID     uint32
	Rlimits      []rlimit
	TmpSizeBytes int64
}

// rlimit is one setrlimit call; Resource is the kernel's RLIMIT_* number.
type rlimit struct {
	Resource   int
	Soft, Hard uint64
}

// jobConfig is what only the job knows.
type jobConfig struct {
	Path     string
	Args     []string
	Env      []string
	Dir      string
	Hostname string
}

// helperCommPrefix marks the status an init leaves in its comm (15 bytes).
const helperCommPrefix = "cm:"

// RunInit is the Go init's main (see the handshake above). It never returns.
func RunInit() {
	// One thread does everything: no_new_privs and the capability bounding
	// set are per-thread and inherited by the target forked from it.
	runtime.LockOSThread()
	sync := os.NewFile(3, "sync")
	syscall.CloseOnExec(3)
	// Subscribe before the target exists: a target that exits at once must
	// not leave us waiting for a SIGCHLD that came too early.
	sigs := make(chan os.Signal, 16)
	// Not SIGURG (the Go runtime's preemption) nor SIGPIPE.
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGCONT)
	fail := func(err error) {
		if _, werr := fmt.Fprintf(sync, "error: %v\n", err); werr != nil {
			os.Exit(113)
		}
		os.Exit(112)
	}
	// The server gone (EOF) ends us with 111 and nothing run; a malformed
	// message is an error the server hears.
	read := func() *initFields {
		msg, err := readInitMsg(sync)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			os.Exit(111)
		}
		if err != nil {
			fail(err)
		}
		return msg
	}
	msg := read()
	prep, err := decodePrepare(msg)
	if err != nil {
		fail(err)
	}
	if err := prepare(prep); err != nil {
		fail(err)
	}
	if _, err := fmt.Fprint(sync, "prepared\n"); err != nil {
		os.Exit(113)
	}
	job, err := decodeJob(read()) // EOF: discarded before a job came
	if err != nil {
		fail(err)
	}
	pid, err := startTarget(prep, job)
	if err != nil {
		fail(err)
	}
	// Only the target holds the job's streams now, so its EOF is theirs. fd 2
	// becomes /dev/null rather than a gap, so that a runtime crash message
	// cannot land in a file opened later. The init's own later complaints
	// (a failed kill or status record) are lost with it, as the C init's
	// are; the reaper still sees the init exit.
	syscall.Close(0)
	syscall.Close(1)
	if null, err := syscall.Open("/dev/null", syscall.O_WRONLY|syscall.O_CLOEXEC, 0); err == nil {
		syscall.Dup3(null, 2, 0)
		syscall.Close(null)
	} else {
		syscall.Close(2)
	}
	if _, err := fmt.Fprint(sync, "ok\n"); err != nil {
		os.Exit(113)
	}
	sync.Close()
	os.Exit(reapAndForward(sigs, pid))
}

// prepare is everything that does not depend on the job.
func prepare(cfg *prepareConfig) error {
	if cfg.NewNet {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring lo up: %w", err)
		}
	}
	// Mounts first: Go never makes propagation private for Cloneflags, and
	// on systemd hosts / is shared, so our mounts would leak to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if cfg.TmpSizeBytes > 0 {
		opts := "mode=1777,size=" + strconv.FormatInt(cfg.TmpSizeBytes, 10)
		if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return fmt.Errorf("mount tmpfs /tmp: %w", err)
		}
	}
	for _, rl := range cfg.Rlimits {
		if err := unix.Setrlimit(rl.Resource, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("set rlimit %d: %w", rl.Resource, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// Every capability leaves the bounding set but CAP_KILL, so nothing the
	// target execs can gain one. The target runs as the policy's user with
	// no_new_privs, so its effective and permitted sets are empty. (The C
	// init also drops its own to CAP_KILL; the Go one stays root.)
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if c == unix.CAP_KILL {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	return nil
}

// startTarget runs the job's program in the prepared sandbox.
func startTarget(prep *prepareConfig, cfg *jobConfig) (int, error) {
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return 0, fmt.Errorf("set hostname: %w", err)
		}
	}
	attr := &syscall.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: prep.UID, Gid: prep.GID, Groups: []uint32{}},
			Setsid:     true,
		},
	}
	pid, err := syscall.ForkExec(cfg.Path, cfg.Args, attr)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	return pid, nil
}

var rlimitNames = map[string]int{
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_CORE": unix.RLIMIT_CORE,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_AS": unix.RLIMIT_AS,
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_DATA": unix.RLIMIT_DATA,
}

// reapAndForward is PID 1's life: forward every catchable signal to the
// whole namespace, reap every orphan, and when the target ends, kill what
// is left and leave its status in comm.
func reapAndForward(sigs <-chan os.Signal, target int) int {
	for {
		for { // reap before every wait: SIGCHLDs coalesce
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid != target {
				continue
			}
			if err := syscall.Kill(-1, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				fmt.Fprintf(os.Stderr, "chimirror init: kill leftovers: %v\n", err)
			}
			return leaveStatus(ws)
		}
		sig := (<-sigs).(syscall.Signal)
		if sig == syscall.SIGCHLD {
			continue
		}
		// kill(-1) reaches every process of the namespace but us.
		if err := syscall.Kill(-1, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "chimirror init: forward %v: %v\n", sig, err)
		}
	}
}

// leaveStatus records the target's end where the server's reaper will read
// it, and returns the exit code the init mirrors.
func leaveStatus(ws syscall.WaitStatus) int {
	comm, code := fmt.Sprintf("%se%d", helperCommPrefix, ws.ExitStatus()), ws.ExitStatus()
	if ws.Signaled() {
		comm, code = fmt.Sprintf("%ss%d", helperCommPrefix, int(ws.Signal())), 128+int(ws.Signal())
	}
	if err := os.WriteFile("/proc/self/comm", []byte(comm), 0); err != nil {
		fmt.Fprintf(os.Stderr, "chimirror init: record status: %v\n", err)
	}
	return code
}

// helperStatus reads the status a helper left in its comm while it is an
// unreaped zombie; ok is false if it left none (it died before the target).
func helperStatus(pid int) (st ExitStatus, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return st, false
	}
	s, found := strings.CutPrefix(strings.TrimSpace(string(b)), helperCommPrefix)
	if !found || len(s) < 2 {
		return st, false
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil {
		return st, false
	}
	switch s[0] {
	case 'e':
		return ExitStatus{Code: n}, true
	case 's':
		return ExitStatus{Code: 128 + n, Signal: syscall.Signal(n)}, true
	}
	return st, false
}

// loopbackUp sets lo up in a new network namespace (it starts down), so a
// job can talk to itself on 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

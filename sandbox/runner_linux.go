package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var runnerOpen atomic.Bool

// unignoreSignals catches, into a channel no one reads, every signal this
// process was started ignoring (nohup's HUP; INT and QUIT in a script's
// background): an exec keeps a signal ignored, so a plain job would never
// see its exit signal. Caught, it is still ignored here and reset in every
// child. (The inits reset what they inherit themselves.)
func unignoreSignals() {
	discard := make(chan os.Signal, 1)
	for sig := syscall.Signal(1); sig < 32; sig++ {
		if sig != syscall.SIGKILL && sig != syscall.SIGSTOP && signal.Ignored(sig) {
			signal.Notify(discard, sig)
		}
	}
}

// Runner starts processes and owns every child of this process.
//
// Reaping contract: when a job's leader exits, the reaper first kills the
// leader's whole process group, while the unreaped zombie still pins the
// group id (so the kill cannot hit a recycled pgid), then reaps the leader and
// publishes its status. Orphans adopted through the subreaper are reaped and
// forgotten.
type Runner struct {
	log *slog.Logger

	mu     sync.Mutex // held across fork+register so the reaper never sees an unregistered leader
	procs  map[int]*Process
	closed bool

	sigs chan os.Signal
	stop chan struct{}
	done chan struct{}

	goInit      bool // tests: the Go init even where the C one is built in
	noTemplates bool // tests: every init builds its job's root itself

	dynIDs, nsIDs *idPool // ids held by running sandboxes
	plans         planCache
	tmpls         templates
	// aux are the Runner's children that are no job's: template holders,
	// each with the channel closed once it is reaped. Under mu.
	aux map[int]chan struct{}
}

// initArg is argv[1] of a sandbox's init.
func (r *Runner) initArg() string {
	if r.goInit {
		return goInitArg
	}
	return InitArg
}

// NewRunner makes this process a child subreaper, marks every inherited
// descriptor ≥ 3 close-on-exec and starts the reaper. Close it when done.
func NewRunner(log *slog.Logger, opts RunnerOptions) (_ *Runner, retErr error) {
	if !runnerOpen.CompareAndSwap(false, true) {
		return nil, ErrRunnerBusy
	}
	defer func() {
		if retErr != nil {
			runnerOpen.Store(false)
		}
	}()
	unignoreSignals()
	if opts.DynamicIDs.Count == 0 {
		opts.DynamicIDs = DefaultDynamicIDs
	}
	if opts.UserNamespaceIDs.Count == 0 {
		opts.UserNamespaceIDs = DefaultUserNamespaceIDs
	}
	if opts.DynamicIDs.Overlaps(opts.UserNamespaceIDs) {
		return nil, fmt.Errorf("dynamic ids %s overlap user namespace ids %s", opts.DynamicIDs, opts.UserNamespaceIDs)
	}
	if opts.UserNamespaceIDs.Count < UserNamespaceBlock {
		return nil, fmt.Errorf("user namespace ids %s: fewer than one block of %d", opts.UserNamespaceIDs, UserNamespaceBlock)
	}
	if err := closeExecFrom(3); err != nil {
		return nil, fmt.Errorf("mark inherited fds close-on-exec: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	// On a v2 host with the controllers delegated, the server leaves its
	// delegated cgroup for its leaf now, before it has a child: a child
	// left in the delegated cgroup would keep job cgroups from their
	// controllers (see delegated2). Where that fails, every sandboxed
	// job's start says why.
	if CgroupVersion() == 2 && os.Geteuid() == 0 && available2(unifiedMount()) == nil {
		if _, err := delegated2(); err != nil {
			log.Warn("cgroup v2 delegation", "err", err)
		}
	}
	r := &Runner{
		log:   log,
		procs: make(map[int]*Process),
		aux:   make(map[int]chan struct{}),
		sigs:  make(chan os.Signal, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),

		dynIDs: newIDPool("dynamic uid", opts.DynamicIDs, 1),
		nsIDs:  newIDPool("user namespace ids", opts.UserNamespaceIDs, UserNamespaceBlock),
	}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.reapLoop()
	return r, nil
}

// Close stops the reaper. Processes still running are killed first and
// reaped, so no job outlives its Runner.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	live := make([]*Process, 0, len(r.procs))
	for _, p := range r.procs {
		live = append(live, p)
	}
	r.mu.Unlock()
	for _, p := range live {
		if err := p.Kill(); err != nil && !errors.Is(err, ErrExited) {
			r.log.Warn("kill at runner close", "pid", p.Pid, "err", err)
		}
	}
	for _, p := range live {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			r.log.Error("process did not die after SIGKILL", "pid", p.Pid)
		}
	}
	// Template holders end at EOF on their sockets; the reaper reaps them.
	r.tmpls.close()
	r.mu.Lock()
	aux := make(map[int]chan struct{}, len(r.aux))
	maps.Copy(aux, r.aux)
	r.mu.Unlock()
	for pid, done := range aux {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				r.log.Warn("kill template holder at runner close", "pid", pid, "err", err)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				r.log.Error("template holder did not die after SIGKILL", "pid", pid)
			}
		}
	}
	close(r.stop)
	<-r.done
	signal.Stop(r.sigs)
	runnerOpen.Store(false)
	return nil
}

// Running reports how many started processes have not been reaped.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.procs)
}

func (r *Runner) reapLoop() {
	defer close(r.done)
	// A periodic sweep guards against a lost wakeup; SIGCHLD does the real work.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reapAll()
		select {
		case <-r.sigs:
		case <-tick.C:
		case <-r.stop:
			return
		}
	}
}

// pidOffset is where si_pid sits in siginfo_t: after three int32s, aligned
// to the union's pointer alignment.
const pidOffset = (12 + unsafe.Sizeof(uintptr(0)) - 1) &^ (unsafe.Sizeof(uintptr(0)) - 1)

func (r *Runner) reapAll() {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: no children at all
			return
		}
		pid := int(*(*int32)(unsafe.Add(unsafe.Pointer(&info), pidOffset)))
		if pid == 0 {
			return
		}
		r.mu.Lock()
		p := r.procs[pid]
		delete(r.procs, pid)
		done := r.aux[pid]
		delete(r.aux, pid)
		r.mu.Unlock()
		if p == nil {
			reap(pid) // a template holder, or an adopted orphan
			if done != nil {
				close(done)
			}
			continue
		}
		p.exit()
	}
}

func reap(pid int) (syscall.WaitStatus, syscall.Rusage) {
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, &ru)
		if !errors.Is(err, syscall.EINTR) {
			return ws, ru
		}
	}
}

// Process is one started job leader and its process group.
type Process struct {
	Pid int
	// Stdio is the supervisor's end of the socketpair that is the process's
	// fd 0 and fd 2: stdin is written to it and stderr read from it. It is
	// non-blocking and pollable (deadlines work).
	Stdio *os.File
	// Stdout is the read end of the pipe that is the process's fd 1.
	Stdout *os.File

	cg       jobCgroup // nil for a plain process
	isolated bool      // Pid is the job's init helper
	ids      jobIDs    // a sandbox's ids, given back by Close
	runner   *Runner

	mu     sync.Mutex // orders signals against the reap; see Runner
	exited bool
	status ExitStatus
	done   chan struct{}
	after  []func()
}

// Start forks and execs spec in a new process group. The process has fds 0–2
// only, a clean environment and Pdeathsig SIGKILL (the forking thread is never
// locked, so it lives as long as the server; see go.dev/issue/27505).
func (r *Runner) Start(spec Spec) (_ *Process, retErr error) {
	if spec.Isolation != nil {
		return r.startIsolated(spec)
	}
	fds, err := newJobFds()
	if err != nil {
		return nil, err
	}
	// The child's ends are closed once forked; ours are closed on failure.
	defer closeFds(fds.childStdio, fds.childStdout)
	defer func() {
		if retErr != nil {
			closeFds(fds.stdio, fds.stdout)
		}
	}()
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: fds.childFiles(),
		Sys: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	pid, err := syscall.ForkExec(spec.Path, spec.Args, attr)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p := &Process{
		Pid:    pid,
		Stdio:  os.NewFile(uintptr(fds.stdio), "stdio"),
		Stdout: os.NewFile(uintptr(fds.stdout), "stdout"),
		done:   make(chan struct{}),
	}
	r.procs[pid] = p
	r.mu.Unlock()
	return p, nil
}

// exit runs on the reaper: kill the group while the zombie pins its id, then
// reap and publish.
func (p *Process) exit() {
	p.mu.Lock()
	after := p.after
	p.after = nil
	defer func() {
		p.mu.Unlock()
		for _, f := range after {
			f()
		}
	}()
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		slog.Warn("kill process group of exited leader", "pgid", p.Pid, "err", err)
	}
	helperSt, fromHelper := ExitStatus{}, false
	if p.isolated { // read while the zombie keeps its comm
		helperSt, fromHelper = helperStatus(p.Pid)
	}
	ws, ru := reap(p.Pid)
	st := ExitStatus{
		UserCPU:     time.Duration(ru.Utime.Nano()),
		SystemCPU:   time.Duration(ru.Stime.Nano()),
		MaxRSSBytes: ru.Maxrss * 1024,
	}
	switch {
	case fromHelper:
		st.Code, st.Signal = helperSt.Code, helperSt.Signal
	case ws.Signaled():
		st.Signal = ws.Signal()
		st.Code = 128 + int(st.Signal)
	default:
		st.Code = ws.ExitStatus()
	}
	p.status = st
	p.exited = true
	close(p.done)
}

// AfterExit arranges for f to run once the process has been reaped, or runs
// it now if it already has been. f may run on the reaper, so it must not block.
func (p *Process) AfterExit(f func()) {
	p.mu.Lock()
	if !p.exited {
		p.after = append(p.after, f)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	f()
}

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status is valid once Done is closed.
func (p *Process) Status() ExitStatus {
	<-p.done
	return p.status
}

// Signal sends sig to the whole job: the process group of a plain job, or
// the init helper of a sandboxed one, which passes it to every process in
// the job's namespace. It returns ErrExited once the leader has been
// reaped, so a recycled pid or group id is never signalled.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return ErrExited
	}
	if p.cg != nil && sig == syscall.SIGKILL && !p.isolated {
		return p.cg.Kill()
	}
	// A sandboxed job's init is PID 1 of the job's pid namespace, and the
	// kernel kills every process in a namespace whose PID 1 dies: one kill
	// ends the whole job, with no v1 freeze (thousands of jobs ending at
	// once wait in turn on the freezer). Close still empties the cgroup.
	target := -p.Pid
	if p.isolated {
		target = p.Pid
	}
	if err := syscall.Kill(target, sig); err != nil {
		return fmt.Errorf("signal %s to job %d: %w", SignalName(sig), p.Pid, err)
	}
	return nil
}

// Kill sends SIGKILL to every process of the job: its whole cgroup when it
// has one.
func (p *Process) Kill() error { return p.Signal(syscall.SIGKILL) }

// Sandboxed reports whether the job has a cgroup and namespaces.
func (p *Process) Sandboxed() bool { return p.cg != nil }

// CgroupPath is the job's cgroup relative to the server's own ("" for a
// plain job). Its last element is the name Leftovers reports after a crash.
func (p *Process) CgroupPath() string {
	if p.cg == nil {
		return ""
	}
	return p.cg.Path()
}

// Usage reads the job's cgroup; plain jobs have none.
func (p *Process) Usage() (Usage, error) {
	if p.cg == nil {
		return Usage{}, errors.New("plain job: no cgroup to read")
	}
	return p.cg.Usage()
}

// CloseStdin makes the process read EOF on fd 0; its stdout and stderr stay
// open.
func (p *Process) CloseStdin() error {
	rc, err := p.Stdio.SyscallConn()
	if err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	if serr != nil && !errors.Is(serr, syscall.ENOTCONN) {
		return fmt.Errorf("close stdin: %w", serr)
	}
	return nil
}

// Close releases the supervisor's descriptors and, for a sandboxed job,
// kills whatever is left in its cgroup, waits until it is empty and deletes
// it. Call it after Done.
func (p *Process) Close() error {
	err := errors.Join(p.Stdio.Close(), p.Stdout.Close())
	if p.cg != nil {
		if kerr := killAndWait(p.cg, 5*time.Second); kerr != nil {
			// Keep the cgroup and the ids: something is stuck in it.
			return errors.Join(err, kerr)
		}
		err = errors.Join(err, p.cg.Delete())
		// Nothing of the job runs now, so its mount namespace, and the
		// tmpfs in it, are gone with its last process.
		p.runner.giveIDs(p.ids)
		p.ids = jobIDs{}
	}
	return err
}

// jobFds are a job's stdio: the child's ends and the supervisor's ends,
// non-blocking so the poller serves them. All are close-on-exec; the child's
// are dup'ed into place at fork (childFiles).
//
// stdout, the bulk stream, is a pipe: a writer pays about half the CPU per
// byte it pays on a UNIX socket. stdin and stderr share one socketpair, so a
// job costs the supervisor two descriptors.
type jobFds struct{ stdio, stdout, childStdio, childStdout int }

// childFiles is the child's fd 0, 1 and 2.
func (f jobFds) childFiles() []uintptr {
	return []uintptr{uintptr(f.childStdio), uintptr(f.childStdout), uintptr(f.childStdio)}
}

// stdoutPipeBytes is the stdout pipe's capacity (the default is 64 KiB): a
// streaming job writes more per wakeup, and the supervisor reads bigger
// chunks. It is memory only while output waits unread.
const stdoutPipeBytes = 256 << 10

// growPipes: only a root server grows stdout pipes. The kernel counts an
// unprivileged user's pipe pages (pipe-user-pages-soft, 64 MiB by default)
// and past it gives every new pipe of that user, the jobs' own included,
// only 8 KiB; a 256 KiB pipe would get there at 256 jobs instead of 1,024.
var growPipes = sync.OnceValue(func() bool { return os.Geteuid() == 0 })

func newJobFds() (jobFds, error) {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return jobFds{}, fmt.Errorf("socketpair for stdin and stderr: %w", err)
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		closeFds(sp[0], sp[1])
		return jobFds{}, fmt.Errorf("pipe for stdout: %w", err)
	}
	f := jobFds{stdio: sp[0], childStdio: sp[1], stdout: p[0], childStdout: p[1]}
	if growPipes() {
		// Best effort: without memory for it the pipe keeps the default.
		if _, err := unix.FcntlInt(uintptr(f.stdout), unix.F_SETPIPE_SZ, stdoutPipeBytes); err != nil &&
			!errors.Is(err, syscall.ENOMEM) && !errors.Is(err, syscall.EPERM) {
			closeFds(f.stdio, f.childStdio, f.stdout, f.childStdout)
			return jobFds{}, fmt.Errorf("size stdout pipe: %w", err)
		}
	}
	for _, fd := range []int{f.stdio, f.stdout} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			closeFds(f.stdio, f.childStdio, f.stdout, f.childStdout)
			return jobFds{}, fmt.Errorf("set non-blocking: %w", err)
		}
	}
	return f, nil
}

func closeFds(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			if err := syscall.Close(fd); err != nil {
				slog.Warn("close fd", "fd", fd, "err", err)
			}
		}
	}
}

// closeExecFrom marks every descriptor ≥ low close-on-exec, so descriptors
// inherited from whoever launched the server never reach a job (runc does the
// same after CVE-2024-21626).
func closeExecFrom(low int) error {
	err := unix.CloseRange(uint(low), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd >= low {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

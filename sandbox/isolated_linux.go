package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// handshakeTimeout bounds each step of the helper's handshake.
const handshakeTimeout = 10 * time.Second

// prepared names pool initiators' cgroups until they get a job.
var prepared atomic.Uint64

// preparedEpoch sets this process's initiator names apart from a dead
// server's, which recovery may still be sweeping: a restarted server often
// gets the same pid (a container's, say), and job IDs, unique in the
// ledger, are the only other part of a job cgroup's name.
var preparedEpoch = strconv.FormatInt(time.Now().UnixNano(), 36)

// Initiator is a sandbox prepared ahead of its job (the mainframe's idea):
// its cgroup and namespaces exist and its init helper has done every step
// that does not depend on the job, and waits. Launch it once, or Discard it.
type Initiator struct {
	r    *Runner
	p    *Process
	sync *os.File
	br   *bufio.Reader
	host string // the job's hostname: its Isolation.ID
}

// startIsolated runs spec in a sandbox made for it.
func (r *Runner) startIsolated(spec Spec) (*Process, error) {
	job, err := jobMsgFor(spec, spec.Isolation.ID)
	if err != nil {
		return nil, err
	}
	// The job goes with the prepare message: the init finds it waiting as
	// soon as it is prepared, a round trip sooner.
	in, err := r.prepare(*spec.Isolation, job)
	if err != nil {
		return nil, err
	}
	return in.launch(nil, nil)
}

// Prepare creates a sandbox for iso (see the handshake in init_linux.go) up
// to the point where only the job is missing. iso.ID names its cgroup; an
// empty ID gets a generated one. Setup is undone step by step on failure.
func (r *Runner) Prepare(iso Isolation) (*Initiator, error) { return r.prepare(iso, nil) }

// prepare is Prepare; a non-nil job (a job message) is sent with the
// prepare message, and the Initiator must then be launched with none.
func (r *Runner) prepare(iso Isolation, job []byte) (_ *Initiator, retErr error) {
	version := iso.CgroupVersion
	if version == 0 {
		version = CgroupVersion()
	}
	ids, err := r.takeIDs(&iso)
	if err != nil {
		return nil, err
	}
	idsOwned := false // once the helper is registered, its Process gives them back
	defer func() {
		if retErr != nil && !idsOwned {
			r.giveIDs(ids)
		}
	}()
	plan, err := r.plans.get(&iso)
	if err != nil {
		return nil, fmt.Errorf("sandbox view: %w", err)
	}
	prep := prepareConfig{NewNet: !iso.Network, UID: ids.uid, GID: ids.gid}
	prep.ClearUserKeyrings = true
	if iso.Seccomp != nil {
		prep.Seccomp, prep.SeccompFlags, prep.ClearUserKeyrings = iso.Seccomp.prog, iso.Seccomp.flags, iso.Seccomp.keyrings
	}
	for _, rl := range iso.Rlimits {
		res, ok := rlimitNames[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %s", rl.Type)
		}
		prep.Rlimits = append(prep.Rlimits, rlimit{Resource: res, Soft: rl.Soft, Hard: rl.Hard})
	}
	name := iso.ID
	if name == "" {
		name = fmt.Sprintf("init%d-%s", prepared.Add(1), preparedEpoch)
	}
	// The server's pid keeps apart the names of servers that share a
	// parent, and of pool initiators, which have no job ID yet.
	cg, err := newJobCgroup(version, iso.CgroupParent, fmt.Sprintf("%s.%d", name, os.Getpid()), iso.Resources, iso.OOMGroup)
	if err != nil {
		return nil, err
	}
	cgOwned := false // once the helper is registered, its Process owns the cgroup
	defer func() {
		if retErr != nil && !cgOwned {
			if err := killAndWait(cg, 5*time.Second); err != nil {
				retErr = errors.Join(retErr, err)
				return
			}
			retErr = errors.Join(retErr, cg.Delete())
		}
	}()
	cgfd, err := cg.CloneFD()
	if err != nil {
		return nil, err
	}
	if cgfd >= 0 {
		defer closeFds(cgfd)
	}

	fds, err := newJobFds()
	if err != nil {
		return nil, err
	}
	syncp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		closeFds(fds.stdio, fds.childStdio, fds.stdout, fds.childStdout)
		return nil, fmt.Errorf("socketpair for sync: %w", err)
	}
	defer closeFds(fds.childStdio, fds.childStdout, syncp[1])
	if err := syscall.SetNonblock(syncp[0], true); err != nil {
		closeFds(fds.stdio, fds.stdout, syncp[0])
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	syncFile := os.NewFile(uintptr(syncp[0]), "sync") // non-blocking: deadlines work
	defer func() {
		if retErr != nil {
			closeFds(fds.stdio, fds.stdout)
			if err := syncFile.Close(); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()

	// The init: cloned by the view's template into a copy of its root,
	// or started here to build the root itself.
	// Either way r.mu is held across the fork and the register below (see
	// Runner).
	templated := false
	var pid int
	if t := r.template(&iso, plan); t != nil {
		r.mu.Lock()
		if r.closed {
			err = ErrClosed
		} else {
			pid, err = t.clone(!iso.Network, fds.childStdio, fds.childStdout, syncp[1], cgfd)
		}
		t.mu.Unlock()
		switch {
		case err == nil:
			templated = true
		case errors.Is(err, errNoInit): // no init holds the fds: start one here
			r.mu.Unlock()
			r.log.Warn("clone from view template; the job's init builds its root", "err", err)
		default:
			r.mu.Unlock()
			return nil, err
		}
	}
	if !templated {
		pid, err = r.forkInit(&iso, ids, fds, syncp[1], cgfd)
		if err != nil {
			return nil, err
		}
	}
	p := &Process{
		Pid:      pid,
		Stdio:    os.NewFile(uintptr(fds.stdio), "stdio"),
		Stdout:   os.NewFile(uintptr(fds.stdout), "stdout"),
		done:     make(chan struct{}),
		cg:       cg,
		isolated: true,
		ids:      ids,
		runner:   r,
	}
	r.procs[pid] = p
	r.mu.Unlock()
	fds.stdio, fds.stdout = -1, -1 // p's files own them now
	cgOwned, idsOwned = true, true
	in := &Initiator{r: r, p: p, sync: syncFile, br: bufio.NewReader(syncFile), host: iso.ID}
	defer func() {
		if retErr != nil { // the helper is registered: kill it and let the reaper have it
			retErr = errors.Join(retErr, in.kill())
		}
	}()

	if cgfd < 0 { // v1: place the helper before it runs anything of the job
		if err := cg.AddProc(pid); err != nil {
			return nil, err
		}
	}
	prep.Ops = plan.forJob(&iso, ids.uid, ids.gid, templated)
	prepMsg, err := prepareMsg(&prep)
	if err != nil {
		return nil, err
	}
	if err := in.send(append(prepMsg, job...)); err != nil {
		return nil, err
	}
	if err := in.expect("prepared"); err != nil {
		return nil, err
	}
	return in, nil
}

// forkInit starts an init that builds the job's root itself: this binary
// again, born in the job's namespaces (and, on v2, its cgroup cgfd). It
// returns with r.mu held, the caller to register the init, unless it fails.
func (r *Runner) forkInit(iso *Isolation, ids jobIDs, fds jobFds, sync, cgfd int) (int, error) {
	flags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if !iso.Network {
		flags |= syscall.CLONE_NEWNET
	}
	sys := &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if iso.UserNamespace {
		// Created first, the user namespace owns the others, so the helper
		// (root inside) may still mount /proc and /tmp and set the hostname.
		sys.Cloneflags |= syscall.CLONE_NEWUSER
		idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(ids.nsBase), Size: UserNamespaceBlock}}
		sys.UidMappings, sys.GidMappings = idmap, idmap
		sys.GidMappingsEnableSetgroups = true
		// Root inside (the block's first host id): host uid 0 is not mapped, so without
		// this the helper would be the overflow uid, without capabilities.
		sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	if cgfd >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, cgfd
	}
	attr := &syscall.ProcAttr{
		Files: append(fds.childFiles(), uintptr(sync)),
		Env:   []string{"GOMAXPROCS=1"}, // the helper needs no parallelism, and each thread is a host pid
		Sys:   sys,
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	argv := []string{"chimirror-init", r.initArg()}
	var pid int
	var err error
	if iso.UserNamespace {
		pid, err = forkAsOwner(ids.nsBase, "/proc/self/exe", argv, attr)
	} else {
		pid, err = syscall.ForkExec("/proc/self/exe", argv, attr)
	}
	if err != nil {
		r.mu.Unlock()
		return 0, fmt.Errorf("start init helper: %w", err)
	}
	return pid, nil
}

// jobIDs are the ids a sandbox holds from the Runner's pools.
type jobIDs struct {
	uid, gid    uint32 // the target's, as it sees them
	dynamic     bool   // uid came from the dynamic pool
	nsBase      uint32 // the user namespace's first host id
	userNSBlock bool   // nsBase came from the user namespace pool
}

// takeIDs reserves what iso needs from the pools.
func (r *Runner) takeIDs(iso *Isolation) (ids jobIDs, retErr error) {
	ids.uid, ids.gid = iso.UID, iso.GID
	if iso.UserNamespace {
		base, err := r.nsIDs.get()
		if err != nil {
			return ids, err
		}
		ids.nsBase, ids.userNSBlock = base, true
	}
	if iso.DynamicUser {
		if iso.UserNamespace { // the block makes it unique on the host
			ids.uid, ids.gid = DynamicNamespaceID, DynamicNamespaceID
			return ids, nil
		}
		id, err := r.dynIDs.get()
		if err != nil {
			r.giveIDs(ids)
			return jobIDs{}, err
		}
		ids.uid, ids.gid, ids.dynamic = id, id, true
	}
	return ids, nil
}

// giveIDs returns ids to the pools: only once nothing of their job runs.
func (r *Runner) giveIDs(ids jobIDs) {
	if ids.dynamic {
		r.dynIDs.put(ids.uid)
	}
	if ids.userNSBlock {
		r.nsIDs.put(ids.nsBase)
	}
}

// Launch runs spec in the prepared sandbox; spec.Isolation's ID, if any, is
// the hostname. The Initiator is used up either way.
func (in *Initiator) Launch(spec Spec) (*Process, error) {
	msg, err := jobMsgFor(spec, in.host)
	return in.launch(msg, err)
}

// jobMsgFor is spec's job message; host is the hostname unless
// spec.Isolation names one.
func jobMsgFor(spec Spec, host string) ([]byte, error) {
	if spec.Isolation != nil && spec.Isolation.ID != "" {
		host = spec.Isolation.ID
	}
	dir := spec.Dir
	if dir == "" { // never the server's: it is not even in the view
		dir = "/"
	}
	return jobMsg(&jobConfig{Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: dir, Hostname: host})
}

// launch sends msg, the job message (nil: it went with the prepare
// message), and waits until the job runs; msgErr is why there is no msg.
// The Initiator is used up either way.
func (in *Initiator) launch(msg []byte, msgErr error) (_ *Process, retErr error) {
	defer func() {
		if err := in.sync.Close(); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if retErr != nil {
			retErr = errors.Join(retErr, in.kill())
		}
	}()
	if msgErr != nil {
		return nil, msgErr
	}
	if msg != nil {
		if err := in.send(msg); err != nil {
			return nil, err
		}
	}
	// "ok": the target runs, and PID 1 already takes every signal (each init
	// has them blocked or subscribed from its start).
	if err := in.expect("ok"); err != nil {
		return nil, err
	}
	return in.p, nil
}

// Discard ends an initiator that will get no job.
func (in *Initiator) Discard() error {
	return errors.Join(in.sync.Close(), in.kill())
}

// kill ends the helper, waits for the reaper and releases everything.
func (in *Initiator) kill() error {
	var err error
	if e := syscall.Kill(in.p.Pid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) {
		err = e
	}
	<-in.p.done
	return errors.Join(err, in.p.Close())
}

func (in *Initiator) send(b []byte) error {
	if err := in.sync.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	if _, err := in.sync.Write(b); err != nil {
		return fmt.Errorf("send init message: %w", err)
	}
	return nil
}

// reply reads the helper's next line; "error: …" becomes an error.
func (in *Initiator) reply() (string, error) {
	if err := in.sync.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return "", err
	}
	line, err := in.br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("init helper gave no reply: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", setupError(msg)
	}
	return line, nil
}

// SetupError is a job's sandbox setup failure as its init reported it;
// when the init named the errno (a failed exec), it unwraps to it.
type SetupError struct {
	Msg   string
	Errno syscall.Errno // 0: not named
}

func (e *SetupError) Error() string { return "sandbox setup: " + e.Msg }

func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// setupError parses an init's "error: …" message, whose end may be
// " [errno N]".
func setupError(msg string) error {
	e := &SetupError{}
	e.Msg, e.Errno = splitErrno(msg)
	return e
}

// withErrno ends msg with " [errno N]" when err holds an errno: how an
// init and its exec helper name it across the wire.
func withErrno(msg string, err error) string {
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return fmt.Sprintf("%s [errno %d]", msg, int(errno))
	}
	return msg
}

// splitErrno undoes withErrno: the message and its errno (0: none).
func splitErrno(msg string) (string, syscall.Errno) {
	if i := strings.LastIndex(msg, " [errno "); i >= 0 && strings.HasSuffix(msg, "]") {
		if n, err := strconv.Atoi(msg[i+len(" [errno ") : len(msg)-1]); err == nil && n > 0 {
			return msg[:i], syscall.Errno(n)
		}
	}
	return msg, 0
}

func (in *Initiator) expect(want string) error {
	got, err := in.reply()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("init helper: got %q, want %q", got, want)
	}
	return nil
}

// forkAsOwner is syscall.ForkExec from a thread whose effective uid is
// owner, so that the user namespace the clone makes is owned by owner, not
// by root. The kernel charges a user namespace's per-user counts (inotify
// instances, namespaces, and the like) to its owner in the parent
// namespace as well: were root the owner of every job's namespace, one job
// holding its 128 inotify instances would leave none for the other jobs,
// nor for root's own processes on the host. Each job's block is its own.
//
// The thread keeps its capabilities meanwhile (SECBIT_NO_SETUID_FIXUP):
// it still writes the namespace's id maps, and places the child in its
// cgroup. It is put back as it was before it runs anything else, and it
// lives on: a child's parent-death signal fires when the thread that
// forked it ends.
func forkAsOwner(owner uint32, path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	type forked struct {
		pid int
		err error
	}
	done := make(chan forked, 1)
	go func() {
		runtime.LockOSThread()
		if err := setThreadSecurebits(secbitNoSetuidFixup); err != nil {
			runtime.UnlockOSThread() // nothing changed
			done <- forked{0, fmt.Errorf("keep capabilities across a uid change: %w", err)}
			return
		}
		var pid int
		err := setThreadEUID(owner)
		if err == nil {
			pid, err = syscall.ForkExec(path, argv, attr)
		} else {
			err = fmt.Errorf("take uid %d: %w", owner, err)
		}
		if rerr := errors.Join(setThreadEUID(0), setThreadSecurebits(0)); rerr != nil {
			// The thread's ids may be wrong: it stays locked and ends with
			// this goroutine, and a child it forked dies with it.
			done <- forked{0, errors.Join(err, fmt.Errorf("restore the forking thread's ids: %w", rerr))}
			return
		}
		runtime.UnlockOSThread() // as it was: back to the runtime
		done <- forked{pid, err}
	}()
	f := <-done
	return f.pid, f.err
}

// secbitNoSetuidFixup is SECBIT_NO_SETUID_FIXUP: a uid change leaves the
// thread's capabilities alone.
const secbitNoSetuidFixup = 1 << 2

// keepID in setThreadResuid leaves that id unchanged (-1).
const keepID = 0xffffffff

// setThreadResuid sets this thread's real, effective and saved uids alone
// (the runtime's Setresuid would set every thread's); keepID keeps one.
func setThreadResuid(r, e, s uint32) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(r), uintptr(e), uintptr(s)); errno != 0 {
		return errno
	}
	return nil
}

// setThreadEUID sets this thread's effective uid alone.
func setThreadEUID(uid uint32) error { return setThreadResuid(keepID, uid, keepID) }

// setThreadSecurebits sets this thread's securebits.
func setThreadSecurebits(bits uintptr) error {
	if _, _, errno := unix.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, bits, 0, 0, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

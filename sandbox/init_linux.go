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
	"unsafe"

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
//	ids: a dynamic uid, a user ns block
//	clone NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET]
//	      [|NEWUSER] [v2: CLONE_INTO_CGROUP] ─► block all signals; read fd 3
//	  (or the view's template clones it, the
//	   same namespaces but in a copy of the
//	   view's root: template_linux.go)
//	v1: AddProc(init) in every controller
//	send "prepare" message ─────────────────► lo up; unshare NEWCGROUP (its
//	  (rlimits, the view's mount steps,       root is now the job's cgroup);
//	   the seccomp filter)                    / rprivate; build the root:
//	                                            scratch at /tmp, pivot into
//	                                            it (host at /oldroot), tmpfs
//	                                            /newroot, run the steps (the
//	                                            area: a tmpfs never mounted,
//	                                            its dirs bound), pivot into
//	                                            /newroot, detach the rest;
//	                                            from a template: only the
//	                                            job's own steps, at /;
//	                                          rlimits, no_new_privs,
//	                                          bounding set (CAP_KILL only),
//	                                          not dumpable;
//	read "prepared" or "error: …" ◄────────── reply; wait for the job
//	   … an initiator may wait in a pool here (cold part done); a job
//	   started at once (Runner.Start) sends the job message right after
//	   the prepare message instead, for the init to find it waiting …
//	send "job" message ─────────────────────► hostname = job ID
//	                                          start the target (C: vfork-
//	                                            style, spawn_target): setsid,
//	                                            ids, fresh session keyring
//	                                            (from a template, for a job
//	                                            its filter keeps from
//	                                            keyrings: the holder's
//	                                            closed one), user keyrings
//	                                            cleared, seccomp, chdir, exec
//	                                          drop own caps to CAP_KILL
//	read "ok" or "error: …" ◄──────────────── reply; close 0, 1, 2 and 3
//	close sync socket (3 fds remain)          PID 1: reap all, forward signals
//	                                          target exits: kill the rest,
//	                                          comm := "cm:eN" / "cm:sN",
//	reaper: waitid(WNOWAIT), read comm,       exit
//	        kill cgroup, reap  ◄──────────────
//	Close: cgroup empty and deleted, then the ids go back to their pools
//
// If the parent dies, or discards a prepared initiator, fd 3 reads EOF and
// the init exits 111 without running anything; Pdeathsig kills it too.
type prepareConfig struct {
	NewNet   bool // a fresh network namespace: bring lo up
	UID, GID uint32
	Rlimits  []rlimit
	Ops      []mountOp // the view's steps, from planView
	Seccomp  []byte    // struct sock_filter[]; empty: no filter
	// SeccompFlags are seccomp(2)'s flags for installing it.
	SeccompFlags uint32
	// ClearUserKeyrings empties the uid's user keyrings before the target
	// runs: for jobs whose filter lets them use keyrings. Touching them
	// makes the kernel create them, for good, so jobs that cannot fill
	// them leave them alone.
	ClearUserKeyrings bool
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
	if len(os.Args) > 1 && os.Args[1] == execArg {
		runExec()
	}
	// One thread does everything: no_new_privs and the capability bounding
	// set are per-thread and inherited by the target forked from it.
	runtime.LockOSThread()
	sync := os.NewFile(3, "sync")
	syscall.CloseOnExec(3)
	// Subscribe before the target exists: a target that exits at once must
	// not leave us waiting for a SIGCHLD that came too early.
	sigs := make(chan os.Signal, 16)
	// Every signal, as the C init: caught, so none is dropped as ignored
	// (the runtime's own SIGURG is left out when forwarding).
	signal.Notify(sigs)
	fail := func(err error) {
		if _, werr := fmt.Fprintf(sync, "error: %s\n", withErrno(err.Error(), err)); werr != nil {
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
	if err := dropCaps(); err != nil {
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
	// The server has put us in the job's cgroup by now: a cgroup namespace
	// made here has it as its root.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("new cgroup namespace: %w", err)
	}
	unix.Umask(0) // the steps' modes are meant as written
	// Mounts first: Go never makes propagation private for Cloneflags, and
	// on systemd hosts / is shared, so our mounts would leak to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	if err := buildRoot(cfg.Ops); err != nil {
		return err
	}
	for _, rl := range cfg.Rlimits {
		if err := unix.Setrlimit(rl.Resource, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("set rlimit %d: %w", rl.Resource, err)
		}
	}
	// Not dumpable: a job cannot read this process's memory or open its
	// /proc/1/exe (the server's binary), whatever its ids.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("not dumpable: %w", err)
	}
	return restrictThread()
}

// restrictThread sets no_new_privs and leaves only CAP_KILL in the
// bounding set, so nothing the target execs can gain a capability. Both are
// per thread, and a forked child inherits them from the thread that forks.
func restrictThread() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
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

// buildRoot makes the job's root by running the view's plan (see
// planView), which ends inside it, or the job's own steps of it.
func buildRoot(ops []mountOp) error {
	b := builder{area: -1}
	defer b.close()
	for i, op := range ops {
		if err := b.run(op); err != nil {
			where := strings.TrimPrefix(op.b, newRoot)
			if errors.Is(err, unix.ELOOP) && op.kind == "bind" {
				return fmt.Errorf("build root: step %d: bind %s: a symlink appeared in its path after the view was planned", i, where)
			}
			return fmt.Errorf("build root: step %d: %s %s: %w", i, op.kind, where, err)
		}
	}
	return nil
}

// builder runs a plan's steps; area is the job's area once made.
type builder struct{ area int }

func (b *builder) close() {
	if b.area >= 0 {
		unix.Close(b.area)
	}
}

// at is where path lies: a relative path in the area, any other as is.
func (b *builder) at(path string) (int, string, error) {
	if strings.HasPrefix(path, "/") {
		return unix.AT_FDCWD, path, nil
	}
	if b.area < 0 {
		return 0, "", fmt.Errorf("%s: no area made yet: %w", path, unix.EBADF)
	}
	return b.area, path, nil
}

// run runs one of planView's steps.
func (b *builder) run(op mountOp) error {
	num := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", s)
		}
		return n, nil
	}
	switch op.kind {
	case "mount":
		flags, err := num(op.d)
		if err != nil {
			return err
		}
		return unix.Mount(op.a, op.b, op.c, uintptr(flags), op.e)
	case "area":
		attr, err := num(op.d)
		if err != nil {
			return err
		}
		if b.area >= 0 {
			return fmt.Errorf("a second area: %w", unix.EEXIST)
		}
		fd, err := newArea(op.a, op.c, op.e, attr)
		if err != nil {
			return err
		}
		b.area = fd
		return nil
	case "attach":
		if b.area < 0 {
			return fmt.Errorf("no area to attach: %w", unix.EBADF)
		}
		dir, path, err := b.at(op.b)
		if err != nil {
			return err
		}
		to, err := openPath(dir, path)
		if err != nil {
			return err
		}
		defer unix.Close(to)
		return unix.MoveMount(b.area, "", to, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	case "bind":
		attr, err := num(op.c)
		if err != nil {
			return err
		}
		fromDir, from, err := b.at(op.a)
		if err != nil {
			return err
		}
		toDir, to, err := b.at(op.b)
		if err != nil {
			return err
		}
		return bindPath(fromDir, from, toDir, to, attr)
	case "setattr":
		attr, err := num(op.c)
		if err != nil {
			return err
		}
		return setMountAttr(op.b, attr, false)
	case "mkdir":
		mode, err := num(op.c)
		if err != nil {
			return err
		}
		dir, path, err := b.at(op.b)
		if err != nil {
			return err
		}
		if err := unix.Mkdirat(dir, path, uint32(mode)); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		return nil
	case "file":
		mode, err := num(op.c)
		if err != nil {
			return err
		}
		dir, path, err := b.at(op.b)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dir, path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(mode))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for b := []byte(op.e); len(b) > 0; {
			n, err := unix.Write(fd, b)
			if err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	case "symlink":
		return unix.Symlink(op.a, op.b)
	case "pivot":
		if err := unix.PivotRoot(op.a, op.b); err != nil {
			return err
		}
		return unix.Chdir("/")
	case "enter":
		if err := unix.Chdir(op.b); err != nil {
			return err
		}
		if err := unix.PivotRoot(".", "."); err != nil {
			return err
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return err
		}
		return unix.Chdir("/")
	case "chown":
		uid, err := num(op.c)
		if err != nil {
			return err
		}
		gid, err := num(op.d)
		if err != nil {
			return err
		}
		dir, path, err := b.at(op.b)
		if err != nil {
			return err
		}
		return unix.Fchownat(dir, path, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	case "mknod":
		mode, err := num(op.c)
		if err != nil {
			return err
		}
		dev, err := strconv.ParseUint(op.d, 10, 64)
		if err != nil {
			return fmt.Errorf("bad number %q", op.d)
		}
		return unix.Mknod(op.b, uint32(mode), int(dev))
	case "ro":
		if err := unix.Mount(op.b, op.b, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		return setMountAttr(op.b, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, true)
	}
	return fmt.Errorf("unknown step %q", op.kind)
}

// newArea makes a filesystem of type fstype with source src and the
// comma-separated options data (key=value, or a key alone for a flag),
// and mounts it nowhere, with attr: the fd of its root.
func newArea(src, fstype, data string, attr int) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	if src != "" {
		if err := unix.FsconfigSetString(fs, "source", src); err != nil {
			return -1, fmt.Errorf("source %s: %w", src, err)
		}
	}
	for _, o := range strings.Split(data, ",") {
		if o == "" {
			continue
		}
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fs, k, v)
		} else {
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return -1, fmt.Errorf("option %s: %w", o, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attr)
}

// openPath opens path, in dir, as O_PATH without following any symlink: a
// path the plan saw as a directory or file, swapped for a link since,
// fails with ELOOP instead of binding whatever the link names.
func openPath(dir int, path string) (int, error) {
	return unix.Openat2(dir, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
}

// bindPath binds src's tree (in srcDir) at dst (in dstDir) with attr on
// every mount of it, both opened by openPath: the copy is made and set
// detached, then attached.
func bindPath(srcDir int, src string, dstDir int, dst string, attr int) error {
	from, err := openPath(srcDir, src)
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(from, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	unix.Close(from)
	if err != nil {
		return err
	}
	defer unix.Close(tree)
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: uint64(attr)}); err != nil {
		return err
	}
	to, err := openPath(dstDir, dst)
	if err != nil {
		return err
	}
	defer unix.Close(to)
	return unix.MoveMount(tree, "", to, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// setMountAttr sets attr on the mount at path (and those below it).
func setMountAttr(path string, attr int, recursive bool) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	return unix.MountSetattr(unix.AT_FDCWD, path, uint(flags), &unix.MountAttr{Attr_set: uint64(attr)})
}

// startTarget runs the job's program in the prepared sandbox. What is set
// per thread for the target (its cgroup namespace, its session keyring,
// no_new_privs and the bounding set) is set on a thread of its own, which
// the target, or its exec helper, is forked from and which then ends: the
// init's own thread keeps none of it.
func startTarget(prep *prepareConfig, cfg *jobConfig) (int, error) {
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return 0, fmt.Errorf("set hostname: %w", err)
		}
	}
	type started struct {
		pid int
		err error
	}
	done := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		pid, err := forkTarget(prep, cfg)
		done <- started{pid, err}
	}()
	s := <-done
	return s.pid, s.err
}

func forkTarget(prep *prepareConfig, cfg *jobConfig) (int, error) {
	// unshare is per thread: this one needs the cgroup namespace that
	// prepare made for the init's.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return 0, fmt.Errorf("new cgroup namespace: %w", err)
	}
	if err := freshKeyrings(prep.UID, prep.ClearUserKeyrings); err != nil {
		return 0, err
	}
	dir := cfg.Dir // Launch names one, "/" at least
	syscall.Umask(0o022)
	if len(prep.Seccomp) > 0 {
		return execFiltered(dir, prep, cfg)
	}
	if err := restrictThread(); err != nil {
		return 0, err
	}
	pid, err := syscall.ForkExec(cfg.Path, cfg.Args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: prep.UID, Gid: prep.GID, Groups: []uint32{}},
			Setsid:     true,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	return pid, nil
}

// The exec helper's descriptors. Until it execs, its stdout and stderr are
// the report pipe: whatever it says, a Go runtime's fatal error included,
// is the init's to report, never the job's to read.
const (
	execMsgFD    = 3 // the exec and job messages
	execStdinFD  = 4 // the job's stdio, moved to 0–2 just before the exec
	execStdoutFD = 5
	execStderrFD = 6
	execReportFD = 7 // close-on-exec: EOF with nothing said means it exec'd
)

// execFiltered starts the target through the exec helper: this binary
// again, as root in the job's namespaces, which takes the target's ids,
// installs the filter and execs, so that only the exec itself runs under
// the filter (as with the C init), not Go's fork and id changes.
func execFiltered(dir string, prep *prepareConfig, cfg *jobConfig) (int, error) {
	msg, err := execMsg(prep.UID, prep.GID, prep.SeccompFlags, prep.Seccomp)
	if err != nil {
		return 0, err
	}
	job, err := jobMsg(cfg)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int, error) { return 0, fmt.Errorf("start %s: exec helper: %w", cfg.Path, err) }
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(null)
	var in, report [2]int
	if err := unix.Pipe2(in[:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	if err := unix.Pipe2(report[:], unix.O_CLOEXEC); err != nil {
		unix.Close(in[0])
		unix.Close(in[1])
		return fail(err)
	}
	w := uintptr(report[1])
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"chimirror", execArg}, &syscall.ProcAttr{
		Dir:   dir,
		Env:   []string{"GOTRACEBACK=none"}, // the job's reach the target through the message
		Files: []uintptr{uintptr(null), w, w, uintptr(in[0]), 0, 1, 2, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	unix.Close(in[0])
	unix.Close(report[1])
	r := os.NewFile(uintptr(report[0]), "exec report")
	defer r.Close()
	if err != nil {
		unix.Close(in[1])
		return fail(err)
	}
	// The helper has what it needs of the init's capabilities (a copy, made
	// by the fork), and cannot exec before it reads the messages: dropped
	// now, they are gone before the target runs. (Unfiltered, the target
	// execs straight from the fork, and the init drops them just after.)
	if err := dropCaps(); err != nil {
		unix.Close(in[1])
		return 0, err
	}
	msgs := os.NewFile(uintptr(in[1]), "exec message")
	_, werr := msgs.Write(append(msg, job...))
	werr = errors.Join(werr, msgs.Close())
	// Read all it says (it may be blocked saying it), keep the start.
	said, rerr := io.ReadAll(io.LimitReader(r, 1<<20))
	if len(said) > 0 {
		if len(said) > 2048 {
			said = append(said[:2048], "…"...)
		}
		msg, errno := splitErrno(strings.TrimSpace(string(said)))
		if errno != 0 {
			return 0, fmt.Errorf("start %s: %s: %w", cfg.Path, strings.TrimSuffix(msg, ": "+errno.Error()), errno)
		}
		return 0, fmt.Errorf("start %s: %s", cfg.Path, msg)
	}
	if err := errors.Join(werr, rerr); err != nil {
		return fail(err)
	}
	return pid, nil
}

// runExec is the exec helper's main (see execFiltered). Root in the job's
// namespaces, with the job's dir, it reads the job; drops the bounding set
// to CAP_KILL, sets no_new_privs and takes the target's ids; and on this
// thread, with every signal blocked and reset, puts the job's stdio in
// place, installs the filter, unblocks and execs. Under the filter only
// rt_sigprocmask and execve run (and write, to report a failed exec). It
// never returns.
func runExec() {
	runtime.LockOSThread()
	fail := func(err error) {
		if _, werr := unix.Write(execReportFD, []byte(withErrno(err.Error(), err))); werr != nil {
			os.Exit(126)
		}
		os.Exit(127)
	}
	for _, fd := range []int{execMsgFD, execStdinFD, execStdoutFD, execStderrFD, execReportFD} {
		syscall.CloseOnExec(fd)
	}
	in := os.NewFile(execMsgFD, "exec message")
	m, err := readInitMsg(in)
	if err != nil {
		fail(fmt.Errorf("exec helper: %w", err))
	}
	x, err := decodeExec(m)
	if err != nil {
		fail(err)
	}
	if m, err = readInitMsg(in); err != nil {
		fail(fmt.Errorf("exec helper: %w", err))
	}
	cfg, err := decodeJob(m)
	if err != nil {
		fail(err)
	}
	in.Close()
	if err := restrictThread(); err != nil {
		fail(err)
	}
	// Every thread's ids (the runtime's own, or the C library's, way).
	if err := syscall.Setgroups(nil); err != nil {
		fail(fmt.Errorf("setgroups: %w", err))
	}
	if err := syscall.Setgid(int(x.gid)); err != nil {
		fail(fmt.Errorf("setgid %d: %w", x.gid, err))
	}
	if err := syscall.Setuid(int(x.uid)); err != nil {
		fail(fmt.Errorf("setuid %d: %w", x.uid, err))
	}
	path, err := unix.BytePtrFromString(cfg.Path)
	if err != nil {
		fail(err)
	}
	argv, err := syscall.SlicePtrFromStrings(cfg.Args)
	if err != nil {
		fail(err)
	}
	envv, err := syscall.SlicePtrFromStrings(cfg.Env)
	if err != nil {
		fail(err)
	}
	// No Go signal handler may run under the filter: every signal blocked
	// on this thread, and reset (the exec would reset them anyway), so
	// one pending is dropped or acted on by the kernel.
	var all, none unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, nil); err != nil {
		fail(fmt.Errorf("block signals: %w", err))
	}
	var dfl [4]uint64 // struct sigaction: SIG_DFL, no flags, no mask
	for sig := 1; sig <= 64; sig++ {
		if sig != int(syscall.SIGKILL) && sig != int(syscall.SIGSTOP) {
			unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0) // EINVAL for 32, 33: fine
		}
	}
	for to, from := range []int{execStdinFD, execStdoutFD, execStderrFD} {
		if _, _, errno := unix.RawSyscall(unix.SYS_DUP3, uintptr(from), uintptr(to), 0); errno != 0 {
			fail(fmt.Errorf("stdio: %w", errno))
		}
	}
	if err := loadSeccomp(x.filter, x.flags); err != nil {
		fail(err)
	}
	if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&none)), 0, 8, 0, 0); errno != 0 {
		fail(fmt.Errorf("unblock signals: %w", errno))
	}
	_, _, errno := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	fail(errno)
}

// dropCaps leaves the init, once the target runs, only CAP_KILL (to pass
// the job's signals on), as the C init does: on every thread, which only
// a Go runtime without cgo can do (AllThreadsSyscall). A binary with cgo
// runs the C init; its Go init (the tests') keeps its thread's caps.
func dropCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	kill := uint32(1) << unix.CAP_KILL
	data := [2]unix.CapUserData{{Effective: kill, Permitted: kill}}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	switch errno {
	case 0, syscall.ENOTSUP:
		return nil
	}
	return fmt.Errorf("drop capabilities: %w", errno)
}

// freshKeyrings gives this thread, and so the target, a new session
// keyring owned by uid, and with clearUser empties uid's user keyrings,
// and persistent keyring, which the kernel keeps after the job: a uid used
// by an earlier job must not hand that job's keys to the next. The thread
// is uid only meanwhile; its saved uid 0 brings it back.
func freshKeyrings(uid uint32, clearUser bool) error {
	if err := setThreadResuid(uid, uid, 0); err != nil {
		return fmt.Errorf("keyrings: become uid %d: %w", uid, err)
	}
	var errs []error
	if clearUser {
		for _, kr := range []int{unix.KEY_SPEC_USER_KEYRING, unix.KEY_SPEC_USER_SESSION_KEYRING} {
			if _, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_CLEAR, uintptr(kr), 0); errno != 0 && errno != unix.ENOSYS {
				errs = append(errs, fmt.Errorf("keyrings: clear user keyring: %w", errno))
			}
		}
		// The persistent keyring, kept for days: reached through this
		// thread's keyring, and unlinked from it again.
		thread := unix.KEY_SPEC_THREAD_KEYRING
		pk, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_PERSISTENT, ^uintptr(0), uintptr(thread))
		switch {
		case errno == unix.ENOSYS || errno == unix.EOPNOTSUPP:
		case errno != 0:
			errs = append(errs, fmt.Errorf("keyrings: persistent keyring: %w", errno))
		default:
			if _, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_CLEAR, pk, 0); errno != 0 {
				errs = append(errs, fmt.Errorf("keyrings: clear persistent keyring: %w", errno))
			}
			if _, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_UNLINK, pk, uintptr(thread)); errno != 0 {
				errs = append(errs, fmt.Errorf("keyrings: unlink persistent keyring: %w", errno))
			}
		}
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); errno != 0 && errno != unix.ENOSYS {
		errs = append(errs, fmt.Errorf("keyrings: new session keyring: %w", errno))
	}
	if err := setThreadResuid(0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("keyrings: back to root: %w", err))
	}
	return errors.Join(errs...)
}

// loadSeccomp installs filter on this thread alone (no TSYNC): the exec
// from it keeps it. no_new_privs is already set.
func loadSeccomp(filter []byte, flags uint32) error {
	prog := unix.SockFprog{Len: uint16(len(filter) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&filter[0]))}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	runtime.KeepAlive(filter)
	return nil
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
		if sig == syscall.SIGCHLD || sig == syscall.SIGURG { // ours: reaping, and the runtime's preemption
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
	b, err := readSmall("/proc/" + strconv.Itoa(pid) + "/comm")
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

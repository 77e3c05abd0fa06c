package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// handshakeTimeout bounds the helper's setup, from clone to "ok PID".
const handshakeTimeout = 10 * time.Second

// startIsolated starts spec through the init helper (see the handshake in
// init_linux.go). Setup is undone step by step on failure.
func (r *Runner) startIsolated(spec Spec) (_ *Process, retErr error) {
	iso := spec.Isolation
	version := iso.CgroupVersion
	if version == 0 {
		version = CgroupVersion()
	}
	// The server's pid keeps two servers' job IDs apart until IDs are
	// unique for good (the ledger's sequence).
	cg, err := newJobCgroup(version, fmt.Sprintf("%s.%d", iso.ID, os.Getpid()), iso.Resources)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
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

	stdio, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair for stdio: %w", err)
	}
	var errp [2]int
	if err := syscall.Pipe2(errp[:], syscall.O_CLOEXEC); err != nil {
		closeFds(stdio[0], stdio[1])
		return nil, fmt.Errorf("pipe for stderr: %w", err)
	}
	syncp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		closeFds(stdio[0], stdio[1], errp[0], errp[1])
		return nil, fmt.Errorf("socketpair for sync: %w", err)
	}
	defer closeFds(stdio[1], errp[1], syncp[1])
	for _, fd := range []int{stdio[0], errp[0], syncp[0]} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			closeFds(stdio[0], errp[0], syncp[0])
			return nil, fmt.Errorf("set non-blocking: %w", err)
		}
	}
	syncFile := os.NewFile(uintptr(syncp[0]), "sync") // non-blocking: deadlines work
	defer syncFile.Close()
	defer func() {
		if retErr != nil {
			closeFds(stdio[0], errp[0])
		}
	}()

	flags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if !iso.Network {
		flags |= syscall.CLONE_NEWNET
	}
	sys := &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cgfd >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, cgfd
	}
	attr := &syscall.ProcAttr{
		Files: []uintptr{uintptr(stdio[1]), uintptr(stdio[1]), uintptr(errp[1]), uintptr(syncp[1])},
		Env:   []string{"GOMAXPROCS=1"}, // the helper needs no parallelism, and each thread is a host pid
		Sys:   sys,
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"chimirror-init", InitArg}, attr)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("start init helper: %w", err)
	}
	p := &Process{
		Pid:      pid,
		Stdio:    os.NewFile(uintptr(stdio[0]), "stdio"),
		Stderr:   os.NewFile(uintptr(errp[0]), "stderr"),
		done:     make(chan struct{}),
		cg:       cg,
		isolated: true,
	}
	r.procs[pid] = p
	r.mu.Unlock()
	stdio[0], errp[0] = -1, -1 // p's files own them now
	defer func() {
		if retErr != nil { // the helper is registered: kill it and let the reaper have it
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				retErr = errors.Join(retErr, err)
			}
			<-p.done
			retErr = errors.Join(retErr, p.Stdio.Close(), p.Stderr.Close())
		}
	}()

	if cgfd < 0 { // v1: place the helper before it runs anything of the job
		if err := cg.AddProc(pid); err != nil {
			return nil, err
		}
	}
	cfg, err := json.Marshal(initConfig{
		Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir,
		Hostname: iso.ID, UID: iso.UID, GID: iso.GID,
		Rlimits: iso.Rlimits, TmpSizeBytes: iso.TmpSizeBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("encode init config: %w", err)
	}
	if err := syncFile.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	if _, err := syncFile.Write(cfg); err != nil {
		return nil, fmt.Errorf("send init config: %w", err)
	}
	rc, err := syncFile.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil || serr != nil {
		return nil, fmt.Errorf("send init config: %w", errors.Join(err, serr))
	}
	br := bufio.NewReader(syncFile)
	reply, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("init helper for %s gave no reply: %w", iso.ID, err)
	}
	reply = strings.TrimSpace(reply)
	if msg, ok := strings.CutPrefix(reply, "error: "); ok {
		return nil, fmt.Errorf("sandbox setup for %s: %s", iso.ID, msg)
	}
	if n, ok := strings.CutPrefix(reply, "ok "); !ok {
		return nil, fmt.Errorf("init helper for %s: bad reply %q", iso.ID, reply)
	} else if _, err := strconv.Atoi(n); err != nil {
		return nil, fmt.Errorf("init helper for %s: bad reply %q", iso.ID, reply)
	}
	// "r": PID 1 (the C reaper, or the Go helper) now takes every signal.
	if ready, err := br.ReadString('\n'); err != nil || ready != "r\n" {
		return nil, fmt.Errorf("init helper for %s: no ready after handoff: %q %v", iso.ID, ready, err)
	}
	return p, nil
}

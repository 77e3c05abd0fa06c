package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chimirror/chimirror/sandbox"
)

// benchServerAttr: if the bench dies, its server stops too, gracefully,
// ending its jobs.
func benchServerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// sandboxFloor is one bare sandboxed session as the kernel alone allows it,
// without chimirror: a fresh cgroup in the hierarchies jobs use (v1: cpu,
// cpuacct, memory, pids and freezer under our own; v2: under our own, born
// inside), clone with the namespaces a job gets (pid, mount, UTS, IPC,
// network), exec cat, one echo through its pipes, wait, and remove the
// cgroup. No helper, /proc, tmpfs, rlimits or privilege drop: a floor.
func sandboxFloor() (retErr error) {
	parents, err := floorCgroupParents()
	if err != nil {
		return err
	}
	name := fmt.Sprintf("chimirror-floor.%d.%d", os.Getpid(), floorSeq.Add(1))
	dirs := make([]string, 0, len(parents))
	defer func() {
		for _, d := range dirs {
			retErr = errors.Join(retErr, os.Remove(d))
		}
	}()
	for _, p := range parents {
		d := filepath.Join(p, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("sandbox floor: %w", err)
		}
		dirs = append(dirs, d)
	}
	cmd := exec.Command("cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET}
	if sandbox.CgroupVersion() == 2 { // born inside
		fd, err := unix.Open(dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		return echoCat(cmd, nil)
	}
	return echoCat(cmd, func(pid int) error { // v1: moved in once started
		for _, d := range dirs {
			if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
				return err
			}
		}
		return nil
	})
}

var floorSeq atomic.Int64

// floorCgroupParents is our own cgroup directory in each hierarchy a job
// uses, read once: the floor's rate must not pay for it.
var floorCgroupParents = sync.OnceValues(func() ([]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 {
			for _, c := range strings.Split(f[1], ",") {
				own[c] = f[2]
			}
		}
	}
	if sandbox.CgroupVersion() == 2 {
		return []string{filepath.Join("/sys/fs/cgroup", own[""])}, nil
	}
	var dirs []string
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "freezer"} {
		p, ok := own[c]
		if !ok {
			return nil, fmt.Errorf("sandbox floor: no v1 %s controller", c)
		}
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", c, p))
	}
	return dirs, nil
})

// cmdGetppidLoop times N getppid(2) calls, the cheapest syscall there is,
// and prints "NS ns" per call: run plain and as jobs with and without a
// seccomp filter, it shows what the filter costs a syscall.
func cmdGetppidLoop(args []string, stdout io.Writer) error {
	n := 1_000_000
	if len(args) > 0 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 {
			return fmt.Errorf("%s: %q is not a count", getppidArg, args[0])
		}
		n = v
	}
	runtime.LockOSThread()
	best := time.Duration(1<<63 - 1)
	for range 5 { // the best of five: a loop interrupted by the VM counts for nothing
		t0 := time.Now()
		for range n {
			unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		best = min(best, time.Since(t0))
	}
	_, err := fmt.Fprintf(stdout, "%.1f ns\n", float64(best)/float64(n))
	return err
}

// processCPU is the CPU time, user plus system, that process pid has used
// so far, all its threads (not its children): /proc/PID/stat's utime and
// stime, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces: fields count from its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// hostCPU is the CPU time every CPU of the host has spent busy so far (not
// idle, not waiting for I/O): /proc/stat's user, nice, system, irq,
// softirq and steal, in clock ticks of 10 ms. A sandboxed session's cost
// is spread over the server, the job's init and program, the kernel's
// workers that tear its namespaces down, and the client: only the host's
// total counts all of them.
func hostCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

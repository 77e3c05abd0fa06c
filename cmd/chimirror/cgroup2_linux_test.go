package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chimirror/chimirror/sandbox"
)

// On a pure cgroup v2 host (make test-cgroup2's VM), every chimirror
// process a test starts is born (CLONE_INTO_CGROUP) in a cgroup of its
// own with the controllers delegated to it, as systemd starts a service
// with Delegate=yes: a server delegates job cgroups only from a cgroup it
// has to itself (sandbox's delegated2), never from the test binary's,
// which the test binary and its other children share. A server restarted
// on the same directory is born in its unit's supervisor leaf, where the
// first one moved itself, and so finds what that one left (the shape of a
// unit with DelegateSubgroup=supervisor). On v1 hosts nothing changes.

// unitsRoot is the test binary's delegated cgroup with the controllers
// enabled for the units below it, once the test binary has moved itself
// into its leaf "tests"; "" where processes are started as they are.
var unitsRoot = sync.OnceValue(func() string {
	if sandbox.CgroupVersion() != 2 || os.Geteuid() != 0 || sandbox.Available() != nil {
		return ""
	}
	root, err := delegateTests()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cgroup v2: servers start in the test binary's cgroup: %v\n", err)
		return ""
	}
	return root
})

// delegateTests moves the test binary into <own>/tests and enables the
// controllers of <own> for the units below it.
func delegateTests() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	own, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok {
		return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup: %q", b)
	}
	root := filepath.Join("/sys/fs/cgroup", own)
	leaf := filepath.Join(root, "tests")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return "", fmt.Errorf("move into %s: %w", leaf, err)
	}
	have, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return "", err
	}
	var enable []string
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if slices.Contains(strings.Fields(string(have)), c) {
			enable = append(enable, "+"+c)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
		return "", fmt.Errorf("enable %v in %s: %w", enable, root, err)
	}
	return root, nil
}

var units = struct {
	sync.Mutex
	n     int
	serve map[string]string // a server's directory: its unit
}{serve: make(map[string]string)}

// bornInUnit makes cmd, chimirror with args in dir, start in a unit of its
// own (see above); on v1 hosts it does nothing. The unit goes when the test
// ends, after the process: whatever the process left in it then (a job
// cgroup, a process) fails the test.
func bornInUnit(t *testing.T, cmd *exec.Cmd, dir string, args []string) {
	t.Helper()
	root := unitsRoot()
	if root == "" {
		return
	}
	serve := len(args) > 0 && args[0] == "serve"
	units.Lock()
	unit, restart := units.serve[dir]
	// A restart: the last server on dir is gone (what it left may run on:
	// its jobs, its view templates' holders, which end on their own).
	restart = restart && serve && !holdsServer(unit) && !holdsServer(filepath.Join(unit, "supervisor"))
	if !restart {
		units.n++
		unit = filepath.Join(root, fmt.Sprintf("unit-%d", units.n))
		if serve {
			units.serve[dir] = unit // a later server on dir, while this one runs, gets its own
		}
	}
	units.Unlock()
	at := unit
	if restart {
		// Once the last server delegated from the unit, its controllers
		// are enabled there and a process may only join a leaf.
		if ctl, err := os.ReadFile(filepath.Join(unit, "cgroup.subtree_control")); err != nil {
			t.Fatal(err)
		} else if len(strings.TrimSpace(string(ctl))) > 0 {
			at = filepath.Join(unit, "supervisor")
		}
	} else {
		if err := os.Mkdir(unit, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeUnit(t, unit, dir, serve) })
	}
	fd, err := unix.Open(at, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the unit cgroup %s: %v", at, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
}

// removeUnit removes a unit's tree once its processes are gone. Job
// cgroups left in it are reported; anything still running is killed.
func removeUnit(t *testing.T, unit, dir string, serve bool) {
	t.Helper()
	if serve {
		units.Lock()
		delete(units.serve, dir)
		units.Unlock()
	}
	var left []string
	err := filepath.WalkDir(unit, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != unit {
			rel := strings.TrimPrefix(p, unit+"/")
			if rel != "supervisor" && rel != sandbox.DefaultCgroupParent && !hasSubdirs(p) {
				left = append(left, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("list unit %s: %v", unit, err)
	}
	if len(left) > 0 {
		t.Errorf("cgroups left in the server's unit after it ended: %v", left)
	}
	if err := os.WriteFile(filepath.Join(unit, "cgroup.kill"), []byte("1"), 0); err != nil {
		t.Errorf("kill unit %s: %v", unit, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := removeTree(unit)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove unit %s: %v", unit, err)
			return
		}
	}
}

// holdsServer reports whether the cgroup dir itself (not below) holds a
// chimirror serve; a missing one holds none.
func holdsServer(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false
	}
	for _, pid := range strings.Fields(string(b)) {
		argv, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err == nil && slices.Contains(strings.Split(string(argv), "\x00"), "serve") {
			return true
		}
	}
	return false
}

func hasSubdirs(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.IsDir() })
}

// removeTree removes a cgroup directory and every one below it, deepest
// first (cgroupfs has no recursive rmdir).
func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// jobCgroupGlobs are the patterns that match the job cgroups of a ledger's
// instance for a server started in dir: its unit's on v2, each v1
// hierarchy's otherwise (the test runs in the root cgroup there).
func jobCgroupGlobs(dir, instance string) []string {
	units.Lock()
	unit, ok := units.serve[dir]
	units.Unlock()
	if ok {
		return []string{filepath.Join(unit, sandbox.DefaultCgroupParent, instance, "*")}
	}
	var globs []string
	for _, sub := range []string{"pids", "memory", "cpu", "freezer", "unified"} {
		globs = append(globs, filepath.Join("/sys/fs/cgroup", sub, sandbox.DefaultCgroupParent, instance, "*"))
	}
	return globs
}

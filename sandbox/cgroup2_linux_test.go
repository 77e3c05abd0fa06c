package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run on a pure cgroup v2 host (make test-cgroup2 boots one)
// and assert the kernel's own files; on v1 or hybrid hosts they skip.

// cgFile reads one of a cgroup's files, trimmed.
func cgFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cgKeyed reads "key N" from one of a cgroup's keyed files; ok is false
// when the kernel does not write that key.
func cgKeyed(t *testing.T, dir, name, key string) (n int64, ok bool) {
	t.Helper()
	m, err := readKV(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	n, ok = m[key]
	return n, ok
}

// Ensure the server delegates as systemd's Delegate=yes expects: it lives
// in the supervisor leaf of its delegated cgroup, the delegated cgroup
// itself holds no process and enables the controllers, and a job's cgroup
// is below it, never at the root.
func TestCgroup2_Delegation(t *testing.T) {
	mount := requireUnified(t)
	cg := newTestCgroup(t, 2, limits(0.5, 64<<20, 32))
	root, err := ownCgroup2()
	if err != nil {
		t.Fatal(err)
	}
	if root == "/" {
		t.Fatal("job cgroups are delegated from the root cgroup")
	}
	self, err := selfCgroup2()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, supervisorLeaf); self != want {
		t.Errorf("the server is in %s, want its leaf %s", self, want)
	}
	rootDir := filepath.Join(mount, root)
	if procs := cgFile(t, rootDir, "cgroup.procs"); procs != "" {
		t.Errorf("the delegated cgroup %s holds processes (%s): its controllers would be EBUSY", root, procs)
	}
	enabled := strings.Fields(cgFile(t, rootDir, "cgroup.subtree_control"))
	for _, c := range cgroup2Needed {
		if !slices.Contains(enabled, c) {
			t.Errorf("%s/cgroup.subtree_control = %v, lacks %s", root, enabled, c)
		}
	}
	if !strings.HasPrefix(cg.Path(), root+"/"+DefaultCgroupParent+"/") {
		t.Errorf("job cgroup %s is not below %s/%s", cg.Path(), root, DefaultCgroupParent)
	}
	jobCtl := strings.Fields(cgFile(t, filepath.Join(mount, cg.Path()), "cgroup.controllers"))
	for _, c := range cgroup2Needed {
		if !slices.Contains(jobCtl, c) {
			t.Errorf("job cgroup.controllers = %v, lacks %s", jobCtl, c)
		}
	}
	if err := Available(); err != nil {
		t.Errorf("Available after delegating: %v", err)
	}
}

// Ensure a v2 job cgroup holds the policy's limits in the kernel's files,
// swap off and the whole-job OOM kill on, and that a job is born inside it
// (CLONE_INTO_CGROUP): its first output already names the job's cgroup.
func TestCgroup2_Limits(t *testing.T) {
	mount := requireUnified(t)
	cg := newTestCgroup(t, 2, limits(0.5, 64<<20, 32))
	dir := filepath.Join(mount, cg.Path())
	for file, want := range map[string]string{
		"memory.max": "67108864", "memory.swap.max": "0", "memory.oom.group": "1",
		"cpu.max": "50000 100000", "pids.max": "32",
	} {
		if got := cgFile(t, dir, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", `cat /proc/self/cgroup; exec sleep 30`)
	fd, err := cg.CloneFD()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Kill(); err != nil {
			t.Error(err)
		}
		if err := cmd.Wait(); err != nil && cmd.ProcessState == nil {
			t.Error(err)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + cg.Path() + "\n"; line != want {
		t.Fatalf("first output %q, want %q: born outside its cgroup", line, want)
	}
	if procs := strings.Fields(cgFile(t, dir, "cgroup.procs")); !slices.Contains(procs, strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("cgroup.procs = %q, lacks the job's pid %d", procs, cmd.Process.Pid)
	}
	if pop, _ := cgKeyed(t, dir, "cgroup.events", "populated"); pop != 1 {
		t.Errorf("cgroup.events populated = %d with the job running", pop)
	}
}

// Ensure the threat table's cases on v2, each read from the kernel's files:
// a fork bomb is capped by pids.max, a memory bomb is OOM-killed as a
// whole with memory.peak at the limit, a CPU hog holds its quota within
// ±20%, and cgroup.kill takes a setsid escapee that a process-group kill
// misses.
func TestCgroup2_Threats(t *testing.T) {
	mount := requireUnified(t)
	t.Run("fork bomb", func(t *testing.T) {
		cg := newTestCgroup(t, 2, limits(0, 0, 32))
		dir := filepath.Join(mount, cg.Path())
		cmd := startIn(t, cg, `sh -c 'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done' 2>/dev/null; sleep 30`)
		// The bomb's shell dies at its first refused fork, one below the cap.
		waitUsage(t, cg, "a refused fork", func(u Usage) bool { return u.PidsLimitHits > 0 })
		if peak := cgFile(t, dir, "pids.peak"); peak != "32" {
			t.Errorf("pids.peak = %s, want the cap 32", peak)
		}
		if cur, err := strconv.Atoi(cgFile(t, dir, "pids.current")); err != nil || cur > 32 || cur < 30 {
			t.Errorf("pids.current = %d (%v), want just below the cap 32", cur, err)
		}
		if hits, _ := cgKeyed(t, dir, "pids.events", "max"); hits < 1 {
			t.Errorf("pids.events max = %d, want a refused fork", hits)
		}
		if err := cg.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Error("the bomb's shell exited by itself")
		}
		if err := killAndWait(cg, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("memory bomb", func(t *testing.T) {
		cg := newTestCgroup(t, 2, limits(0, 64<<20, 0))
		dir := filepath.Join(mount, cg.Path())
		// The shell outlives tail's OOM kill only if the kernel kills one
		// process, not the group: it would then exit 0 by itself.
		cmd := startIn(t, cg, `head -c 200M /dev/zero | tail > /dev/null; exit 0`)
		werr := cmd.Wait()
		u, uerr := cg.Usage()
		if uerr != nil {
			t.Fatal(uerr)
		}
		kills, _ := cgKeyed(t, dir, "memory.events", "oom_kill")
		if kills < 1 || u.OOMKills != kills {
			t.Errorf("memory.events oom_kill = %d, Usage.OOMKills = %d: want ≥ 1 and equal", kills, u.OOMKills)
		}
		if gk, ok := cgKeyed(t, dir, "memory.events", "oom_group_kill"); ok && gk < 1 {
			t.Errorf("memory.events oom_group_kill = %d: the job was not killed as a whole", gk)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the job's shell ended with %v, want SIGKILL (memory.oom.group)", werr)
		}
		peak, err := strconv.ParseInt(cgFile(t, dir, "memory.peak"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if peak < 60<<20 || peak > 70<<20 || u.MemoryPeakBytes != peak {
			t.Errorf("memory.peak = %d, Usage.MemoryPeakBytes = %d: want about 64 MiB and equal", peak, u.MemoryPeakBytes)
		}
	})
	t.Run("cpu hog", func(t *testing.T) {
		cg := newTestCgroup(t, 2, limits(0.5, 0, 0))
		dir := filepath.Join(mount, cg.Path())
		cmd := startIn(t, cg, `timeout 2 sh -c 'while :; do :; done'`)
		if err := cmd.Wait(); err != nil {
			t.Logf("hog: %v", err)
		}
		// The kernel's own measure: CPU time per period the hog ran in.
		// (A wall clock read here would count the shells' start too,
		// which software emulation makes slow.)
		usage, _ := cgKeyed(t, dir, "cpu.stat", "usage_usec")
		periods, _ := cgKeyed(t, dir, "cpu.stat", "nr_periods")
		throttled, _ := cgKeyed(t, dir, "cpu.stat", "nr_throttled")
		if periods < 10 {
			t.Fatalf("cpu.stat nr_periods %d: the hog ran less than a second", periods)
		}
		ratio := float64(usage) / float64(periods*100000)
		if ratio < 0.4 || ratio > 0.6 || throttled < periods/2 {
			t.Fatalf("cpu.stat usage_usec %d over %d periods of 100ms (%.2f of a CPU), nr_throttled %d: want 0.5 ±20%%, throttled", usage, periods, ratio, throttled)
		}
		t.Logf("cpu.stat: %.2f of a CPU over %d periods, throttled in %d", ratio, periods, throttled)
	})
	t.Run("setsid escapee", func(t *testing.T) {
		cg := newTestCgroup(t, 2, limits(0, 0, 16))
		dir := filepath.Join(mount, cg.Path())
		// No pid namespace: the shell's death must not take the escapee,
		// so that only cgroup.kill can.
		cmd := exec.Command("/bin/sh", "-c", `setsid sleep 30 & echo $!; wait`)
		fd, err := cg.CloneFD()
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		escapee, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("escapee pid %q: %v", line, err)
		}
		t.Cleanup(func() { reapEscapee(t, escapee) })
		for deadline := time.Now().Add(5 * time.Second); procSession(t, escapee) != escapee; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the escapee never made a session of its own")
			}
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Fatal("the shell survived its group's SIGKILL")
		}
		if !alive(escapee) {
			t.Fatal("the process-group kill took the escapee: this test proves nothing")
		}
		if pop, _ := cgKeyed(t, dir, "cgroup.events", "populated"); pop != 1 {
			t.Fatalf("cgroup.events populated = %d with the escapee running", pop)
		}
		if err := cg.Kill(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			pop, _ := cgKeyed(t, dir, "cgroup.events", "populated")
			if pop == 0 && !alive(escapee) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after cgroup.kill: populated %d, escapee alive %v", pop, alive(escapee))
			}
		}
	})
}

// procSession is pid's session id, or 0 once it is gone.
func procSession(t *testing.T, pid int) int {
	t.Helper()
	_, _, sid := procStat(pid)
	return sid
}

// procStat reads a process's state, parent and session from
// /proc/PID/stat; state is 0 once the process is gone.
func procStat(pid int) (state byte, ppid, sid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0
	}
	// After "pid (comm) ": state ppid pgrp session ...
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 4 {
		return 0, 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	sid, _ = strconv.Atoi(f[3])
	return f[0][0], ppid, sid
}

// alive reports whether pid runs: neither gone nor a zombie.
func alive(pid int) bool {
	state, _, _ := procStat(pid)
	return state != 0 && state != 'Z'
}

// reapEscapee waits until the orphaned escapee is gone. A zombie of this
// process (a child subreaper once a Runner ran here) is reaped here: it
// would count in pids.current for ever (KERNEL-NOTES gotcha 3).
func reapEscapee(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		state, ppid, _ := procStat(pid)
		if state == 0 {
			return
		}
		if state == 'Z' && ppid == os.Getpid() {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err != nil && !errors.Is(err, syscall.ECHILD) {
				t.Error(err)
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("escapee %d still there (state %c, parent %d)", pid, state, ppid)
			return
		}
	}
}

// Ensure the delegation plan, on fake cgroup trees: a server alone in a
// cgroup with the controllers moves into its leaf; one already in a set-up
// leaf stays; anything else is refused with what to add to the unit.
func TestPlanDelegation2(t *testing.T) {
	const pid = 4242
	type cg struct{ controllers, subtree, procs string }
	tests := []struct {
		name     string
		tree     map[string]cg // path below the mount: its files
		rootType bool          // the mount's root has cgroup.type (a cgroup namespace's root)
		self     string
		wantRoot string
		wantMove bool
		wantErr  string
	}{
		{"a unit of its own", map[string]cg{"/s/u": {"cpu io memory pids", "", "4242\n"}},
			false, "/s/u", "/s/u", true, ""},
		{"restarted in its leaf", map[string]cg{"/s/u": {"cpu memory pids", "cpu memory pids", ""}, "/s/u/supervisor": {"cpu memory pids", "", "4242\n"}},
			false, "/s/u/supervisor", "/s/u", false, ""},
		{"in the leaf, the unit not set up (DelegateSubgroup=supervisor)", map[string]cg{"/s/u/supervisor": {"", "", "4242\n"}, "/s/u": {"cpu memory pids", "", ""}},
			false, "/s/u/supervisor", "/s/u", false, ""},
		{"in the leaf, another process in the unit", map[string]cg{"/s/u/supervisor": {"", "", "4242\n"}, "/s/u": {"cpu memory pids", "", "17\n"}},
			false, "/s/u/supervisor", "", false, "shares its cgroup /s/u with 1 other processes (pids 17)"},
		{"in the leaf, the unit without the controllers", map[string]cg{"/s/u/supervisor": {"", "", "4242\n"}, "/s/u": {"memory", "", ""}},
			false, "/s/u/supervisor", "", false, "cgroup v2 controllers cpu, pids are not delegated to chimirror's cgroup /s/u"},
		{"controllers not delegated", map[string]cg{"/user.slice/session-1.scope": {"memory pids", "", "4242\n"}},
			false, "/user.slice/session-1.scope", "", false, "cgroup v2 controllers cpu are not delegated to chimirror's cgroup /user.slice/session-1.scope: run chimirror as a systemd service with Delegate=yes"},
		{"shared with a shell", map[string]cg{"/user.slice/session-1.scope": {"cpu memory pids", "", "17\n4242\n"}},
			false, "/user.slice/session-1.scope", "", false, "shares its cgroup /user.slice/session-1.scope with 1 other processes (pids 17)"},
		{"the root cgroup", map[string]cg{"/": {"cpu memory pids", "cpu memory pids", "1\n4242\n"}},
			false, "/", "", false, "chimirror runs in the root cgroup"},
		{"a cgroup namespace's root", map[string]cg{"/": {"cpu memory pids", "", "4242\n"}},
			true, "/", "/", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mount := t.TempDir()
			if tc.rootType {
				if err := os.WriteFile(filepath.Join(mount, "cgroup.type"), []byte("domain\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for p, files := range tc.tree {
				dir := filepath.Join(mount, p)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, content := range map[string]string{"cgroup.controllers": files.controllers, "cgroup.subtree_control": files.subtree, "cgroup.procs": files.procs} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			root, move, err := planDelegation2(mount, tc.self, pid)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "Delegate=yes") {
					t.Errorf("err %q does not say what to add to the unit", err)
				}
				return
			}
			if err != nil || root != tc.wantRoot || move != tc.wantMove {
				t.Fatalf("plan = %q, move %v, %v; want %q, move %v", root, move, err, tc.wantRoot, tc.wantMove)
			}
		})
	}
}

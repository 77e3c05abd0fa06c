package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// freezeCgroup freezes a job cgroup as a server killed in the middle of
// its freeze, kill, thaw leaves it (v1), or as an operator's freeze does
// (v2), and waits until the kernel says it is frozen.
func freezeCgroup(t *testing.T, dir string) {
	t.Helper()
	file, value, frozen := "cgroup.freeze", "1", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return err == nil && strings.Contains(string(b), "frozen 1")
	}
	if sandbox.CgroupVersion() == 1 {
		file, value, frozen = "freezer.state", "FROZEN", func() bool {
			b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
			return err == nil && strings.TrimSpace(string(b)) == "FROZEN"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		t.Fatalf("freeze %s: %v", dir, err)
	}
	for deadline := time.Now().Add(ioTimeout); !frozen(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never froze", dir)
		}
	}
}

// thawAndKill kills what a frozen job cgroup holds, if it is still there,
// and removes it (v1: its freezer directory; the sweep's job otherwise).
func thawAndKill(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Error(err)
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Error(err)
			}
		}
	}
	file, value := "cgroup.freeze", "0"
	if sandbox.CgroupVersion() == 1 {
		file, value = "freezer.state", "THAWED"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		t.Error(err)
	}
	for deadline := time.Now().Add(ioTimeout); ; time.Sleep(20 * time.Millisecond) {
		err := os.Remove(dir)
		if err == nil || os.IsNotExist(err) || time.Now().After(deadline) {
			if err != nil && !os.IsNotExist(err) {
				t.Errorf("remove %s: %v", dir, err)
			}
			return
		}
	}
}

// Ensure the recovery sweep of a restarted server kills and records every
// orphan its killed predecessor left, job cgroups frozen before the kill -9
// included: after the restart no process, no cgroup and no open record is
// left, each job recorded lost. On v1 a frozen job keeps its processes
// through the kill -9 (the init's Pdeathsig SIGKILL stays pending), so the
// sweep must thaw and kill them; on v2 a fatal signal ends a frozen task,
// and the sweep finds their cgroups.
func TestServeKill9_FrozenOrphansRecovered(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	const jobs = 3
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `sandbox = "on"
data_dir = "data"
[[app]]
name = "orphan"
command = ["sh", "-c", "setsid sleep 876501 & echo ready; exec sleep 876502"]
env = ["PATH"]
`)
	srv := startServer(t, dir, "--config", cfg)
	for i := range jobs {
		ws, _, err := websocket.DefaultDialer.Dial(srv.url("ws", "/apps/orphan"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		if err := ws.SetReadDeadline(time.Now().Add(runTimeout)); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "ready" {
			t.Fatalf("job %d: %q %v", i, m, err)
		}
	}
	var cgroups []string
	for _, glob := range jobCgroupGlobs(dir, "*") {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		// Jobs and the pool's prepared sandboxes: NAME.PID of this server.
		for _, p := range m {
			if strings.HasSuffix(p, fmt.Sprintf(".%d", srv.cmd.Process.Pid)) &&
				(sandbox.CgroupVersion() == 2 || strings.Contains(p, "/freezer/")) {
				cgroups = append(cgroups, p)
			}
		}
	}
	if len(cgroups) < jobs {
		t.Fatalf("job cgroups %v, want at least %d", cgroups, jobs)
	}
	// "ready" may come before the background setsid has exec'd sleep.
	for wait := time.Now().Add(ioTimeout); len(jobProcs(t, "sleep 87650")) != 2*jobs; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("%d job processes, want %d", len(jobProcs(t, "sleep 87650")), 2*jobs)
		}
	}
	t.Cleanup(func() { // if the test failed before the sweep: leave nothing frozen or running
		for _, cg := range cgroups {
			thawAndKill(t, cg)
		}
	})
	for _, cg := range cgroups {
		freezeCgroup(t, cg)
	}
	srv.signal(syscall.SIGKILL)
	srv.wait(startTimeout)
	time.Sleep(100 * time.Millisecond) // time enough for a SIGKILL to act, were it not frozen
	n := len(jobProcs(t, "sleep 87650"))
	if sandbox.CgroupVersion() == 1 && n != 2*jobs {
		t.Fatalf("%d job processes after the server's kill -9, want %d frozen orphans", n, 2*jobs)
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); err != nil {
			t.Fatalf("the killed server's job cgroup: %v", err)
		}
	}
	t.Logf("after the kill -9: %d job processes, %d job cgroups", n, len(cgroups))

	// The restart listens first and sweeps beside new jobs: wait for the
	// sweep's end before the stop, which would leave the rest to the next.
	start := time.Now()
	again := startServer(t, dir, "--config", cfg)
	again.waitRecovered(slow(30 * time.Second))
	t.Logf("the recovering server listened and swept in %v", time.Since(start).Round(time.Millisecond))
	if code := again.stop(syscall.SIGTERM, slow(30*time.Second)); code != 0 {
		t.Fatalf("the recovering server exited %d:\n%s", code, again.stderr)
	}
	if left := jobProcs(t, "sleep 87650"); len(left) != 0 {
		t.Errorf("orphans survived the recovery: %v", left)
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); !os.IsNotExist(err) {
			t.Errorf("job cgroup %s left after the recovery: %v", cg, err)
		}
	}
	l, err := accounting.Open(filepath.Join(dir, "data", "ledger.db"), accounting.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open, err := l.OpenRecords()
	if err != nil || len(open) != 0 {
		t.Fatalf("records left open: %d %v", len(open), err)
	}
	for i := range jobs {
		id := fmt.Sprintf("JOB%08d", i+1)
		r, _, err := l.Get(id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if r.State != accounting.StateLost {
			t.Errorf("%s recorded %s (%s), want lost", id, r.State, r.Reason)
		}
	}
}

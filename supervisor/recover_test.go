package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// v1Subsystems are the hierarchies job cgroups live in on a v1 host.
var v1Subsystems = []string{"cpu", "cpuacct", "memory", "pids", "freezer"}

// ownV1 is this process's cgroup in each v1 hierarchy, from /proc/self/cgroup.
func ownV1(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			own[c] = f[2]
		}
	}
	return own
}

// v1Dir is where this process's job cgroup name lives in one hierarchy.
func v1Dir(t *testing.T, l *accounting.Ledger, sub, name string) string {
	return filepath.Join("/sys/fs/cgroup", sub, ownV1(t)[sub], CgroupParentFor(l), name)
}

// leaveCgroup makes an empty job cgroup under l's parent, as a server that
// died would have left it, in the given hierarchies (all by default).
func leaveCgroup(t *testing.T, l *accounting.Ledger, name string, subs ...string) {
	t.Helper()
	if len(subs) == 0 {
		subs = v1Subsystems
	}
	for _, sub := range subs {
		dir := v1Dir(t, l, sub, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { // only if the test failed before Recover removed it
		for _, sub := range v1Subsystems {
			dir := v1Dir(t, l, sub, name)
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Error(err)
			}
			if err := os.Remove(filepath.Dir(dir)); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrExist) {
				t.Log(err) // the parent may still hold another test's cgroups
			}
		}
	})
}

// Ensure that recovery closes every open record as lost (with the
// cgroup's counters when it has one), removes every leftover cgroup, even
// one half made, leaves closed records alone, and is idempotent: a second
// run, as after a server that died during the first, changes nothing.
func TestRecover_Idempotent(t *testing.T) {
	if err := sandbox.Available(); err != nil || sandbox.CgroupVersion() != 1 {
		t.Skipf("needs root and cgroup v1 controllers (this test makes v1 cgroups by hand): %v", err)
	}
	l := openLedger(t)
	begin := func(state accounting.State) *accounting.Record {
		r := &accounting.Record{App: "a", Tenant: "public", Command: []string{"cat"}}
		if err := l.Begin(r); err != nil {
			t.Fatal(err)
		}
		if state != accounting.StateStarting {
			r.State = state
			if state == accounting.StateRunning {
				r.Cgroup = CgroupParentFor(l) + "/" + r.ID + ".999"
			}
			if !state.Open() {
				r.Reason, r.EndedAt = accounting.ReasonLost, time.Now()
			}
			if err := l.Put(r, true); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	running := begin(accounting.StateRunning)   // its cgroup is left
	starting := begin(accounting.StateStarting) // died before its cgroup: JOBn.pid names it
	plain := begin(accounting.StateRunning)     // no cgroup at all
	closed := begin(accounting.StateLost)       // closed by a recovery that died before deleting its cgroup
	if err := l.Tick(time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	leaveCgroup(t, l, running.ID+".999")
	leaveCgroup(t, l, starting.ID+".999", "pids", "memory") // half made
	leaveCgroup(t, l, closed.ID+".999")
	leaveCgroup(t, l, "init3.999") // a pool's initiator: no record

	log := slog.New(slog.DiscardHandler)
	got, err := Recover(log, l, true)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.Lost)
	if want := []string{running.ID, starting.ID, plain.ID}; !slices.Equal(got.Lost, want) || got.Cgroups != 4 {
		t.Fatalf("recovered %+v, want lost %v and 4 cgroups", got, want)
	}
	for _, id := range []string{running.ID, starting.ID, plain.ID, closed.ID} {
		r, _, err := l.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != accounting.StateLost || r.Reason != accounting.ReasonLost || r.EndedAt.Before(r.StartedAt) {
			t.Errorf("%s: %s %s ended %v", id, r.State, r.Reason, r.EndedAt)
		}
	}
	if r, _, _ := l.Get(running.ID); r.Detail == "" {
		t.Errorf("a lost job's record says nothing of why: %+v", r)
	}
	left, err := sandbox.Leftovers(CgroupParentFor(l))
	if err != nil || len(left) != 0 {
		t.Fatalf("cgroups left: %v %v", left, err)
	}
	again, err := Recover(log, l, true)
	if err != nil || len(again.Lost) != 0 || again.Cgroups != 0 {
		t.Fatalf("second recovery: %+v %v", again, err)
	}
}

// Ensure a lost job that one recovery leaves open (stopped by SIGTERM
// while its cgroup still held a live task) ends, at the next start, when
// its own server last saw it: not at the heartbeat of the server in
// between, which ticked for its own jobs meanwhile.
func TestRecover_InterruptedKeepsLastSeen(t *testing.T) {
	if err := sandbox.Available(); err != nil || sandbox.CgroupVersion() != 1 {
		t.Skipf("needs root and cgroup v1 (a task held in another freezer cgroup stands for a stuck one): %v", err)
	}
	l := openLedger(t)
	// Server A: one running job, last seen now; then A dies.
	r := &accounting.Record{App: "a", Tenant: "public", Command: []string{"x"}}
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	name := r.ID + ".999"
	r.State, r.Cgroup = accounting.StateRunning, CgroupParentFor(l)+"/"+name
	if err := l.Put(r, true); err != nil {
		t.Fatal(err)
	}
	seenByA := time.Now().Round(0)
	if err := l.Tick(seenByA, nil); err != nil {
		t.Fatal(err)
	}
	// Its cgroup (pids only) holds a task that will not die yet: it is
	// frozen in a freezer cgroup of its own, as a task in D state would be.
	leaveCgroup(t, l, name, "pids")
	frz := filepath.Join("/sys/fs/cgroup/freezer", ownV1(t)["freezer"], fmt.Sprintf("chimirror-test-stuck-%d", time.Now().UnixNano()))
	if err := os.Mkdir(frz, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(frz, "freezer.state")
	thaw := func() {
		if err := os.WriteFile(state, []byte("THAWED"), 0); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		thaw()
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Error(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Error("sleep exited by itself")
		}
		if err := os.Remove(frz); err != nil {
			t.Error(err)
		}
	})
	pid := []byte(strconv.Itoa(cmd.Process.Pid))
	for _, f := range []string{filepath.Join(v1Dir(t, l, "pids", name), "cgroup.procs"), filepath.Join(frz, "cgroup.procs")} {
		if err := os.WriteFile(f, pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		t.Fatal(err)
	}

	// Server B: its sweep is stopped with the cgroup still live, and B
	// ticks for its own jobs, an hour on.
	log := slog.New(slog.DiscardHandler)
	rec, err := FindLeftovers(log, l, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if out, err := rec.Run(ctx); !errors.Is(err, context.DeadlineExceeded) || out.Stuck != 1 {
		t.Fatalf("B's sweep: %+v %v; want it stopped with the one cgroup stuck", out, err)
	}
	if err := l.Tick(seenByA.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	thaw()

	// Server C finishes the sweep.
	if _, err := Recover(log, l, true); err != nil {
		t.Fatal(err)
	}
	got, err := l.Record(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != accounting.StateLost || !got.EndedAt.Equal(seenByA) {
		t.Fatalf("%s: %s, ended %v; want lost, ended when A last saw it (%v)", r.ID, got.State, got.EndedAt, seenByA)
	}
}

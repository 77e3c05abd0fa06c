package supervisor

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

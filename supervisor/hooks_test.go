package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/chimirror/chimirror/accounting"
)

// hookLog records what one subscriber's hooks were told.
type hookLog struct {
	mu      sync.Mutex
	started map[string]accounting.State
	ended   map[string]accounting.State
	errs    []string
}

func newHookLog() *hookLog {
	return &hookLog{started: make(map[string]accounting.State), ended: make(map[string]accounting.State)}
}

func (l *hookLog) hooks() Hooks {
	return Hooks{
		Started: func(info JobInfo, rec accounting.Record) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if _, ok := l.started[rec.ID]; ok || info.ID != rec.ID {
				l.errs = append(l.errs, "second or mismatched Started for "+rec.ID)
			}
			l.started[rec.ID] = rec.State
		},
		Ended: func(info JobInfo, _ Exit, rec accounting.Record) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if _, ok := l.started[rec.ID]; !ok {
				l.errs = append(l.errs, "Ended before Started for "+rec.ID)
			}
			if _, ok := l.ended[rec.ID]; ok || info.ID != rec.ID {
				l.errs = append(l.errs, "second or mismatched Ended for "+rec.ID)
			}
			l.ended[rec.ID] = rec.State
		},
	}
}

func (l *hookLog) counts() (started, ended int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.started), len(l.ended)
}

// Ensure that every subscriber, and Config.OnEnd, hears of every job that
// ran, start before end, with its record; that a job that never got a
// process is not reported; and that an unsubscribed one hears nothing more.
func TestSupervisor_Hooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	onEnd := 0
	s, err := New(slog.New(slog.DiscardHandler), Config{Ledger: openLedger(t), Runner: testRunner,
		OnEnd: func(JobInfo, Exit) { mu.Lock(); onEnd++; mu.Unlock() },
		Apps: []App{{Name: "t", Path: "/bin/true", Args: []string{"true"}},
			{Name: "missing", Path: "/nonexistent/program", Args: []string{"program"}}}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newHookLog(), newHookLog()
	s.Subscribe(a.hooks())
	unsubscribe := s.Subscribe(b.hooks())
	run := func(n int) {
		var wg sync.WaitGroup
		for range n {
			j, err := s.Start(Request{App: "t"})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { j.Run(nil) })
		}
		wg.Wait()
	}
	run(20)
	if _, err := s.Start(Request{App: "missing"}); err == nil {
		t.Fatal("a missing program started")
	}
	unsubscribe()
	unsubscribe() // a second call does nothing
	run(5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	for name, l := range map[string]*hookLog{"subscriber": a, "unsubscribed": b} {
		want := 25
		if l == b {
			want = 20
		}
		st, en := l.counts()
		if st != want || en != want {
			t.Errorf("%s: %d Started, %d Ended; want %d each", name, st, en, want)
		}
		for _, e := range l.errs {
			t.Errorf("%s: %s", name, e)
		}
		for id, state := range l.started {
			if state != accounting.StateRunning || l.ended[id] != accounting.StateFinished {
				t.Errorf("%s: %s: Started with %s, Ended with %s", name, id, state, l.ended[id])
			}
		}
	}
	if onEnd != 25 {
		t.Errorf("Config.OnEnd called %d times; want 25", onEnd)
	}
}

// Ensure that a Usage hook is called at its pace with the running jobs, not
// after unsubscribe returns, and that Shutdown stops the loops of
// subscriptions still open.
func TestSupervisor_UsageHook(t *testing.T) {
	t.Parallel()
	s, err := New(slog.New(slog.DiscardHandler), Config{Runner: testRunner,
		Apps: []App{{Name: "sleep", Path: "/bin/sleep", Args: []string{"sleep", "30"}}}})
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.Start(Request{App: "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls, idle int
	seen := make(chan []JobInfo, 1)
	unsubscribe := s.Subscribe(Hooks{UsageEvery: 10 * time.Millisecond, Usage: func(running func() []JobInfo) {
		mu.Lock()
		calls++
		mu.Unlock()
		select {
		case seen <- running():
		default:
		}
	}})
	s.Subscribe(Hooks{UsageEvery: 10 * time.Millisecond, Usage: func(func() []JobInfo) {
		mu.Lock()
		idle++
		mu.Unlock()
	}})
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case jobs := <-seen:
			found = len(jobs) == 1 && jobs[0].ID == j.ID
			if len(jobs) > 1 {
				t.Fatalf("Usage saw %+v; want the one running job %s", jobs, j.ID)
			}
		case <-deadline:
			t.Fatalf("no Usage call listed job %s within 5s", j.ID)
		}
	}
	unsubscribe()
	mu.Lock()
	after := calls
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if calls != after {
		t.Errorf("Usage called %d more times after unsubscribe returned", calls-after)
	}
	mu.Unlock()

	j.Abort() // ends the sleep
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	stopped := idle
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if idle == 0 || idle != stopped {
		t.Errorf("the still-subscribed Usage hook ran %d times, then %d more after Shutdown; want some, then none", stopped, idle-stopped)
	}
}

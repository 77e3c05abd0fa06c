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

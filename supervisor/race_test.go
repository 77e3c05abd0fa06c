package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chimirror/chimirror/accounting"
)

// Ensure that the operator's view of jobs (Record, Cancel) may run while
// jobs start: run with -race, this fails on any unsynchronised access to
// a job being published.
func TestSupervisor_RecordAndCancelWhileStarting(t *testing.T) {
	t.Parallel()
	l := openLedger(t)
	s, err := New(slog.New(slog.DiscardHandler), Config{Ledger: l, Runner: testRunner,
		Apps: []App{{Name: "t", Path: "/bin/true", Args: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for i := uint64(1); i <= 30; i++ {
				id := accounting.FormatID(i)
				s.Record(id)
				if err := s.Cancel(id, "op"); err != nil && !errors.Is(err, ErrNoJob) {
					t.Error(err)
				}
			}
		}
	}()
	for range 30 {
		j, err := s.Start(Request{App: "t"})
		if err != nil {
			t.Fatal(err)
		}
		j.Abort()
	}
	stop.Store(true)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

package supervisor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// batchSup is a supervisor with a ledger and a spool dir, running app.
func batchSup(t *testing.T, dir string, apps ...App) *Supervisor {
	t.Helper()
	s, err := New(slog.New(slog.DiscardHandler), Config{Ledger: openLedger(t), Runner: testRunner, SpoolDir: dir, Apps: apps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// startBatch starts a batch job of app on s.
func startBatch(t *testing.T, s *Supervisor, app string) (*Job, *Batch) {
	t.Helper()
	j, err := s.Start(Request{App: app})
	if err != nil {
		t.Fatal(err)
	}
	b, err := j.RunBatch()
	if err != nil {
		t.Fatal(err)
	}
	return j, b
}

// Ensure a spooled job's file is durable (synced, exit event written)
// before its final record is: when the spool is synced, the ledger still
// says the job runs; once the record says finished, the spool is whole.
// Not parallel: it sets the spool package's sync hook.
func TestSpool_SyncedBeforeFinalRecord(t *testing.T) {
	dir := t.TempDir()
	s := batchSup(t, dir, App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", "printf out; printf err >&2"}, Mode: "batch"})
	var mu sync.Mutex
	var atSync []accounting.State
	spool.SetTestSynced(func(path string) {
		id := filepath.Base(path[:len(path)-len(spool.Ext)])
		rec, err := s.Ledger().Record(id)
		if err != nil {
			t.Errorf("record at sync: %v", err)
		}
		mu.Lock()
		atSync = append(atSync, rec.State)
		mu.Unlock()
	})
	t.Cleanup(func() { spool.SetTestSynced(nil) })
	for range 3 {
		j, b := startBatch(t, s, "b")
		if err := b.CloseStdin(); err != nil {
			t.Fatal(err)
		}
		var rec accounting.Record
		deadline := time.Now().Add(10 * time.Second)
		for rec.State != accounting.StateFinished && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			rec, _ = s.Ledger().Record(j.ID)
		}
		if rec.State != accounting.StateFinished || !rec.Spool {
			t.Fatalf("record %+v: want finished, spooled", rec)
		}
		sf, err := spool.Open(spool.Path(dir, j.ID))
		if err != nil {
			t.Fatal(err)
		}
		in, err := sf.Info()
		if cerr := sf.Close(); err != nil || cerr != nil {
			t.Fatal(err, cerr)
		}
		if in.Exit == nil || in.Exit.Code != 0 || in.StdoutBytes != 3 || in.StderrBytes != 3 || in.LastSeq != uint64(in.Events) {
			t.Fatalf("spool %+v: want out, err and the exit, numbered from 1", in)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(atSync) != 3 {
		t.Fatalf("%d syncs, want 3", len(atSync))
	}
	for _, st := range atSync {
		if !st.Open() {
			t.Errorf("at the spool's sync the record was %s: want still open", st)
		}
	}
}

// Ensure retention prunes ended jobs' old spools, never a running job's
// (however quiet) nor a young one, and that a pass is bounded.
func TestSpool_Prune(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := batchSup(t, dir, App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", "read x"}, Mode: "batch"})
	s.spool.retention = time.Hour
	j, b := startBatch(t, s, "b")
	old := time.Now().Add(-2 * time.Hour)
	for _, id := range []string{"JOB90000001", "JOB90000002", j.ID} {
		p := spool.Path(dir, id)
		if id != j.ID {
			w, err := spool.Create(dir, id)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(1, &spool.Exit{Reason: "exit"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	young, err := spool.Create(dir, "JOB90000003")
	if err != nil {
		t.Fatal(err)
	}
	if err := young.Close(0, nil); err != nil {
		t.Fatal(err)
	}
	n, err := spool.Prune(context.Background(), dir, time.Now().Add(-time.Hour), func(id string) bool { return id == j.ID }, 1)
	if err != nil || n != 1 {
		t.Fatalf("a pass bounded at 1 removed %d, %v", n, err)
	}
	s.pruneSpool(time.Now())
	for _, tc := range []struct {
		id   string
		kept bool
	}{{"JOB90000001", false}, {"JOB90000002", false}, {"JOB90000003", true}, {j.ID, true}} {
		t.Run(tc.id, func(t *testing.T) {
			_, err := os.Stat(spool.Path(dir, tc.id))
			if kept := err == nil; kept != tc.kept {
				t.Fatalf("kept %v, want %v (%v)", kept, tc.kept, err)
			}
		})
	}
	if err := b.CloseStdin(); err != nil {
		t.Fatal(err)
	}
}

package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
		if rec := waitFinished(t, s, j.ID); !rec.Spool {
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

// slowSpool makes every spool writer call wait before each event, from now
// until the test ends. Call it before the supervisor is made: cleanups run
// last first, so the hook is removed after the supervisor's shutdown. Not
// for parallel tests.
func slowSpool(t *testing.T, wait func(seq uint64) error) {
	t.Helper()
	testSpooling = wait
	t.Cleanup(func() { testSpooling = nil })
}

// waitFinished waits for job id's final record.
func waitFinished(t *testing.T, s *Supervisor, id string) accounting.Record {
	t.Helper()
	var rec accounting.Record
	for deadline := time.Now().Add(20 * time.Second); rec.State != accounting.StateFinished; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s not finished: %+v", id, rec)
		}
		rec, _ = s.Ledger().Record(id)
	}
	return rec
}

// spoolOf reads job id's whole spool: its info and every event in seq
// order, which must run on by one from 1 and end with the exit.
func spoolOf(t *testing.T, s *Supervisor, id string) (spool.Info, [3][]byte) {
	t.Helper()
	sf, err := s.OpenSpool(id)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	in, err := sf.Info()
	if err != nil {
		t.Fatal(err)
	}
	var streams [3][]byte
	want := uint64(1)
	for ev, err := range sf.EventsAfter(0) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != want {
			t.Fatalf("spool event %d, want %d: a hole", ev.Seq, want)
		}
		want++
		switch ev.Kind {
		case spool.KindStdout:
			streams[Stdout] = append(streams[Stdout], ev.Payload...)
		case spool.KindStderr:
			streams[Stderr] = append(streams[Stderr], ev.Payload...)
		}
	}
	if in.Exit == nil || in.LastSeq != want-1 {
		t.Fatalf("spool %+v: want whole, its exit last (seq %d)", in, want-1)
	}
	return in, streams
}

// Ensure a slow spool holds the job back as a slow client does: while
// its writer is stuck, the job's output waits in its pipe (the ring keeps
// what is not spooled yet and the pumps wait for room), and once it goes
// on, every byte is spooled, nothing dropped. Not parallel: slowSpool.
func TestSpool_SlowSpoolHoldsThePumps(t *testing.T) {
	const total = 4 << 20
	dir := t.TempDir()
	pol := mustPolicy(t, "small", "replay_bytes = \"64KiB\"\n")
	gate := make(chan struct{})
	slowSpool(t, func(uint64) error { <-gate; return nil })
	s := batchSup(t, dir, App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero; printf end >&2", total)},
		Mode: "batch", Binary: true, Policy: pol})
	ungate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(ungate) // before the shutdown: a failed test leaves no writer stuck
	j, b := startBatch(t, s, "b")
	if err := b.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	var read int64
	for stable := 0; stable < 20; time.Sleep(10 * time.Millisecond) { // 200 ms without a byte read
		n := j.Counters().StdoutBytes
		if n == read {
			stable++
		} else {
			read, stable = n, 0
		}
	}
	held, _, _, _ := j.ring.held()
	if read >= 1<<20 || held > j.ring.capBytes {
		t.Fatalf("a stuck spool let the job's %d bytes be read, %d held in a ring of %d: want the pumps to wait", read, held, j.ring.capBytes)
	}
	if rec, _ := s.Ledger().Record(j.ID); !rec.State.Open() {
		t.Fatalf("record %+v: want the job still running, held back", rec)
	}
	ungate()
	rec := waitFinished(t, s, j.ID)
	if rec.Reason != string(ReasonExit) || rec.Traffic.StdoutBytes != total {
		t.Fatalf("record %+v: want exit, all of stdout read", rec)
	}
	_, streams := spoolOf(t, s, j.ID)
	if len(streams[Stdout]) != total || bytes.ContainsFunc(streams[Stdout], func(r rune) bool { return r != 0 }) || string(streams[Stderr]) != "end" {
		t.Fatalf("spooled %d bytes of stdout (want %d zeros) and %q of stderr", len(streams[Stdout]), total, streams[Stderr])
	}
}

// Ensure a spooled job whose output nobody will read (its client went:
// the ring is abandoned) still spools all of it, while it keeps writing
// and through a slow spool, as the relay's tap once did. Not parallel:
// slowSpool.
func TestSpool_AbandonedStillSpools(t *testing.T) {
	const total = 2 << 20
	dir := t.TempDir()
	pol := mustPolicy(t, "spooled", "spool = true\nreplay_bytes = \"64KiB\"\n")
	// Its exit signal, which its client's leaving sends, is one it
	// ignores: it writes on after it, and ends by itself, well within its
	// grace.
	slowSpool(t, func(uint64) error { time.Sleep(time.Millisecond); return nil })
	s := batchSup(t, dir, App{Name: "i", Path: "/bin/sh", Args: []string{"sh", "-c", fmt.Sprintf("sleep 0.3; head -c %d /dev/zero; printf end >&2", total)},
		Binary: true, ExitSignal: syscall.SIGWINCH, Grace: time.Minute, Policy: pol})
	j, err := s.Start(Request{App: "i"})
	if err != nil {
		t.Fatal(err)
	}
	j.Abort() // no client: abandoned at once
	rec := waitFinished(t, s, j.ID)
	if rec.Reason != string(ReasonClientGone) || rec.ExitCode == nil || *rec.ExitCode != 0 || rec.Traffic.StdoutBytes != total {
		t.Fatalf("record %+v: want client-gone, exit 0, all of stdout read", rec)
	}
	_, streams := spoolOf(t, s, j.ID)
	if len(streams[Stdout]) != total || string(streams[Stderr]) != "end" {
		t.Fatalf("spooled %d bytes of stdout (want %d) and %q of stderr", len(streams[Stdout]), total, streams[Stderr])
	}
}

// Ensure the ring's spool floor: a spooled job's event is evicted only
// once acknowledged and spooled, an abandoned ring takes events for the
// spool until spoolDone and drops them after, and a ring without a spool
// is held back by acknowledgements alone.
func TestRing_SpoolFloor(t *testing.T) {
	t.Parallel()
	const capBytes = 4 * (minGrantBytes + eventOverheadBytes)
	fill := func(t *testing.T, r *ring) (taken int) {
		t.Helper()
		for {
			g, drop := r.tryReserve(minGrantBytes)
			if drop {
				t.Fatal("a ring that should take events dropped")
			}
			if g == 0 {
				return taken
			}
			r.commit(Stdout, make([]byte, g), nil, g)
			taken++
		}
	}
	t.Run("spooled", func(t *testing.T) {
		t.Parallel()
		r := newRing(newBudget(1<<20), capBytes)
		t.Cleanup(r.close)
		r.spoolAll()
		n := fill(t, r)
		r.ack(uint64(n))
		if fill(t, r) != 0 {
			t.Fatal("acknowledged events not yet spooled were evicted")
		}
		r.spooledTo(2)
		if got := fill(t, r); got != 2 {
			t.Fatalf("2 events spooled and acknowledged made room for %d", got)
		}
		if _, first, _, _ := r.held(); first != 3 {
			t.Fatalf("first held %d, want 3", first)
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		t.Parallel()
		r := newRing(newBudget(1<<20), capBytes)
		t.Cleanup(r.close)
		r.spoolAll()
		r.abandon()
		n := fill(t, r)
		if n == 0 {
			t.Fatal("an abandoned spooled ring took nothing")
		}
		r.spooledTo(uint64(n))
		if fill(t, r) != n {
			t.Fatal("spooled events of an abandoned ring made no room")
		}
		r.spoolDone()
		if _, drop := r.tryReserve(minGrantBytes); !drop {
			t.Fatal("an abandoned ring took events once its spool was done")
		}
	})
	t.Run("unspooled", func(t *testing.T) {
		t.Parallel()
		r := newRing(newBudget(1<<20), capBytes)
		t.Cleanup(r.close)
		n := fill(t, r)
		r.ack(uint64(n))
		if fill(t, r) != n {
			t.Fatal("acknowledged events of a ring without a spool were kept")
		}
		r.abandon()
		if _, drop := r.tryReserve(minGrantBytes); !drop {
			t.Fatal("an abandoned ring without a spool took events")
		}
	})
}

// Ensure what a reader of a spooled job's ring finds evicted (Job.Events
// skips them) is in the spool, with its seqs: a spool opened once the gap
// is seen holds every event before the first one the ring still has.
func TestSpool_GapIsInTheSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol := mustPolicy(t, "small", "replay_bytes = \"64KiB\"\n")
	// 1 MiB of numbered lines, then it waits for its stdin to close.
	s := batchSup(t, dir, App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", "seq 1 150000; read x"}, Mode: "batch", Policy: pol})
	j, b := startBatch(t, s, "b")
	defer func() {
		if err := b.CloseStdin(); err != nil {
			t.Error(err)
		}
	}()
	var want bytes.Buffer
	for i := 1; i <= 150000; i++ {
		fmt.Fprintln(&want, i)
	}
	for deadline := time.Now().Add(20 * time.Second); j.Counters().StdoutBytes < int64(want.Len()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the job wrote %d bytes, want %d", j.Counters().StdoutBytes, want.Len())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := j.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	first, held := ev.Seq, bytes.Clone(ev.Data)
	ev.Release()
	if first <= 1 {
		t.Fatalf("the ring still holds event 1: no gap to fill")
	}
	sf, err := s.OpenSpool(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	var got bytes.Buffer
	next := uint64(1)
	for sev, err := range sf.EventsAfter(0) {
		if err != nil {
			t.Fatal(err)
		}
		if sev.Seq != next {
			t.Fatalf("spool event %d, want %d", sev.Seq, next)
		}
		next++
		if sev.Seq == first {
			if !bytes.Equal(sev.Payload, held) {
				t.Fatalf("spool event %d differs from the ring's", first)
			}
			break
		}
		got.Write(sev.Payload)
	}
	if next <= first-1 {
		t.Fatalf("the spool ends at event %d; the ring's first is %d", next-1, first)
	}
	if !bytes.HasPrefix(want.Bytes(), got.Bytes()) || got.Len() == 0 {
		t.Fatalf("the spooled gap (%d bytes) is not the start of the output", got.Len())
	}
}

// Ensure a reader of a streaming job's spool finds every event its ring
// has let go, also once the spool has taken the direct path, which
// gathers events in memory before it writes them (OpenSpool flushes
// them), and that the spool's stdout is the job's, byte-exact.
func TestSpool_StreamingGapIsInTheSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol := mustPolicy(t, "small", "replay_bytes = \"64KiB\"\nmax_output = \"1GiB\"\n")
	s := batchSup(t, dir, App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", "yes 0123456789abcdef"}, Mode: "batch", Policy: pol})
	j, _ := startBatch(t, s, "b")
	defer func() {
		if err := s.Cancel(j.ID, "test"); err != nil {
			t.Error(err)
		}
		waitFinished(t, s, j.ID)
	}()
	const line = "0123456789abcdef\n"
	for deadline := time.Now().Add(30 * time.Second); j.Counters().StdoutBytes < 24<<20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the job wrote %d bytes in 30 s, want 24 MiB", j.Counters().StdoutBytes)
		}
	}
	for i := range 20 { // while it streams
		pos := j.Position(0)
		if pos.GapTo == 0 {
			t.Fatalf("the ring still holds event 1: no gap to fill")
		}
		sf, err := s.OpenSpool(j.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []byte
		seen := uint64(0)
		after := max(pos.GapTo, 64) - 64 // the last events the ring let go, and on
		for ev, err := range sf.EventsAfter(after) {
			if err != nil {
				t.Fatal(err)
			}
			seen = ev.Seq
			got = append(got, ev.Payload...)
		}
		if err := sf.Close(); err != nil {
			t.Fatal(err)
		}
		if seen < pos.GapTo {
			t.Fatalf("read %d: the spool ends at event %d; the ring had let go of every event up to %d", i, seen, pos.GapTo)
		}
		for len(want) < len(got)+len(line) {
			want = append(want, line...)
		}
		if k := bytes.Index(want, got[:min(len(got), len(line))]); k < 0 || !bytes.Equal(got, want[k:k+len(got)]) {
			t.Fatalf("read %d: the spool's events %d…%d are not the job's lines", i, after+1, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Ensure a running job's spool that failed is still read up to its
// failure (OpenSpool opens it), and that the job's end says the spool
// failed, though no event of its own found the failure (it is quiet until
// it exits, 2 s on).
func TestSpool_FailedSpoolStillOpens(t *testing.T) {
	t.Parallel()
	s := batchSup(t, t.TempDir(), App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", "echo a; exec sleep 2"}, Mode: "batch"})
	j, _ := startBatch(t, s, "b")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sf, err := s.OpenSpool(j.ID)
		if err != nil {
			t.Fatal(err)
		}
		in, err := sf.Info()
		if cerr := sf.Close(); err != nil || cerr != nil {
			t.Fatal(errors.Join(err, cerr))
		}
		if in.LastSeq >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job's first event never reached its spool")
		}
	}
	if err := j.spool.Append(spool.KindStdout, 0, nil); err == nil { // an out-of-order seq fails the spool
		t.Fatal("an Append with seq 0 succeeded")
	}
	sf, err := s.OpenSpool(j.ID)
	if err != nil {
		t.Fatalf("OpenSpool of a job whose spool failed: %v", err)
	}
	in, err := sf.Info()
	if cerr := sf.Close(); err != nil || cerr != nil || in.StdoutBytes != 2 {
		t.Fatalf("the failed spool reads %+v (%v, %v), want its 2 bytes", in, err, cerr)
	}
	if rec := waitFinished(t, s, j.ID); rec.Reason != string(ReasonSpoolFailed) { // it exits by itself
		t.Fatalf("record %+v: want reason %s", rec, ReasonSpoolFailed)
	}
}

// Ensure a spool that fails ends its job as spool-failed, whether the
// process still runs (it is terminated) or has exited, and that the
// failed spool, which has a hole, gets no exit event. Not parallel:
// slowSpool.
func TestSpool_FailureEndsTheJob(t *testing.T) {
	errFull := errors.New("no space left (test)")
	var s *Supervisor // set before any job starts
	slowSpool(t, func(seq uint64) error {
		if seq != 3 {
			return nil
		}
		// "exits" fails its spool once its process has exited (however
		// slow the machine: an emulated one forks in tens of ms).
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if exitsRunning(s) != 1 {
				break
			}
		}
		return errFull
	})
	dir := t.TempDir()
	pol := mustPolicy(t, "small", "replay_bytes = \"64KiB\"\n")
	s = batchSup(t, dir,
		App{Name: "runs", Path: "/bin/sh", Args: []string{"sh", "-c", "seq 1 100000; exec sleep 600"}, Mode: "batch", Policy: pol},
		App{Name: "exits", Path: "/bin/sh", Args: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.01; done"}, Mode: "batch", Policy: pol})
	for _, app := range []string{"runs", "exits"} {
		t.Run(app, func(t *testing.T) {
			j, b := startBatch(t, s, app)
			if err := b.CloseStdin(); err != nil {
				t.Fatal(err)
			}
			rec := waitFinished(t, s, j.ID)
			if rec.Reason != string(ReasonSpoolFailed) || !strings.Contains(rec.Detail, errFull.Error()) {
				t.Fatalf("record %+v: want spool-failed", rec)
			}
			if exited := rec.Signal == ""; exited != (app == "exits") {
				t.Fatalf("record %+v: want %s", rec, map[bool]string{true: "exited by itself", false: "terminated"}[app == "exits"])
			}
			sf, err := s.OpenSpool(j.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer sf.Close()
			in, err := sf.Info()
			if err != nil || in.Exit != nil || in.LastSeq != 2 {
				t.Fatalf("spool %+v, %v: want events 1 and 2, no exit", in, err)
			}
		})
	}
}

// exitsRunning is how many jobs of app "exits" on s have a process that
// has not exited.
func exitsRunning(s *Supervisor) int {
	s.mu.Lock()
	var jobs []*Job
	for _, j := range s.jobs {
		if j.App.Name == "exits" {
			jobs = append(jobs, j)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, j := range jobs {
		j.mu.Lock()
		if !j.procExited {
			n++
		}
		j.mu.Unlock()
	}
	return n
}

// Ensure a reader's hold keeps the events it has yet to take in the ring
// (a batch job's acknowledgements let every event go), moves as the
// reader takes them, and is passed when a pump has waited holdPatience
// for it: the reader then finds a gap, and its hold no longer counts.
func TestRing_ReaderHolds(t *testing.T) {
	t.Parallel()
	const capBytes = 4 * (minGrantBytes + eventOverheadBytes)
	fill := func(r *ring) (taken int) { // at most 10
		for taken < 10 {
			g, _ := r.tryReserve(minGrantBytes)
			if g == 0 {
				return taken
			}
			r.commit(Stdout, make([]byte, g), nil, g)
			taken++
			r.ack(math.MaxUint64) // a batch job's stand-in takes every event
		}
		return taken
	}
	r := newRing(newBudget(1<<20), capBytes)
	t.Cleanup(r.close)
	if r.hold(0, 0) != nil {
		t.Fatal("a ring took a hold past its most")
	}
	h := r.hold(0, 1)
	n := fill(r)
	if n == 0 || n == 10 || fill(r) != 0 {
		t.Fatalf("a ring held at 0 took %d events, then more", n)
	}
	h.move(2)
	if got := fill(r); got != 2 {
		t.Fatalf("a hold moved by 2 made room for %d events", got)
	}
	if p := r.position(2); p.GapTo != 0 {
		t.Fatalf("a held reader finds a gap %d…%d", p.GapFrom, p.GapTo)
	}
	// The reader stops: the pump waits, then evicts past it.
	if err := r.waitRoom(nil); err != nil {
		t.Fatal(err)
	}
	if p := r.position(2); p.GapTo == 0 {
		t.Fatal("the pump's wait ended with the stopped reader's events kept")
	}
	if got := fill(r); got != 10 {
		t.Fatalf("a hold behind the ring still kept its events: room for %d", got)
	}
	h.release()
	r.mu.Lock()
	holds := len(r.holds)
	r.mu.Unlock()
	if holds != 0 {
		t.Fatalf("%d holds after release", holds)
	}
}

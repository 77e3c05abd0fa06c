package accounting

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mustOpen opens a ledger in a fresh directory; cleanup checks the file's
// consistency (bbolt's tx.Check) and closes it.
func mustOpen(t testing.TB, opts Options) *Ledger {
	t.Helper()
	return mustOpenAt(t, filepath.Join(t.TempDir(), "ledger.db"), opts)
}

func mustOpenAt(t testing.TB, path string, opts Options) *Ledger {
	t.Helper()
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Check(); err != nil {
			t.Errorf("ledger check: %v", err)
		}
		if err := checkIndexes(l); err != nil {
			t.Errorf("ledger indexes: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("close ledger: %v", err)
		}
	})
	return l
}

// checkIndexes checks the index watermark's promise (see the layout in
// ledger.go): every job at or below it has its three index entries, no job
// above it has any, and no entry names a job the ledger does not hold.
func checkIndexes(l *Ledger) error {
	return l.db.View(func(tx *bolt.Tx) error {
		mark := indexedSeq(tx)
		want := make(map[string]bool)
		err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			seq := binary.BigEndian.Uint64(k)
			if seq > mark {
				return nil
			}
			var f indexFields
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			want[string(bucketByTime)+"/"+string(timeKey(f.StartedAt, seq))] = true
			want[string(bucketByTenant)+"/"+string(nameKey(f.Tenant, seq))] = true
			want[string(bucketByApp)+"/"+string(nameKey(f.App, seq))] = true
			return nil
		})
		if err != nil {
			return err
		}
		var errs []error
		for _, b := range [][]byte{bucketByTime, bucketByTenant, bucketByApp} {
			err := tx.Bucket(b).ForEach(func(k, _ []byte) error {
				key := string(b) + "/" + string(k)
				if !want[key] {
					errs = append(errs, fmt.Errorf("%s: stray entry %x (watermark %d)", b, k, mark))
				}
				delete(want, key)
				return nil
			})
			if err != nil {
				return err
			}
		}
		for key := range want {
			errs = append(errs, fmt.Errorf("missing index entry %q (watermark %d)", key, mark))
		}
		return errors.Join(errs...)
	})
}

func newRecord(app, tenant string) *Record {
	return &Record{App: app, Tenant: tenant, Policy: "default", Command: []string{"/bin/cat"}, Protocol: "lines"}
}

// finish writes r as ended by reason.
func finish(t testing.TB, l *Ledger, r *Record, reason string, cpu int64) {
	t.Helper()
	code := 0
	r.State, r.Reason, r.ExitCode, r.EndedAt = StateFinished, reason, &code, r.StartedAt.Add(time.Second)
	r.Usage = Usage{CPUUserNs: cpu, MemoryPeakBytes: 1 << 30}
	r.Traffic = Traffic{StdinBytes: 10, StdoutBytes: 20}
	if err := l.Put(r, true); err != nil {
		t.Fatal(err)
	}
}

// Ensure that IDs come from the ledger's sequence and stay unique across
// reopens, and that a record reads back as written.
func TestLedger_Begin_IDsUniqueForGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		r := newRecord("echo", "public")
		if err := l.Begin(r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpenAt(t, path, Options{})
	r := newRecord("echo", "public")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, r.ID)
	if want := "JOB00000001 JOB00000002 JOB00000003 JOB00000004"; strings.Join(ids, " ") != want {
		t.Fatalf("ids %v, want %s", ids, want)
	}
	got, _, err := l.Get("JOB00000002")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateStarting || got.App != "echo" || got.V != RecordVersion || got.StartedAt.IsZero() || got.LastSeen.IsZero() {
		t.Fatalf("record %+v", got)
	}
	if _, _, err := l.Get("JOB00000099"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

// Ensure that a second Open of the same file fails at once, naming it.
func TestLedger_Open_SecondInstanceFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	mustOpenAt(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second open took %v", d)
	}
	_, err = Open(path, Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open beside a writer: %v", err)
	}
}

// Ensure that a read-only ledger reads and refuses writes, and that a
// missing file is an error, not a new file.
func TestLedger_Open_ReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecord("echo", "public")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ro := mustOpenAt(t, path, Options{ReadOnly: true})
	if _, _, err := ro.Get(r.ID); err != nil {
		t.Fatal(err)
	}
	if err := ro.Begin(newRecord("x", "y")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to read-only: %v", err)
	}
}

// Ensure that listing pages through more records than a page, newest
// first, with every filter, and uses the cursor without repeats; and that
// it answers alike whether the jobs are indexed or wait in the tail for
// their index entries (see the layout in ledger.go), or both.
func TestLedger_List(t *testing.T) {
	for _, layout := range []struct {
		name       string
		indexAfter int // index the tail after this many starts; 0: never
	}{
		{"tail", 0},
		{"indexed and tail", 12},
		{"indexed", 25},
	} {
		t.Run(layout.name, func(t *testing.T) { testList(t, layout.indexAfter) })
	}
}

// indexNow indexes the tail (as the writer does every IndexBatch jobs) and
// returns once that is on disk.
func indexNow(t testing.TB, l *Ledger) {
	t.Helper()
	if err := l.submit(op{ctl: func() { l.commit([]op{l.indexOp()}) }}, true); err != nil {
		t.Fatal(err)
	}
}

// watermark is the ledger's index watermark (see the layout in ledger.go).
func watermark(t testing.TB, l *Ledger) uint64 {
	t.Helper()
	var mark uint64
	if err := l.db.View(func(tx *bolt.Tx) error { mark = indexedSeq(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return mark
}

// lagging are Options under which nothing is indexed unless a test says so.
var lagging = Options{IndexBatch: 1 << 30, IndexDelay: time.Hour}

func testList(t *testing.T, indexAfter int) {
	l := mustOpen(t, lagging)
	var recs []*Record
	for i := range 25 {
		r := newRecord([]string{"echo", "demo"}[i%2], []string{"acme", "umbrella", "public"}[i%3])
		if err := l.Begin(r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		if i+1 == indexAfter {
			indexNow(t, l)
		}
	}
	mid := recs[10].StartedAt
	for _, r := range recs[:20] {
		finish(t, l, r, "exit", 1e9)
	}
	if got := watermark(t, l); got != uint64(indexAfter) {
		t.Fatalf("indexed up to %d, want %d", got, indexAfter)
	}
	ids := func(p Page) string {
		var s []string
		for _, r := range p.Records {
			s = append(s, strings.TrimPrefix(r.ID, "JOB000000"))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"all newest first", Query{Limit: 3}, "25,24,23"},
		{"running", Query{State: "running"}, "25,24,23,22,21"},
		{"finished", Query{State: "finished", Limit: 2}, "20,19"},
		{"tenant", Query{Tenant: "acme", Limit: 4}, "25,22,19,16"},
		{"tenant and app", Query{Tenant: "acme", App: "echo"}, "25,19,13,07,01"},
		{"app", Query{App: "demo", Limit: 3}, "24,22,20"},
		{"since", Query{Since: mid, Tenant: "umbrella"}, "23,20,17,14,11"},
		{"until", Query{Until: mid, Limit: 2}, "10,09"},
		{"cursor", Query{Cursor: "JOB00000004"}, "03,02,01"},
		{"tenant cursor", Query{Tenant: "public", Cursor: "JOB00000009"}, "06,03"},
		{"unknown tenant", Query{Tenant: "nobody"}, ""},
		{"reason", Query{Reason: "exit", Limit: 1}, "20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.List(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("pages cover everything once", func(t *testing.T) {
		seen := map[string]bool{}
		q := Query{Limit: 7}
		pages := 0
		for {
			p, err := l.List(q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range p.Records {
				if seen[r.ID] {
					t.Fatalf("%s twice", r.ID)
				}
				seen[r.ID] = true
			}
			if p.Next == "" {
				break
			}
			q.Cursor = p.Next
		}
		if len(seen) != 25 || pages != 4 {
			t.Fatalf("%d records in %d pages", len(seen), pages)
		}
	})
	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []Query{{State: "zombie"}, {Limit: -1}, {Cursor: "JOBX"}, {Tenant: "a\x00"}, {App: "x\x00y"}} {
			if _, err := l.List(q); err == nil {
				t.Errorf("%+v: no error", q)
			}
		}
	})
}

// Ensure that a tick marks running jobs seen, and that samples stay
// bounded while still covering the job's whole life.
func TestLedger_Tick_SamplesBounded(t *testing.T) {
	l := mustOpen(t, Options{MaxSamplesPerJob: 8})
	r := newRecord("echo", "public")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	done := newRecord("echo", "public")
	if err := l.Begin(done); err != nil {
		t.Fatal(err)
	}
	finish(t, l, done, "exit", 0)
	t0 := r.StartedAt
	var at time.Time
	for i := range 50 {
		at = t0.Add(time.Duration(i+1) * time.Second)
		err := l.Tick(at, []TickItem{
			{ID: r.ID, Sample: Sample{At: at, CPUNs: int64(i), MemoryCurrentBytes: 100}},
			{ID: done.ID, Sample: Sample{At: at}}, // ended: ignored
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, samples, err := l.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastSeen.Equal(at) {
		t.Fatalf("last_seen %v, want %v", got.LastSeen, at)
	}
	if len(samples) > 8 || len(samples) < 4 {
		t.Fatalf("%d samples, want 4..8", len(samples))
	}
	if samples[0].CPUNs != 0 || samples[len(samples)-1].CPUNs < 40 {
		t.Fatalf("samples do not span the life: first %d last %d", samples[0].CPUNs, samples[len(samples)-1].CPUNs)
	}
	for i := 1; i < len(samples); i++ {
		if !samples[i].At.After(samples[i-1].At) {
			t.Fatalf("samples out of order at %d", i)
		}
	}
	if _, s, _ := l.Get(done.ID); len(s) != 0 {
		t.Fatalf("finished job got %d samples", len(s))
	}
	open, err := l.OpenRecords()
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ID != r.ID || !open[0].LastSeen.Equal(at) {
		t.Fatalf("open records %+v", open)
	}
}

// Ensure that reports group, sum, count reasons and price.
func TestLedger_Report(t *testing.T) {
	l := mustOpen(t, Options{})
	for i, spec := range []struct{ app, tenant, reason string }{
		{"echo", "acme", "exit"}, {"echo", "acme", "oom"}, {"demo", "acme", "exit"}, {"demo", "umbrella", "cancelled"},
	} {
		r := newRecord(spec.app, spec.tenant)
		if err := l.Begin(r); err != nil {
			t.Fatal(err)
		}
		finish(t, l, r, spec.reason, int64(i+1)*1e9)
	}
	open := newRecord("echo", "umbrella")
	if err := l.Begin(open); err != nil {
		t.Fatal(err)
	}
	groups, err := l.Report(ReportQuery{By: "tenant", CPUSecondRate: 0.5, GiBHourRate: 3600})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(groups)
	if len(groups) != 2 {
		t.Fatalf("groups %s", b)
	}
	acme, umb := groups[0], groups[1]
	if acme.Key != "acme" || acme.Jobs != 3 || acme.CPUSeconds != 6 || acme.Reasons["exit"] != 2 || acme.Reasons["oom"] != 1 {
		t.Fatalf("acme %s", b)
	}
	// 3 jobs × 1 GiB × 1 s = 3/3600 GiB-hours; at 3600 per GiB-hour that is 3.
	if acme.Bytes != 90 || acme.MemoryPeakBytes != 1<<30 || fmt.Sprintf("%.3f", acme.Cost) != "6.000" {
		t.Fatalf("acme totals %s", b)
	}
	if umb.Jobs != 2 || umb.Reasons["running"] != 1 || umb.Reasons["cancelled"] != 1 {
		t.Fatalf("umbrella %s", b)
	}
	days, err := l.Report(ReportQuery{By: "day"})
	if err != nil || len(days) != 1 || days[0].Jobs != 5 {
		t.Fatalf("by day %+v %v", days, err)
	}
	if _, err := l.Report(ReportQuery{By: "color"}); err == nil {
		t.Fatal("bad grouping: no error")
	}
}

// Ensure that pruning deletes old finished jobs in bounded transactions,
// keeps open ones and recent ones, and leaves no index entry behind.
func TestLedger_Prune(t *testing.T) {
	l := mustOpen(t, Options{})
	var recs []*Record
	for range 12 {
		r := newRecord("echo", "acme")
		if err := l.Begin(r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	for _, r := range recs[1:] {
		finish(t, l, r, "exit", 0)
	}
	if err := l.Tick(time.Now(), []TickItem{{ID: recs[0].ID, Sample: Sample{At: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	cutoff := recs[9].StartedAt // prune 1..8 but not the open JOB1
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := l.Prune(stopped, cutoff, 3); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("prune after its context ended: %d, %v; want 0 and context.Canceled", n, err)
	}
	n, err := l.Prune(context.Background(), cutoff, 3)
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Fatalf("pruned %d, want 8", n)
	}
	p, err := l.List(Query{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 4 || p.Records[3].ID != recs[0].ID {
		t.Fatalf("left %d records", len(p.Records))
	}
	if _, _, err := l.Get(recs[3].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned record still there: %v", err)
	}
}

// Ensure that a record of the current version, frozen in testdata, is
// read by this code, and that a newer record's unknown fields are
// ignored rather than refused.
func TestRecord_Versions(t *testing.T) {
	b, err := os.ReadFile("testdata/record-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.V != 1 || r.ID != "JOB00000042" || r.Usage.MemoryPeakBytes != 7340032 || *r.ExitCode != 3 || r.Limits.PidsMax != 64 {
		t.Fatalf("v1 record read as %+v", r)
	}
	var future Record
	if err := json.Unmarshal([]byte(`{"v":2,"id":"JOB00000001","state":"finished","gpu_seconds":3}`), &future); err != nil {
		t.Fatal(err)
	}
	if future.ID != "JOB00000001" {
		t.Fatalf("future record %+v", future)
	}
}

// Ensure that writes made while the disk is full fail without losing the
// record: it is counted, kept, and written once space is back. Needs
// root to mount a small tmpfs.
func TestLedger_DiskFull_RecordsWrittenLater(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs to fill")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	// Index often, so that index commits meet the full disk too.
	l := mustOpenAt(t, filepath.Join(dir, "ledger.db"), Options{Log: testLog(t), IndexBatch: 8})
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	failures := 0
	for range 200 {
		r := newRecord("echo", strings.Repeat("t", 200))
		r.Command = []string{strings.Repeat("x", 2000)}
		if err := l.Begin(r); err != nil {
			failures++
		}
		if r.ID == "" {
			t.Fatal("no ID after a failed write")
		}
		ids = append(ids, r.ID)
	}
	if failures == 0 || l.WriteErrors() == 0 {
		t.Fatalf("a full disk caused no write error (%d failures)", failures)
	}
	if l.Pending() == 0 {
		t.Fatal("no record kept for a later write")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := l.Pending(); n != 0 {
		t.Fatalf("%d records still pending after space came back", n)
	}
	for _, id := range ids {
		if _, _, err := l.Get(id); err != nil {
			t.Fatalf("%s lost: %v", id, err)
		}
	}
}

// Ensure that concurrent writers share commits and each gets its own
// outcome, and that nothing acknowledged is missing after reopen.
func TestLedger_GroupCommit_Concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		ack []string
		wg  sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				r := newRecord("echo", "public")
				if err := l.Begin(r); err != nil {
					t.Error(err)
					return
				}
				finish(t, l, r, "exit", 0)
				mu.Lock()
				ack = append(ack, r.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpenAt(t, path, Options{ReadOnly: true})
	for _, id := range ack {
		r, _, err := l.Get(id)
		if err != nil || r.State != StateFinished {
			t.Fatalf("%s: %+v %v", id, r.State, err)
		}
	}
	if len(ack) != 800 {
		t.Fatalf("%d acknowledged", len(ack))
	}
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Ensure that BeginNow gives the ID at once and its wait returns once the
// record is on disk, and that PutLater's wait does too, even alone (after
// at most LazyDelay).
func TestLedger_BeginNow_PutLater(t *testing.T) {
	l := mustOpen(t, Options{LazyDelay: 20 * time.Millisecond})
	r := newRecord("echo", "public")
	wait := l.BeginNow(r)
	if r.ID != "JOB00000001" || r.State != StateStarting {
		t.Fatalf("BeginNow: %+v", r)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(r.ID); err != nil {
		t.Fatalf("after BeginNow's wait: %v", err)
	}
	r.State, r.Reason = StateFinished, "exit"
	start := time.Now()
	if err := l.PutLater(r)(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("PutLater alone waited %v", d)
	}
	got, _, err := l.Get(r.ID)
	if err != nil || got.State != StateFinished {
		t.Fatalf("after PutLater's wait: %+v %v", got.State, err)
	}
	closed, err := Open(filepath.Join(t.TempDir(), "closed.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.PutLater(r)(); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutLater after Close: %v", err)
	}
}

// Ensure that a sample equal to the job's last stored one but for its
// time is not written (an idle job costs no write), while the heartbeat
// still moves its last_seen.
func TestLedger_Tick_UnchangedSamplesSkipped(t *testing.T) {
	l := mustOpen(t, Options{})
	r := newRecord("echo", "public")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	for i := range 10 {
		at = r.StartedAt.Add(time.Duration(i+1) * time.Second)
		cpu := int64(5)
		if i >= 8 {
			cpu = 9 // a change at the end
		}
		if err := l.Tick(at, []TickItem{{ID: r.ID, Sample: Sample{At: at, CPUNs: cpu, MemoryCurrentBytes: 100}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, samples, err := l.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2 || samples[0].CPUNs != 5 || samples[1].CPUNs != 9 {
		t.Fatalf("samples %+v, want the first and the change", samples)
	}
	if !got.LastSeen.Equal(at) {
		t.Fatalf("last_seen %v, want %v", got.LastSeen, at)
	}
}

// Ensure that times the time index cannot hold (before 1970, after 2262)
// select everything or nothing, as they should, instead of wrapping.
func TestLedger_List_TimesOutsideTheIndex(t *testing.T) {
	l := mustOpen(t, Options{})
	if err := l.Begin(newRecord("echo", "acme")); err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		q    Query
		want int
	}{
		{"since 1969", Query{Since: at("1969-12-31T00:00:00Z")}, 1},
		{"until 1969", Query{Until: at("1969-12-31T00:00:00Z")}, 0},
		{"until 9999", Query{Until: at("9999-01-01T00:00:00Z")}, 1},
		{"since 2300", Query{Since: at("2300-01-01T00:00:00Z")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.List(tc.q)
			if err != nil || len(p.Records) != tc.want {
				t.Fatalf("%d records, %v; want %d", len(p.Records), err, tc.want)
			}
			g, err := l.Report(ReportQuery{By: "tenant", Since: tc.q.Since, Until: tc.q.Until})
			if err != nil || len(g) != tc.want {
				t.Fatalf("report: %d groups, %v; want %d", len(g), err, tc.want)
			}
		})
	}
}

// Ensure that a sample survives its batch being run again without a
// failed op: the jobs' sample states change only when a commit lands.
// A record that cannot be encoded (NaN) fails alone and is not kept for
// retries, which could never succeed.
func TestLedger_Tick_SurvivesBatchRetry(t *testing.T) {
	l := mustOpen(t, Options{MaxBatch: 64})
	job := newRecord("echo", "public")
	if err := l.Begin(job); err != nil {
		t.Fatal(err)
	}
	var waits []func() error
	for range 500 { // a queue, so the tick and the bad record share a batch
		r := newRecord("y", "b")
		r.Detail = strings.Repeat("x", 2000)
		waits = append(waits, l.BeginNow(r))
	}
	tick := make(chan error, 1)
	go func() {
		tick <- l.Tick(time.Now(), []TickItem{{ID: job.ID, Sample: Sample{At: time.Now(), CPUNs: 5, MemoryCurrentBytes: 7}}})
	}()
	time.Sleep(2 * time.Millisecond)
	bad := newRecord("z", "c")
	bad.Limits.CPUCores = math.NaN()
	if err := l.BeginNow(bad)(); err == nil {
		t.Fatal("a record with NaN was written")
	}
	if err := <-tick; err != nil {
		t.Fatal(err)
	}
	for _, w := range waits {
		if err := w(); err != nil {
			t.Fatal(err)
		}
	}
	if _, s, _ := l.Get(job.ID); len(s) != 1 {
		t.Fatalf("%d samples after the tick, want 1", len(s))
	}
	if n := l.Pending(); n != 0 {
		t.Fatalf("%d records kept for retries", n)
	}
}

// Ensure Record returns what Get does, without the samples, and the same
// error for an unknown job.
func TestLedger_Record(t *testing.T) {
	l := mustOpen(t, Options{})
	r := newRecord("echo", "acme")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Tick(time.Now(), []TickItem{{ID: r.ID, Sample: Sample{At: time.Now(), CPUNs: 1}}}); err != nil {
		t.Fatal(err)
	}
	full, samples, err := l.Get(r.ID)
	if err != nil || len(samples) != 1 {
		t.Fatalf("get: %d samples, %v", len(samples), err)
	}
	got, err := l.Record(r.ID)
	if err != nil || got.ID != full.ID || got.State != full.State || !got.LastSeen.Equal(full.LastSeen) {
		t.Fatalf("record %+v, %v; want %+v", got, err, full)
	}
	if _, err := l.Record("JOB99999999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
}

// Ensure that the tail a killed server left (jobs committed, their index
// entries still waiting) is indexed when the ledger is opened again,
// before anything reads it, and that IDs and start times go on from it: a
// child process writes the jobs and is killed with SIGKILL.
func TestLedger_Kill9_TailIndexedAtOpen(t *testing.T) {
	if path := os.Getenv("CHIMIRROR_TEST_LEDGER_CHILD"); path != "" {
		tailWriterChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLedger_Kill9_TailIndexedAtOpen$")
	cmd.Env = append(os.Environ(), "CHIMIRROR_TEST_LEDGER_CHILD="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lastID string
	var lastStart int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "ready %s %d", &lastID, &lastStart); err == nil {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || lastID == "" {
		t.Fatalf("child: %v, last job %q", err, lastID)
	}
	l := mustOpenAt(t, path, lagging)
	if got, want := watermark(t, l), uint64(10); got != want {
		t.Fatalf("indexed up to %d after reopen, want %d", got, want)
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketByTime, bucketByTenant, bucketByApp} {
			if n := tx.Bucket(b).Stats().KeyN; n != 10 {
				return fmt.Errorf("%s holds %d keys, want 10", b, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.List(Query{Tenant: "acme", Since: time.Unix(0, lastStart)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 || p.Records[0].ID != lastID {
		t.Fatalf("jobs since the last start: %+v, want %s", p.Records, lastID)
	}
	r := newRecord("echo", "acme")
	if err := l.Begin(r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "JOB00000011" || r.StartedAt.UnixNano() <= lastStart {
		t.Fatalf("next job %s started %v; want JOB00000011 after %v", r.ID, r.StartedAt, time.Unix(0, lastStart))
	}
}

// tailWriterChild is the killed server of TestLedger_Kill9_TailIndexedAtOpen:
// it starts 10 jobs and ends 5, none indexed, says so, and waits for its
// kill.
func tailWriterChild(path string) {
	l, err := Open(path, lagging)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var last *Record
	for i := range 10 {
		r := newRecord("echo", "acme")
		if err := l.Begin(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i%2 == 0 {
			r.State, r.Reason = StateFinished, "exit"
			if err := l.Put(r, true); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		last = r
	}
	fmt.Printf("ready %s %d\n", last.ID, last.StartedAt.UnixNano())
	time.Sleep(time.Hour) // until killed
}

// Ensure that a version 1 file (every job indexed, no watermark) is read
// as it is read-only and upgraded in place when opened for writing, and
// that a newer layout is refused.
func TestLedger_Open_Version1(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
		version  string // after Open
	}{
		{"read-only", true, "1"},
		{"writable", false, "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := version1File(t)
			l := mustOpenAt(t, path, Options{ReadOnly: tc.readOnly})
			p, err := l.List(Query{Tenant: "acme", Since: time.Unix(0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Records) != 3 {
				t.Fatalf("listed %d of 3 jobs", len(p.Records))
			}
			var version string
			if err := l.db.View(func(tx *bolt.Tx) error {
				version = string(tx.Bucket(bucketMeta).Get([]byte("version")))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if version != tc.version {
				t.Fatalf("version %q after open, want %q", version, tc.version)
			}
			if !tc.readOnly {
				if got := watermark(t, l); got != 3 {
					t.Fatalf("indexed up to %d, want 3", got)
				}
				r := newRecord("echo", "acme")
				if err := l.Begin(r); err != nil {
					t.Fatal(err)
				}
				if p, err := l.List(Query{Tenant: "acme"}); err != nil || len(p.Records) != 4 {
					t.Fatalf("after a start: %d jobs, %v", len(p.Records), err)
				}
			}
		})
	}
	t.Run("newer", func(t *testing.T) {
		path := version1File(t)
		setVersion(t, path, "3")
		for _, ro := range []bool{false, true} {
			if _, err := Open(path, Options{ReadOnly: ro}); err == nil || !strings.Contains(err.Error(), `version "3"`) {
				t.Errorf("read-only %v: open of a version 3 file: %v", ro, err)
			}
		}
	})
}

// version1File writes a ledger of 3 indexed jobs as version 1 left them:
// no watermark.
func version1File(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path, lagging)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Begin(newRecord("echo", "acme")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil { // indexes the tail
		t.Fatal(err)
	}
	setVersion(t, path, "1")
	return path
}

// setVersion rewrites the layout version of the closed ledger at path; 1
// also drops the watermark, which version 1 did not have.
func setVersion(t *testing.T, path, v string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v == "1" {
			if err := meta.Delete(keyIndexed); err != nil {
				return err
			}
		}
		return meta.Put([]byte("version"), []byte(v))
	})
	if err = errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// Ensure that the writer indexes the tail by itself: with the commit that
// finds IndexBatch jobs in it, and when it idles IndexDelay with one.
func TestLedger_Writer_IndexesTail(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		jobs int
		want uint64 // watermark once the writer is done
	}{
		// Every fourth job's commit carries the index; the ninth waits.
		{"batch", Options{IndexBatch: 4, IndexDelay: time.Hour}, 9, 8},
		{"idle", Options{IndexBatch: 1 << 30, IndexDelay: time.Millisecond}, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, tc.opts)
			for range tc.jobs {
				r := newRecord("echo", "acme")
				if err := l.Begin(r); err != nil {
					t.Fatal(err)
				}
				r.State, r.Reason = StateFinished, "exit"
				if err := l.Put(r, true); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for watermark(t, l) != tc.want {
				if time.Now().After(deadline) {
					t.Fatalf("indexed up to %d, want %d", watermark(t, l), tc.want)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// Ensure that a snapshot a later one of the same job supersedes in the
// same commit is not written but succeeds with it, and that it is written
// after all when the later one fails alone.
func TestLedger_Commit_SupersededSnapshot(t *testing.T) {
	tests := []struct {
		name               string
		badRunning, badEnd bool // the snapshot cannot be encoded
		wantState          State
	}{
		{"end replaces running", false, false, StateFinished},
		// Had it been written, its failure would show.
		{"superseded running is not encoded", true, false, StateFinished},
		{"running written when the end cannot be", false, true, StateRunning},
	}
	// JSON refuses years past 9999.
	bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, lagging)
			r := newRecord("echo", "acme")
			if err := l.Begin(r); err != nil {
				t.Fatal(err)
			}
			// Hold the writer so that both snapshots queue for one batch.
			held, release := make(chan struct{}), make(chan struct{})
			if err := l.enqueue(op{ctl: func() { close(held); <-release }}); err != nil {
				t.Fatal(err)
			}
			<-held
			r.State = StateRunning
			if tc.badRunning {
				r.EndedAt = bad
			}
			running := l.PutLater(r)
			code := 0
			r.State, r.Reason, r.ExitCode, r.EndedAt = StateFinished, "exit", &code, time.Now()
			if tc.badEnd {
				r.EndedAt = bad
			}
			end := l.PutLater(r)
			close(release)
			if err := running(); err != nil {
				t.Fatalf("running: %v", err)
			}
			if err := end(); (err != nil) != tc.badEnd {
				t.Fatalf("end: %v, want an error: %v", err, tc.badEnd)
			}
			got, err := l.Record(r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.wantState {
				t.Fatalf("stored %s, want %s", got.State, tc.wantState)
			}
		})
	}
}

// Ensure that a job first written after the watermark passed its ID (its
// start's write failed and came back later) is indexed with that write.
func TestLedger_Put_BelowWatermarkIndexed(t *testing.T) {
	l := mustOpen(t, lagging)
	late := newRecord("echo", "late")
	l.allocate(late) // its write failed: the ID is taken, nothing is stored
	if err := l.Begin(newRecord("echo", "acme")); err != nil {
		t.Fatal(err)
	}
	indexNow(t, l)
	if got := watermark(t, l); got != 2 {
		t.Fatalf("indexed up to %d, want 2", got)
	}
	if err := l.Put(late, true); err != nil {
		t.Fatal(err)
	}
	p, err := l.List(Query{Tenant: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 || p.Records[0].ID != late.ID {
		t.Fatalf("listed %+v, want %s", p.Records, late.ID)
	}
	if err := checkIndexes(l); err != nil {
		t.Fatal(err)
	}
}

// Ensure that Check reports nothing on a sound file while commits run
// beside it.
func TestLedger_Check_BesideCommits(t *testing.T) {
	l := mustOpen(t, Options{IndexBatch: 4})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := newRecord("echo", "acme")
			if err := l.Begin(r); err != nil {
				t.Error(err)
				return
			}
			finish(t, l, r, "exit", 1)
		}
	})
	for range 50 {
		if err := l.Check(); err != nil {
			t.Errorf("check beside commits: %v", err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

package accounting

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkLedger_Pairs measures durable start+finish pairs through the
// group-committing ledger, 32 concurrent sessions; the floor beside it is
// a plain bbolt Update per record, as the ledger would do without batching.
func BenchmarkLedger_Pairs(b *testing.B) {
	b.Run("group-commit", func(b *testing.B) {
		l := mustOpen(b, Options{})
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r := newRecord("echo", "public")
				if err := l.Begin(r); err != nil {
					b.Error(err)
					return
				}
				r.State, r.Reason = StateFinished, "exit"
				if err := l.Put(r, true); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
	b.Run("update-per-record", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "plain.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketJobs); return err }); err != nil {
			b.Fatal(err)
		}
		put := func(r *Record) error {
			return db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket(bucketJobs)
				seq, err := bk.NextSequence()
				if err != nil {
					return err
				}
				v, err := json.Marshal(r)
				if err != nil {
					return err
				}
				return bk.Put(seqKey(seq), v)
			})
		}
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r := newRecord("echo", "public")
				if err := put(r); err != nil {
					b.Error(err)
					return
				}
				r.State = StateFinished
				if err := put(r); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
}

// BenchmarkLedger_Sessions writes what the supervisor writes for each plain
// job: its start (waited for, as the client is told only after it), its
// running mark (nobody waits) and its end (waited for off the session's
// path), over a ledger already holding prefill jobs so the trees have their
// working depth. It reports what each commit costs the file: pages written
// (bbolt's page writes, the meta page included) and commits per session;
// each commit is two fdatasyncs. The paced rows space the writes as a
// session does (fork, echo, the client's close and next dial): a row
// without pace writes them back to back, which batches more than a server
// can.
func BenchmarkLedger_Sessions(b *testing.B) {
	const prefill = 20000
	for _, bc := range []struct {
		par  int
		pace time.Duration
	}{{1, 0}, {16, 0}, {1, time.Millisecond}, {16, time.Millisecond}} {
		name := fmt.Sprintf("%d-at-a-time", bc.par)
		if bc.pace > 0 {
			name += fmt.Sprintf("-paced-%v", bc.pace)
		}
		b.Run(name, func(b *testing.B) {
			l := mustOpen(b, Options{})
			fill(b, l, prefill)
			before, tx0, cpu0 := l.db.Stats(), lastTxID(b, l), processCPU(b)
			var ends sync.WaitGroup
			sem := make(chan struct{}, bc.par)
			var wg sync.WaitGroup
			b.ResetTimer()
			for range b.N {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					r := newRecord("echo", "public")
					begun := l.BeginNow(r)
					time.Sleep(bc.pace) // the fork
					r.State = StateRunning
					if err := l.Put(r, false); err != nil {
						b.Error(err)
						return
					}
					if err := begun(); err != nil {
						b.Error(err)
						return
					}
					time.Sleep(bc.pace) // the echo
					code := 0
					r.State, r.Reason, r.ExitCode, r.EndedAt = StateFinished, "exit", &code, time.Now()
					wait := l.PutLater(r)
					ends.Go(func() {
						if err := wait(); err != nil {
							b.Error(err)
						}
					})
					time.Sleep(bc.pace) // the close and the next dial
				})
			}
			wg.Wait()
			ends.Wait()
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			after, commits := l.db.Stats(), float64(lastTxID(b, l)-tx0)
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/session")
			d := after.TxStats.Sub(&before.TxStats)
			if commits > 0 {
				b.ReportMetric(float64(d.GetWrite())/commits, "pages/commit")
				b.ReportMetric(commits/float64(b.N), "commits/session")
			}
		})
	}
}

// lastTxID is the ID of the last committed write transaction: every
// commit adds one.
func lastTxID(tb testing.TB, l *Ledger) int {
	tb.Helper()
	var id int
	if err := l.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatal(err)
	}
	return id
}

// fill adds n finished jobs in one transaction.
func fill(tb testing.TB, l *Ledger, n int) {
	tb.Helper()
	err := l.db.Update(func(tx *bolt.Tx) error {
		for range n {
			r := newRecord("echo", "public")
			l.allocate(r)
			code := 0
			r.State, r.Reason, r.ExitCode, r.EndedAt = StateFinished, "exit", &code, r.StartedAt.Add(time.Millisecond)
			seq, err := ParseID(r.ID)
			if err != nil {
				return err
			}
			if err := putRecord(tx, seq, r); err != nil {
				return err
			}
		}
		_, err := indexTail(tx)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// processCPU is the CPU time, user plus system, this process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package accounting

import (
	"encoding/json"
	"path/filepath"
	"testing"

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

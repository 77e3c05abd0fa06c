package accounting

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Queries run in read transactions of their own: they never wait for the
// writer, and the writer never waits for them.

// decodeRecord reads a stored record. An open job's last_seen is the last
// heartbeat, or its start if it started after that, unless the record
// stores one: recovery fixes an orphan's last_seen before the next server
// ticks (see Record.LastSeen).
func decodeRecord(k, v []byte, beat time.Time) (Record, error) {
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("decode record %x: %w", k, err)
	}
	if r.State.Open() && r.LastSeen.IsZero() {
		r.LastSeen = r.StartedAt
		if beat.After(r.StartedAt) {
			r.LastSeen = beat
		}
	}
	return r, nil
}

// Get returns job id's record and its interval samples, oldest first.
func (l *Ledger) Get(id string) (Record, []Sample, error) {
	return l.get(id, true)
}

// Record returns job id's record alone: Get without reading its samples.
func (l *Ledger) Record(id string) (Record, error) {
	r, _, err := l.get(id, false)
	return r, err
}

func (l *Ledger) get(id string, withSamples bool) (Record, []Sample, error) {
	seq, err := ParseID(id)
	if err != nil {
		return Record{}, nil, err
	}
	var (
		r       Record
		samples []Sample
	)
	err = l.db.View(func(tx *bolt.Tx) error {
		k := seqKey(seq)
		v := tx.Bucket(bucketJobs).Get(k)
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, FormatID(seq))
		}
		var err error
		if r, err = decodeRecord(k, v, heartbeat(tx)); err != nil || !withSamples {
			return err
		}
		c := tx.Bucket(bucketSamples).Cursor()
		for sk, sv := c.Seek(k); sk != nil && bytes.HasPrefix(sk, k); sk, sv = c.Next() {
			var s Sample
			if err := json.Unmarshal(sv, &s); err != nil {
				return fmt.Errorf("decode sample of %s: %w", r.ID, err)
			}
			samples = append(samples, s)
		}
		return nil
	})
	return r, samples, err
}

// Query selects records for List. Zero fields select everything.
type Query struct {
	// State is "running" (starting or running), "finished" (finished or
	// lost), or "" / "all".
	State  string
	Tenant string
	App    string
	Policy string
	Reason string
	Since  time.Time // started at or after
	Until  time.Time // started before
	// Limit is the page size; 0 means no limit.
	Limit int
	// Cursor continues a listing: the Next of the page before.
	Cursor string
}

// Page is one page of a listing, newest job first. Next, when not empty,
// is the Cursor of the page after it.
type Page struct {
	Records []Record `json:"jobs"`
	Next    string   `json:"next,omitempty"`
}

// Validate reports a query the ledger cannot answer.
func (q Query) Validate() error {
	switch q.State {
	case "", "all", "running", "finished":
	default:
		return fmt.Errorf("bad state %q: want running, finished or all", q.State)
	}
	if q.Limit < 0 {
		return fmt.Errorf("bad limit %d", q.Limit)
	}
	if q.Cursor != "" {
		if _, err := ParseID(q.Cursor); err != nil {
			return fmt.Errorf("bad cursor: %w", err)
		}
	}
	for _, n := range []struct{ key, v string }{{"tenant", q.Tenant}, {"app", q.App}} {
		if strings.ContainsRune(n.v, 0) { // index keys end each name with NUL
			return fmt.Errorf("bad %s %q", n.key, n.v)
		}
	}
	return nil
}

func (q Query) match(r *Record) bool {
	switch q.State {
	case "running":
		if !r.State.Open() {
			return false
		}
	case "finished":
		if r.State.Open() {
			return false
		}
	}
	return (q.Tenant == "" || r.Tenant == q.Tenant) && (q.App == "" || r.App == q.App) &&
		(q.Policy == "" || r.Policy == q.Policy) && (q.Reason == "" || r.Reason == q.Reason)
}

// Index times are unix ns in 8 bytes: from 1970 to 2262.
var (
	minIndexTime = time.Unix(0, 0)
	maxIndexTime = time.Unix(0, math.MaxInt64)
)

// tailJob is a job above the index watermark: the newest jobs, which the
// index buckets do not hold yet (see the layout in ledger.go).
type tailJob struct {
	seq       uint64
	startedAt time.Time
}

// readTail returns the tail's jobs with their start times, oldest first:
// both seqs and start times grow.
func readTail(tx *bolt.Tx) ([]tailJob, error) {
	var tail []tailJob
	err := eachTail(tx, func(seq uint64, f indexFields) error {
		tail = append(tail, tailJob{seq, f.StartedAt})
		return nil
	})
	return tail, err
}

// bounds turns a time range into a range of sequence numbers, [lo, hi],
// through the time index and the tail: start times grow with IDs. Times
// outside what the index holds select everything, or nothing, as they
// should.
func bounds(tx *bolt.Tx, since, until time.Time) (lo, hi uint64, err error) {
	lo, hi = 1, ^uint64(0)
	switch {
	case !until.IsZero() && !until.After(minIndexTime):
		return 1, 0, nil // nothing started before 1970
	case !since.IsZero() && since.After(maxIndexTime):
		return 1, 0, nil
	}
	if since.Before(minIndexTime) {
		since = time.Time{}
	}
	if until.After(maxIndexTime) {
		until = time.Time{}
	}
	if since.IsZero() && until.IsZero() {
		return lo, hi, nil
	}
	tail, err := readTail(tx)
	if err != nil {
		return 1, 0, err
	}
	// firstAt is the index in tail of its first job started at or after t.
	firstAt := func(t time.Time) int {
		return sort.Search(len(tail), func(i int) bool { return !tail[i].startedAt.Before(t) })
	}
	c := tx.Bucket(bucketByTime).Cursor()
	if !since.IsZero() {
		// The tail is newer than every indexed job: it has the first job
		// started since only if the index has none.
		if k, _ := c.Seek(timeKey(since, 0)); k != nil {
			lo = binary.BigEndian.Uint64(k[8:])
		} else if i := firstAt(since); i < len(tail) {
			lo = tail[i].seq
		} else {
			return 1, 0, nil // nothing started since
		}
	}
	if !until.IsZero() {
		// Likewise the last job started before until is the tail's, if the
		// tail has one.
		if i := firstAt(until); i > 0 {
			return lo, tail[i-1].seq, nil
		}
		k, _ := c.Seek(timeKey(until, 0))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k == nil {
			return 1, 0, nil
		}
		hi = binary.BigEndian.Uint64(k[8:])
	}
	return lo, hi, nil
}

// List returns one page of the records q selects, newest first. It walks
// the smallest index that fits q (the open set for running jobs, else
// the tenant's or app's index, else all jobs) from the cursor down, so
// its cost is the page plus the records q filters out, never a scan of
// the whole ledger when an index applies. The name indexes lack the tail
// (see the layout in ledger.go): a walk of one reads the tail's records
// first.
func (l *Ledger) List(q Query) (Page, error) {
	if err := q.Validate(); err != nil {
		return Page{}, err
	}
	var page Page
	err := l.db.View(func(tx *bolt.Tx) error {
		lo, hi, err := bounds(tx, q.Since, q.Until)
		if err != nil {
			return err
		}
		if q.Cursor != "" {
			c, _ := ParseID(q.Cursor)
			hi = min(hi, c-1)
		}
		if lo > hi {
			return nil
		}
		jobs, open, beat := tx.Bucket(bucketJobs), tx.Bucket(bucketOpen), heartbeat(tx)
		// take adds job seq's record, stored as v, to the page if q
		// selects it, and reports whether the page is full.
		take := func(seq uint64, v []byte) (bool, error) {
			r, err := decodeRecord(seqKey(seq), v, beat)
			if err != nil || !q.match(&r) {
				return false, err
			}
			if q.Limit > 0 && len(page.Records) == q.Limit {
				page.Next = page.Records[len(page.Records)-1].ID
				return true, nil
			}
			page.Records = append(page.Records, r)
			return false, nil
		}
		var (
			b      *bolt.Bucket
			prefix []byte
		)
		switch {
		case q.State == "running":
			b = open
		case q.Tenant != "":
			b, prefix = tx.Bucket(bucketByTenant), append([]byte(q.Tenant), 0)
		case q.App != "":
			b, prefix = tx.Bucket(bucketByApp), append([]byte(q.App), 0)
		default:
			b = jobs
		}
		// walkDown starts c at the last key ≤ start.
		walkDown := func(c *bolt.Cursor, start []byte) ([]byte, []byte) {
			k, v := c.Seek(start)
			if k == nil {
				k, v = c.Last()
			} else if !bytes.Equal(k, start) {
				k, v = c.Prev()
			}
			return k, v
		}
		if mark := indexedSeq(tx); prefix != nil && hi > mark {
			c := jobs.Cursor()
			for k, v := walkDown(c, seqKey(hi)); k != nil; k, v = c.Prev() {
				seq := binary.BigEndian.Uint64(k)
				if seq <= mark || seq < lo {
					break
				}
				if full, err := take(seq, v); full || err != nil {
					return err
				}
			}
			hi = mark
			if lo > hi {
				return nil
			}
		}
		c := b.Cursor()
		for k, _ := walkDown(c, append(bytes.Clone(prefix), seqKey(hi)...)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if len(k) != len(prefix)+8 {
				continue // another name's key (names never hold NUL)
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			if seq > hi {
				continue
			}
			if seq < lo {
				break
			}
			v := jobs.Get(seqKey(seq))
			if v == nil {
				continue // pruned between index and record: the index entry is stale
			}
			if full, err := take(seq, v); full || err != nil {
				return err
			}
		}
		return nil
	})
	return page, err
}

// OpenRecords returns every starting or running record, with its
// last_seen, oldest first. Recovery closes them.
func (l *Ledger) OpenRecords() ([]Record, error) {
	var out []Record
	err := l.db.View(func(tx *bolt.Tx) error {
		jobs, open, beat := tx.Bucket(bucketJobs), tx.Bucket(bucketOpen), heartbeat(tx)
		return open.ForEach(func(k, _ []byte) error {
			v := jobs.Get(k)
			if v == nil {
				return fmt.Errorf("open job %x has no record", k)
			}
			r, err := decodeRecord(k, v, beat)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// ReportQuery selects and groups records for Report.
type ReportQuery struct {
	By    string    // tenant, app, policy or day
	Since time.Time // started at or after; zero: from the first
	Until time.Time // started before; zero: to now
	// Location is the time zone of "day" groups; nil means UTC.
	Location *time.Location
	// Rates, when not zero, add a cost to each group.
	CPUSecondRate float64
	GiBHourRate   float64
}

// Group is one row of an accounting report.
type Group struct {
	Key             string         `json:"key"`
	Jobs            int            `json:"jobs"`
	CPUSeconds      float64        `json:"cpu_seconds"`
	MemoryPeakBytes int64          `json:"memory_peak_bytes"` // the largest of its jobs
	GiBHours        float64        `json:"gib_hours"`         // Σ memory peak × wall time
	Bytes           int64          `json:"bytes"`             // stdin + stdout + stderr
	Reasons         map[string]int `json:"reasons"`           // jobs by reason; open jobs are "running"
	Cost            float64        `json:"cost,omitempty"`
}

// Validate reports a report the ledger cannot make.
func (q ReportQuery) Validate() error {
	switch q.By {
	case "tenant", "app", "policy", "day":
	default:
		return fmt.Errorf("bad grouping %q: want tenant, app, policy or day", q.By)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return errors.New("until must be after since")
	}
	return nil
}

const gib = 1 << 30

// Report sums the jobs started in [Since, Until) by q.By, sorted by key.
// Open jobs count with their usage so far as recorded.
func (l *Ledger) Report(q ReportQuery) ([]Group, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	now := time.Now()
	groups := make(map[string]*Group)
	err := l.db.View(func(tx *bolt.Tx) error {
		lo, hi, err := bounds(tx, q.Since, q.Until)
		if err != nil || lo > hi {
			return err
		}
		jobs, beat := tx.Bucket(bucketJobs), heartbeat(tx)
		c := jobs.Cursor()
		for k, v := c.Seek(seqKey(lo)); k != nil && binary.BigEndian.Uint64(k) <= hi; k, v = c.Next() {
			r, err := decodeRecord(k, v, beat)
			if err != nil {
				return err
			}
			var key string
			switch q.By {
			case "tenant":
				key = r.Tenant
			case "app":
				key = r.App
			case "policy":
				key = r.Policy
			case "day":
				key = r.StartedAt.In(loc).Format(time.DateOnly)
			}
			g := groups[key]
			if g == nil {
				g = &Group{Key: key, Reasons: make(map[string]int)}
				groups[key] = g
			}
			g.Jobs++
			g.CPUSeconds += float64(r.Usage.CPUNs()) / 1e9
			g.MemoryPeakBytes = max(g.MemoryPeakBytes, r.Usage.MemoryPeakBytes)
			if r.Usage.MemoryPeakBytes > 0 {
				g.GiBHours += float64(r.Usage.MemoryPeakBytes) / gib * r.Elapsed(now).Hours()
			}
			g.Bytes += r.Traffic.Bytes()
			reason := r.Reason
			if r.State.Open() {
				reason = "running"
			}
			g.Reasons[reason]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Group, 0, len(groups))
	for _, g := range groups {
		g.Cost = g.CPUSeconds*q.CPUSecondRate + g.GiBHours*q.GiBHourRate
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Prune deletes the finished and lost jobs that started before cutoff,
// with their index entries and samples, at most perTx jobs per
// transaction so the writer is never held up for long. Open jobs are
// kept whatever their age. It returns how many jobs it deleted, and
// ctx's error if ctx ended it between two transactions.
func (l *Ledger) Prune(ctx context.Context, cutoff time.Time, perTx int) (int, error) {
	if perTx <= 0 {
		perTx = 500
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		done := false
		err := l.db.Update(func(tx *bolt.Tx) error {
			n, done = 0, false
			// The time index must hold every job: the tail's too.
			if _, err := indexTail(tx); err != nil {
				return err
			}
			byTime := tx.Bucket(bucketByTime)
			open := tx.Bucket(bucketOpen)
			c := byTime.Cursor()
			var drop [][]byte
			k, _ := c.First()
			for ; k != nil && len(drop) < perTx; k, _ = c.Next() {
				if int64(binary.BigEndian.Uint64(k[:8])) >= cutoff.UnixNano() {
					break
				}
				if open.Get(k[8:]) != nil {
					continue
				}
				drop = append(drop, bytes.Clone(k))
			}
			done = len(drop) < perTx
			for _, tk := range drop {
				seq := binary.BigEndian.Uint64(tk[8:])
				if err := deleteJob(tx, seq); err != nil {
					return err
				}
				if err := byTime.Delete(tk); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune ledger %s: %w", l.path, err)
		}
		total += n
		if done {
			return total, nil
		}
	}
}

func deleteJob(tx *bolt.Tx, seq uint64) error {
	k := seqKey(seq)
	jobs := tx.Bucket(bucketJobs)
	if v := jobs.Get(k); v != nil {
		var r Record
		if err := json.Unmarshal(v, &r); err == nil {
			if err := tx.Bucket(bucketByTenant).Delete(nameKey(r.Tenant, seq)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByApp).Delete(nameKey(r.App, seq)); err != nil {
				return err
			}
		}
		if err := jobs.Delete(k); err != nil {
			return err
		}
	}
	sb := tx.Bucket(bucketSamples)
	c := sb.Cursor()
	var drop [][]byte
	for sk, _ := c.Seek(k); sk != nil && bytes.HasPrefix(sk, k); sk, _ = c.Next() {
		drop = append(drop, bytes.Clone(sk))
	}
	for _, sk := range drop {
		if err := sb.Delete(sk); err != nil {
			return err
		}
	}
	return nil
}

// Check runs bbolt's consistency check over the whole file and returns
// every problem it finds, joined. It holds the file's write lock while it
// runs (a write transaction it rolls back): bbolt's check reads the live
// freelist, so beside a commit (the writer's, Prune's) it would report the
// pages that commit freed, still reachable from the check's snapshot, as
// "reachable freed".
func (l *Ledger) Check() (retErr error) {
	tx, err := l.db.Begin(!l.opts.ReadOnly)
	if err != nil {
		return fmt.Errorf("check ledger %s: %w", l.path, err)
	}
	defer func() { retErr = errors.Join(retErr, tx.Rollback()) }()
	var errs []error
	for err := range tx.Check() {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stats is the ledger's size, for metrics and reports.
type Stats struct {
	LastID    string // the last job ID issued
	Open      int    // starting or running jobs
	FileBytes int64
}

// Stats reads the ledger's size without walking its records.
func (l *Ledger) Stats() (Stats, error) {
	var s Stats
	err := l.db.View(func(tx *bolt.Tx) error {
		if seq := tx.Bucket(bucketJobs).Sequence(); seq > 0 {
			s.LastID = FormatID(seq)
		}
		s.Open = tx.Bucket(bucketOpen).Stats().KeyN
		s.FileBytes = tx.Size()
		return nil
	})
	return s, err
}

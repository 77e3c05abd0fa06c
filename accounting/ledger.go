package accounting

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The file's layout. Every key that names a job is its sequence number as
// 8 big-endian bytes, so key order is start order (IDs and started_at are
// allocated together and both only grow, see Ledger.Begin).
//
//	meta       "version" → "2", "instance" → 16 hex digits,
//	           "heartbeat" → unix ns of the last sampler tick,
//	           "indexed" → seq (8 bytes), see below
//	jobs       seq → Record (JSON)
//	by_time    started_at (unix ns, 8 bytes) ‖ seq → ""
//	by_tenant  tenant ‖ 0x00 ‖ seq → ""
//	by_app     app ‖ 0x00 ‖ seq → ""
//	open       seq → started_at (unix ns, 8 bytes), for starting and running jobs only
//	samples    seq ‖ t (unix ns) → Sample (JSON)
//
// The three index buckets lag the jobs: every job whose seq is at most
// meta's "indexed" has its entries in all three, and a job above it has
// none yet (the tail). A job's start commits with its record and its open
// entry alone: its index entries, one leaf and its branches in each of
// three trees, more than half the pages a start would write, are written
// later for a whole tail at once (indexTail, run by the writer every
// IndexBatch jobs or IndexDelay after the first). Queries read the tail
// from the jobs bucket (start times grow with seqs, so it is the newest
// jobs), and Open indexes the tail a dead server left before anything
// else reads the file. Version 1 files index every job at its first write:
// all of them are indexed, and Open upgrades them in place.
var (
	bucketMeta     = []byte("meta")
	bucketJobs     = []byte("jobs")
	bucketByTime   = []byte("by_time")
	bucketByTenant = []byte("by_tenant")
	bucketByApp    = []byte("by_app")
	bucketOpen     = []byte("open")
	bucketSamples  = []byte("samples")
	allBuckets     = [][]byte{bucketMeta, bucketJobs, bucketByTime, bucketByTenant, bucketByApp, bucketOpen, bucketSamples}
)

// fileVersion is the layout above. Open refuses a file from a newer layout,
// reads a version 1 file read-only as it is, and upgrades it otherwise.
const fileVersion = 2

var (
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("ledger is in use by another chimirror server")
	// ErrClosed is returned by writes after Close.
	ErrClosed = errors.New("ledger is closed")
	// ErrReadOnly is returned by writes to a ledger opened read-only.
	ErrReadOnly = errors.New("ledger is open read-only")
	// ErrNotFound is returned for a job ID the ledger does not hold.
	ErrNotFound = errors.New("no such job in the ledger")
	// errEncode marks a record that cannot be encoded: writing it again
	// cannot help, so it is not kept for a retry.
	errEncode = errors.New("cannot encode")
)

// Options tune a Ledger. Zero values take the defaults.
type Options struct {
	// LockTimeout bounds the wait for the file lock; the lock is what keeps
	// a second server off the same data dir. Default 1 s.
	LockTimeout time.Duration
	// ReadOnly opens the file for queries only (a shared lock, which a
	// running server's exclusive lock blocks).
	ReadOnly bool
	// MaxBatch is the most writes one commit carries. Default 512.
	MaxBatch int
	// MaxSamplesPerJob bounds the interval samples kept for one job: when a
	// job reaches it, every other sample is dropped and the job is sampled
	// half as often, so its whole life stays charted. Default 240.
	MaxSamplesPerJob int
	// LazyDelay is how long a write nobody waits for yet (Put without
	// wait, PutLater) may wait to share a commit with one somebody waits
	// for. Default 50 ms: a job's "running" mark and its end then usually
	// ride along with the next start instead of costing fsyncs of their own.
	LazyDelay time.Duration
	// MaxPending bounds the records kept in memory after their write failed,
	// to be written again at the next Flush. Default 10000.
	MaxPending int
	// IndexBatch is how many jobs may wait for their index entries before
	// the next commit writes them (see the layout above). Default 256.
	IndexBatch int
	// IndexDelay is how long a job waits for its index entries at most,
	// when fewer than IndexBatch follow it. Default 1 s.
	IndexDelay time.Duration
	Log        *slog.Logger
}

// Ledger is the job ledger. It is safe for concurrent use.
//
// Writes go through one writer goroutine that groups whatever is queued
// into one bbolt transaction (group commit): concurrent starts and finishes
// share the cost of an fsync, and every write a caller waits for is on disk
// when the call returns. fsync is never turned off.
type Ledger struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
	opts Options

	instance string

	idMu     sync.Mutex // allocates IDs and start times together
	lastSeq  uint64
	lastTime time.Time

	sendMu sync.RWMutex // held to send on ops; Close takes it to close ops
	closed bool
	ops    chan op
	done   chan struct{} // closed when the writer has exited

	// The writer goroutine alone touches these.
	pending map[uint64]*Record // writes that failed, newest snapshot per job
	samples map[uint64]*sampleState
	// indexed, written and tried time index catch-ups: the watermark as of
	// the writer's last indexTail, the highest seq it has committed, and
	// written when it last tried. The file's watermark is the truth (Prune
	// moves it too); these only say when the tail is worth indexing.
	indexed, written, tried uint64

	writeErrors atomic.Int64
	dropped     atomic.Int64
}

// op is one write. apply must be idempotent: a batch that fails because of
// one op is run again without it.
type op struct {
	apply func(tx *bolt.Tx) error
	done  chan error // nil: nobody waits
	rec   *Record    // a record snapshot, kept for retry if its write fails
	seq   uint64
	// ctl, when set instead of apply, runs on the writer outside any
	// transaction (retries, questions about the writer's state).
	ctl func()
	// later: its waiter does not wait yet (PutLater), so it may wait
	// LazyDelay for company like an op nobody waits for.
	later bool
	// committed, when set, runs on the writer once apply's transaction
	// has committed: in-memory state that must follow the file.
	committed func()
}

type sampleState struct {
	n      int // samples stored
	stride int // store one changed sample in stride
	ticks  int
	last   Sample // the last one stored
}

// Open opens (creating if needed) the ledger at path. A second Open of the
// same file, from this process or another, fails after LockTimeout with
// ErrLocked.
func Open(path string, opts Options) (*Ledger, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.MaxSamplesPerJob < 4 {
		opts.MaxSamplesPerJob = 240
	}
	if opts.LazyDelay <= 0 {
		opts.LazyDelay = 50 * time.Millisecond
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 10000
	}
	if opts.IndexBatch <= 0 {
		opts.IndexBatch = 256
	}
	if opts.IndexDelay <= 0 {
		opts.IndexDelay = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open ledger %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open ledger %s: %w (its lock is held)", path, ErrLocked)
		}
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	l := &Ledger{db: db, path: path, log: opts.Log, opts: opts,
		pending: make(map[uint64]*Record), samples: make(map[uint64]*sampleState)}
	if err := l.init(); err != nil {
		return nil, errors.Join(fmt.Errorf("open ledger %s: %w", path, err), db.Close())
	}
	if !opts.ReadOnly {
		l.ops = make(chan op, 4*opts.MaxBatch)
		l.done = make(chan struct{})
		go l.writer()
	}
	return l, nil
}

// init creates the buckets of a new file, checks the layout version of an
// old one (upgrading a version 1 file), indexes the tail a dead server
// left, and loads the instance name and the last ID and start time.
func (l *Ledger) init() error {
	if !l.opts.ReadOnly {
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return fmt.Errorf("create bucket %s: %w", b, err)
				}
			}
			meta := tx.Bucket(bucketMeta)
			switch v := string(meta.Get([]byte("version"))); v {
			case "", "1":
				// A new file, or one whose every job is indexed: either way
				// the watermark is its last job.
				if err := meta.Put(keyIndexed, seqKey(tx.Bucket(bucketJobs).Sequence())); err != nil {
					return err
				}
				if err := meta.Put([]byte("version"), []byte(fmt.Sprint(fileVersion))); err != nil {
					return err
				}
			case fmt.Sprint(fileVersion):
			default:
				return fmt.Errorf("ledger layout version %q; this chimirror reads versions 1 and %d", v, fileVersion)
			}
			if _, err := indexTail(tx); err != nil {
				return err
			}
			if meta.Get([]byte("instance")) == nil {
				var b [8]byte
				if _, err := rand.Read(b[:]); err != nil {
					return err
				}
				return meta.Put([]byte("instance"), []byte(hex.EncodeToString(b[:])))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return l.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not a chimirror ledger (no meta bucket)")
		}
		if v := string(meta.Get([]byte("version"))); v != "1" && v != fmt.Sprint(fileVersion) {
			return fmt.Errorf("ledger layout version %q; this chimirror reads versions 1 and %d", v, fileVersion)
		}
		l.instance = string(meta.Get([]byte("instance")))
		jobs := tx.Bucket(bucketJobs)
		l.lastSeq = jobs.Sequence()
		// A writable file's tail is indexed by now, so the time index
		// holds the last start time.
		if k, _ := tx.Bucket(bucketByTime).Cursor().Last(); k != nil {
			l.lastTime = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
		}
		l.indexed = indexedSeq(tx)
		l.written = l.indexed
		return nil
	})
}

// Path is the ledger's file.
func (l *Ledger) Path() string { return l.path }

// Instance names this ledger for good (16 hex digits, made when the file
// was created). The supervisor puts its job cgroups under it, so recovery
// sweeps only what a server of this ledger left.
func (l *Ledger) Instance() string { return l.instance }

// WriteErrors is how many writes have failed since Open.
func (l *Ledger) WriteErrors() int64 { return l.writeErrors.Load() }

// Dropped is how many failed records were given up because MaxPending
// others were already waiting to be written again.
func (l *Ledger) Dropped() int64 { return l.dropped.Load() }

// Close writes what is queued, tries once more to write records whose
// write failed, and closes the file. Writes after Close return ErrClosed.
func (l *Ledger) Close() error {
	if l.opts.ReadOnly {
		return l.db.Close()
	}
	l.sendMu.Lock()
	if l.closed {
		l.sendMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.ops)
	l.sendMu.Unlock()
	<-l.done
	var err error
	if n := len(l.pending); n > 0 {
		err = fmt.Errorf("close ledger: %d records could not be written", n)
	}
	return errors.Join(err, l.db.Close())
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func nameKey(name string, seq uint64) []byte {
	k := make([]byte, 0, len(name)+9)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func timeKey(t time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(t.UnixNano()))
	return binary.BigEndian.AppendUint64(k, seq)
}

// Begin records a new job, state starting, and returns once the record is
// on disk. It sets r.V, r.ID, r.State and r.StartedAt: IDs come from the
// ledger's sequence and are unique for good; start times strictly grow
// with IDs, even if the clock steps back.
//
// If the write fails, r.ID is still set and the job may run: the error is
// counted, and the record is kept and written again at the next Flush.
func (l *Ledger) Begin(r *Record) error { return l.BeginNow(r)() }

// allocate gives r its ID and start time, together: both only grow.
func (l *Ledger) allocate(r *Record) {
	l.idMu.Lock()
	l.lastSeq++
	seq := l.lastSeq
	now := time.Now().Round(0)
	if !now.After(l.lastTime) {
		now = l.lastTime.Add(time.Nanosecond)
	}
	l.lastTime = now
	l.idMu.Unlock()
	r.V, r.ID, r.State, r.StartedAt = RecordVersion, FormatID(seq), StateStarting, now
}

// BeginNow is Begin without the wait: r gets its ID and start time at
// once and its write goes to the next commit, also at once; the returned
// function waits until it is on disk. A caller whose job may exist before
// its record is durable (a plain process, which dies with the server) uses
// it to fork while the commit runs; it must still wait before it tells
// anyone the job started. Call the function exactly once.
func (l *Ledger) BeginNow(r *Record) func() error {
	l.allocate(r)
	return l.queue(r, false)
}

// Put writes a snapshot of r, replacing the stored one. With wait it
// returns once the record is on disk; without, the write is queued and a
// failure is only counted and logged. Either way, a record whose write
// failed is written again at the next Flush, unless a newer one was.
func (l *Ledger) Put(r *Record, wait bool) error {
	o, err := l.putOp(r)
	if err != nil {
		return err
	}
	return l.submit(o, wait)
}

// PutLater queues a snapshot of r like Put with wait, but returns without
// waiting: the returned function waits until it is on disk and returns the
// outcome. The write may wait up to LazyDelay to share a commit (a job's
// end with the next job's start), so call the function only when the
// caller has nothing else to do; call it exactly once.
func (l *Ledger) PutLater(r *Record) func() error { return l.queue(r, true) }

// queue enqueues a snapshot of r and returns the wait for its commit;
// later lets the commit wait LazyDelay for company.
func (l *Ledger) queue(r *Record, later bool) func() error {
	o, err := l.putOp(r)
	if err == nil {
		o.done, o.later = make(chan error, 1), later
		err = l.enqueue(o)
	}
	if err != nil {
		return func() error { return err }
	}
	return func() error { return <-o.done }
}

// putOp writes a snapshot of r. The record is encoded on the writer, not
// the caller: encoding/json runs deep, and a caller that then sits in a
// long wait (a job's input loop, one per session) would keep the grown
// stack for the job's whole life.
func (l *Ledger) putOp(r *Record) (op, error) {
	seq, err := ParseID(r.ID)
	if err != nil {
		return op{}, err
	}
	snap := *r
	snap.V = RecordVersion
	return op{rec: &snap, seq: seq, apply: func(tx *bolt.Tx) error { return putRecord(tx, seq, &snap) }}, nil
}

func putRecord(tx *bolt.Tx, seq uint64, r *Record) error {
	val, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %s: %w: %w", r.ID, errEncode, err)
	}
	k := seqKey(seq)
	jobs := tx.Bucket(bucketJobs)
	known := jobs.Get(k) != nil
	if err := jobs.Put(k, val); err != nil {
		return err
	}
	if jobs.Sequence() < seq {
		if err := jobs.SetSequence(seq); err != nil {
			return err
		}
	}
	// A job's index entries never change. Above the watermark they wait
	// for indexTail; at or below it (a job whose first write failed and
	// came back after the watermark passed it) they go in now.
	if !known && seq <= indexedSeq(tx) {
		if err := putIndex(tx, seq, r.StartedAt, r.Tenant, r.App); err != nil {
			return err
		}
	}
	return putOpen(tx, k, r)
}

func putIndex(tx *bolt.Tx, seq uint64, startedAt time.Time, tenant, app string) error {
	for _, ix := range []struct {
		b []byte
		k []byte
	}{
		{bucketByTime, timeKey(startedAt, seq)},
		{bucketByTenant, nameKey(tenant, seq)},
		{bucketByApp, nameKey(app, seq)},
	} {
		if err := tx.Bucket(ix.b).Put(ix.k, nil); err != nil {
			return err
		}
	}
	return nil
}

var keyIndexed = []byte("indexed")

// indexedSeq is the index watermark: every job at or below it is indexed,
// none above it. A version 1 file has none: all of it is indexed.
func indexedSeq(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyIndexed); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return ^uint64(0)
}

// indexFields are what a record's index entries are made of.
type indexFields struct {
	Tenant    string    `json:"tenant"`
	App       string    `json:"app"`
	StartedAt time.Time `json:"started_at"`
}

// eachTail calls fn with each job above the index watermark, oldest
// first, and the fields its index entries are made of; a version 1 file
// has no tail.
func eachTail(tx *bolt.Tx, fn func(seq uint64, f indexFields) error) error {
	mark := indexedSeq(tx)
	if mark == ^uint64(0) {
		return nil // a version 1 file, read as it is: all indexed
	}
	c := tx.Bucket(bucketJobs).Cursor()
	for k, v := c.Seek(seqKey(mark + 1)); k != nil; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		var f indexFields
		if err := json.Unmarshal(v, &f); err != nil {
			return fmt.Errorf("decode job %s: %w", FormatID(seq), err)
		}
		if err := fn(seq, f); err != nil {
			return err
		}
	}
	return nil
}

// indexTail writes the index entries of every job above the watermark
// and moves the watermark to the last job. It is idempotent (entries are
// keys alone), so a batch may run it again. It returns the new watermark.
func indexTail(tx *bolt.Tx) (uint64, error) {
	mark := indexedSeq(tx)
	last := mark
	err := eachTail(tx, func(seq uint64, f indexFields) error {
		if err := putIndex(tx, seq, f.StartedAt, f.Tenant, f.App); err != nil {
			return fmt.Errorf("index job %s: %w", FormatID(seq), err)
		}
		last = seq
		return nil
	})
	if err != nil {
		return mark, err
	}
	if last == mark {
		return mark, nil
	}
	if err := tx.Bucket(bucketMeta).Put(keyIndexed, seqKey(last)); err != nil {
		return mark, fmt.Errorf("index up to job %s: %w", FormatID(last), err)
	}
	return last, nil
}

// putOpen keeps the open set: a write only when a job enters or leaves
// it (a put that changes nothing would still dirty a page).
func putOpen(tx *bolt.Tx, k []byte, r *Record) error {
	open := tx.Bucket(bucketOpen)
	if !r.State.Open() {
		return open.Delete(k) // no write if it is not there
	}
	if open.Get(k) != nil {
		return nil
	}
	return open.Put(k, binary.BigEndian.AppendUint64(nil, uint64(r.StartedAt.UnixNano())))
}

var keyHeartbeat = []byte("heartbeat")

// heartbeat is the time of the last tick, or zero.
func heartbeat(tx *bolt.Tx) time.Time {
	if v := tx.Bucket(bucketMeta).Get(keyHeartbeat); len(v) == 8 {
		return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	}
	return time.Time{}
}

// Tick is one sampler pass: the server is alive at `at` with every open
// job running (so each one's last_seen is at, or its start if later; one
// heartbeat stands for all of them), and each item's sample is appended to
// its job's chart unless nothing in it changed since the job's last stored
// sample (an idle job costs no write; a chart draws the same line). All of
// it is one transaction, whatever the number of jobs. Tick also writes
// again the records whose earlier write failed. It returns once all is on
// disk.
func (l *Ledger) Tick(at time.Time, seen []TickItem) error {
	items := make([]tickItem, 0, len(seen))
	for _, s := range seen {
		seq, err := ParseID(s.ID)
		if err != nil {
			return err
		}
		items = append(items, tickItem{seq: seq, sample: s.Sample})
	}
	beat := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	// The jobs' sample states change only once the transaction commits:
	// apply may run again (a batch retried without a failed op) or be
	// rolled back, and must then start from the same states.
	var staged map[uint64]sampleState
	o := op{apply: func(tx *bolt.Tx) error {
		staged = make(map[uint64]sampleState, len(items))
		if err := tx.Bucket(bucketMeta).Put(keyHeartbeat, beat); err != nil {
			return err
		}
		open := tx.Bucket(bucketOpen)
		for _, it := range items {
			if open.Get(seqKey(it.seq)) == nil {
				continue // it ended since; its final record is written
			}
			st := sampleState{stride: 1}
			if cur := l.samples[it.seq]; cur != nil {
				st = *cur
			}
			if err := l.addSample(tx, it.seq, &st, it.sample); err != nil {
				return err
			}
			staged[it.seq] = st
		}
		return nil
	}, committed: func() {
		for seq, st := range staged {
			l.samples[seq] = &st
		}
	}}
	if err := l.submit(o, true); err != nil {
		return err
	}
	return l.Flush()
}

// TickItem is one running job in a Tick.
type TickItem struct {
	ID     string
	Sample Sample
}

type tickItem struct {
	seq    uint64
	sample Sample
}

// addSample appends one sample to the job whose state is st, unless it
// equals the job's last stored one but for its time, and thins the job's
// samples when it has MaxSamplesPerJob of them. It updates st, which the
// caller keeps only if the transaction commits.
func (l *Ledger) addSample(tx *bolt.Tx, seq uint64, st *sampleState, smp Sample) error {
	last := st.last
	last.At = smp.At
	if st.n > 0 && last == smp {
		return nil // unchanged: the chart's line already says so
	}
	st.ticks++
	if (st.ticks-1)%st.stride != 0 {
		return nil
	}
	b := tx.Bucket(bucketSamples)
	if st.n >= l.opts.MaxSamplesPerJob {
		prefix := seqKey(seq)
		c := b.Cursor()
		i := 0
		var drop [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if i%2 == 1 {
				drop = append(drop, bytes.Clone(k))
			}
			i++
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		st.n = i - len(drop)
		st.stride *= 2
	}
	val, err := json.Marshal(&smp)
	if err != nil {
		return fmt.Errorf("encode sample of %s: %w", FormatID(seq), err)
	}
	st.n++
	st.last = smp
	return b.Put(sampleKey(seq, smp.At), val)
}

func sampleKey(seq uint64, at time.Time) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq)
	return binary.BigEndian.AppendUint64(k, uint64(at.UnixNano()))
}

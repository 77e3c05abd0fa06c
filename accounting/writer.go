package accounting

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// submit queues o for the writer and, with wait, returns its outcome. The
// queue is bounded: when it is full, submit blocks until the writer has
// taken a batch (backpressure, never an unbounded backlog).
func (l *Ledger) submit(o op, wait bool) error {
	if !wait {
		return l.enqueue(o)
	}
	o.done = make(chan error, 1)
	if err := l.enqueue(o); err != nil {
		return err
	}
	return <-o.done
}

// enqueue hands o to the writer; o.done, if set, gets its outcome.
func (l *Ledger) enqueue(o op) error {
	if l.opts.ReadOnly {
		return ErrReadOnly
	}
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.ops <- o
	return nil
}

// writer is the ledger's one writing goroutine, owned by the Ledger: it
// runs from Open until Close has closed ops and everything queued before
// is written. Each round takes the first queued op and whatever else is
// queued by then (at most MaxBatch) and commits them together, so while one
// fsync runs, the next batch gathers. A round of writes nobody waits for
// (a job marked running) waits up to LazyDelay for company first.
//
// The index tail (see the layout in ledger.go) rides along with the round
// that finds IndexBatch jobs in it, or commits alone IndexDelay after the
// round that began it, whichever comes first: a start's commit never
// carries index pages of its own.
func (l *Ledger) writer() {
	defer close(l.done)
	batch := make([]op, 0, l.opts.MaxBatch+1)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	index := time.NewTimer(time.Hour)
	index.Stop()
	var indexDue <-chan time.Time // index's channel while it runs, else nil
	for {
		var first op
		select {
		case o, ok := <-l.ops:
			if !ok {
				l.retryPending()
				if l.written > l.indexed {
					l.commit([]op{l.indexOp()})
				}
				return
			}
			first = o
		case <-indexDue:
			indexDue = nil
			l.commit([]op{l.indexOp()})
			continue
		}
		batch = l.gather(append(batch[:0], first))
		if lazyOnly(batch) && len(batch) < l.opts.MaxBatch {
			// Nobody waits for these: give them LazyDelay to share a commit
			// with a write someone does wait for. Another lazy write does
			// not end the wait: a job's running mark and its end, a few ms
			// apart, would otherwise cost a commit of their own between
			// two starts.
			timer.Reset(l.opts.LazyDelay)
		wait:
			for lazyOnly(batch) && len(batch) < l.opts.MaxBatch {
				select {
				case o, ok := <-l.ops:
					if !ok {
						break wait
					}
					batch = l.gather(append(batch, o))
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
		}
		if l.written-min(l.written, max(l.indexed, l.tried)) >= uint64(l.opts.IndexBatch) {
			batch = append(batch, l.indexOp())
		}
		l.run(batch)
		switch {
		case l.written <= l.indexed:
			index.Stop()
			indexDue = nil
		case indexDue == nil:
			index.Reset(l.opts.IndexDelay)
			indexDue = index.C
		}
	}
}

// indexOp indexes the tail (see the layout in ledger.go). If it fails, the
// next try waits for IndexBatch more jobs or IndexDelay, as a first try
// does: a tail that cannot be indexed must not cost every commit a second
// attempt.
func (l *Ledger) indexOp() op {
	l.tried = l.written
	var mark uint64
	return op{apply: func(tx *bolt.Tx) (err error) {
		mark, err = indexTail(tx)
		return err
	}, committed: func() { l.indexed = mark }}
}

// gather adds whatever else is queued, up to MaxBatch, without waiting.
func (l *Ledger) gather(batch []op) []op {
	for len(batch) < l.opts.MaxBatch {
		select {
		case o, ok := <-l.ops:
			if !ok {
				return batch
			}
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// lazyOnly reports whether no op of batch is urgent: nobody waits for
// them, or nobody waits now (PutLater).
func lazyOnly(batch []op) bool {
	for _, o := range batch {
		if o.ctl != nil || (o.done != nil && !o.later) {
			return false
		}
	}
	return true
}

// run commits batch in order; a control op commits what precedes it, then
// runs outside any transaction.
func (l *Ledger) run(batch []op) {
	start := 0
	for i, o := range batch {
		if o.ctl == nil {
			continue
		}
		l.commit(batch[start:i])
		o.ctl()
		if o.done != nil {
			o.done <- nil
		}
		start = i + 1
	}
	l.commit(batch[start:])
}

// opError says which op of a batch failed inside the transaction.
type opError struct {
	i   int
	err error
}

func (e *opError) Error() string { return e.err.Error() }

// commit writes batch in one transaction. If one op fails, it alone is
// failed and the rest are committed again without it; if the commit
// itself fails (disk full, I/O error), every op in it fails.
//
// A record snapshot that a later one of the same job in the batch
// supersedes is not written (a job's running mark and its end often share
// a commit): it succeeds when the later one does, which replaces it on
// disk either way.
func (l *Ledger) commit(batch []op) {
	for len(batch) > 0 {
		skip := superseded(batch)
		err := l.db.Update(func(tx *bolt.Tx) error {
			for i := range batch {
				if skip[i] {
					continue
				}
				if err := batch[i].apply(tx); err != nil {
					return &opError{i: i, err: err}
				}
			}
			return nil
		})
		var oe *opError
		switch {
		case err == nil:
			for _, o := range batch {
				l.succeeded(o)
			}
			return
		case errors.As(err, &oe):
			l.failed(batch[oe.i], oe.err)
			batch = append(batch[:oe.i:oe.i], batch[oe.i+1:]...)
		default:
			for _, o := range batch {
				l.failed(o, err)
			}
			return
		}
	}
}

// superseded marks the record snapshots of batch that a later snapshot of
// the same job, no earlier in its life, replaces.
func superseded(batch []op) []bool {
	skip := make([]bool, len(batch))
	last := make(map[uint64]*Record, len(batch))
	for i := len(batch) - 1; i >= 0; i-- {
		o := batch[i]
		if o.rec == nil {
			continue
		}
		if r := last[o.seq]; r != nil && !newer(o.rec, r) {
			skip[i] = true
			continue
		}
		last[o.seq] = o.rec
	}
	return skip
}

func (l *Ledger) succeeded(o op) {
	if o.committed != nil {
		o.committed()
	}
	if o.rec != nil {
		l.written = max(l.written, o.seq)
		if p := l.pending[o.seq]; p != nil && !newer(p, o.rec) {
			delete(l.pending, o.seq)
		}
		if !o.rec.State.Open() {
			delete(l.samples, o.seq)
		}
	}
	if o.done != nil {
		o.done <- nil
	}
}

// newer reports whether snapshot a is later in its job's life than b.
func newer(a, b *Record) bool {
	rank := func(s State) int {
		switch s {
		case StateStarting:
			return 0
		case StateRunning:
			return 1
		}
		return 2
	}
	return rank(a.State) > rank(b.State)
}

func (l *Ledger) failed(o op, err error) {
	l.writeErrors.Add(1)
	err = fmt.Errorf("write ledger %s: %w", l.path, err)
	if o.rec != nil && errors.Is(err, errEncode) {
		l.dropped.Add(1)
		l.log.Error("ledger record cannot be encoded; it is not written", "job", o.rec.ID, "err", err)
	} else if o.rec != nil {
		if p := l.pending[o.seq]; p == nil || !newer(p, o.rec) {
			if p == nil && len(l.pending) >= l.opts.MaxPending {
				l.dropped.Add(1)
				l.log.Error("ledger record given up: too many records wait to be written again",
					"job", o.rec.ID, "pending", len(l.pending), "err", err)
			} else {
				l.pending[o.seq] = o.rec
			}
		}
		l.log.Error("ledger write failed; the record will be written again", "job", o.rec.ID, "err", err)
	} else {
		l.log.Error("ledger write failed", "err", err)
	}
	if o.done != nil {
		o.done <- err
	}
}

// retryPending writes again, in one transaction, the records whose write
// failed. Writer goroutine only.
func (l *Ledger) retryPending() {
	if len(l.pending) == 0 {
		return
	}
	recs := l.pending
	l.pending = make(map[uint64]*Record)
	batch := make([]op, 0, len(recs))
	for seq, r := range recs {
		batch = append(batch, op{rec: r, seq: seq, apply: func(tx *bolt.Tx) error { return putRecord(tx, seq, r) }})
	}
	l.commit(batch)
	if len(l.pending) == 0 {
		l.log.Info("ledger records written again after earlier failures", "records", len(batch))
	}
}

// Flush writes again the records whose write failed, and returns once
// done. The supervisor calls it (through Tick) every sample interval.
func (l *Ledger) Flush() error {
	return l.submit(op{ctl: l.retryPending}, true)
}

// Pending is how many records wait to be written again (writer's view;
// approximate while it runs).
func (l *Ledger) Pending() int {
	ch := make(chan int, 1)
	if err := l.submit(op{ctl: func() { ch <- len(l.pending) }}, true); err != nil {
		return 0
	}
	return <-ch
}

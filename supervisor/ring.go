package supervisor

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one output event of a job: a chunk of its stdout or stderr, or
// its end (Exit set, Data nil, always the last). Seq numbers a job's
// events from 1, in the order its ring took them, stdout and stderr
// together.
type Event struct {
	Seq    uint64
	Stream Stream // Stdout or Stderr; 0 for the end
	// Data is shared by every reader of the ring and never changes: read
	// it, never write it or keep it past the call it came with.
	Data []byte
	Exit *Exit // the end; nil for output

	buf *chunkRef // the pooled buffer Data is in; nil: Data is its own
}

// chunkRef counts who holds a pooled read buffer an event keeps: the ring
// and each reader that took the event (next). The last to let go puts it
// back in the pool.
type chunkRef struct {
	bp   *[]byte
	refs atomic.Int32
}

func (c *chunkRef) hold() {
	if c != nil {
		c.refs.Add(1)
	}
}

func (c *chunkRef) release() {
	if c != nil && c.refs.Add(-1) == 0 {
		putChunk(c.bp)
	}
}

// Release lets go of an event taken from a ring (Job.Events): its Data
// must not be read after. Call it once per event taken.
func (e Event) Release() { e.buf.release() }

// eventOverheadBytes is what an event costs a ring on top of its data, so
// that a ring of tiny events is bounded too. It is below the framing of
// any protocol's message (a chimirror.v1 event is at least 37 bytes), so a
// client that acknowledges each half ring of received message bytes never
// leaves its ring full of events it holds unacknowledged.
const eventOverheadBytes = 32

func (e *Event) cost() int64 { return int64(len(e.Data)) + eventOverheadBytes }

// Ring sizes.
const (
	// DefaultReplayBytes is a job's ring when its policy sets none.
	DefaultReplayBytes = 256 << 10
	// DefaultReplayMemoryMax bounds all rings together when the server
	// sets no bound (Config.ReplayMemoryMaxBytes 0): default max_sessions
	// full default rings.
	DefaultReplayMemoryMax = DefaultMaxSessions * DefaultReplayBytes
	// minGrantBytes is the least room a pump waits for before it reads:
	// events are not made tiny by a nearly full ring.
	minGrantBytes = 4 << 10
	// exitSlackBytes is how far past its ring (and the server's budget) a
	// job whose process has exited may read: what its pipe still holds
	// (at most pipe-max-size, 1 MiB by default, per stream), so that its
	// end is recorded at the exit and not when a client comes for it.
	exitSlackBytes = 2 << 20
)

// errRingClosed is returned by a ring's waits once the ring is closed.
var errRingClosed = errors.New("job's output ring closed")

// errWaitStopped is returned by a ring's waits when the caller's stop
// channel closed.
var errWaitStopped = errors.New("wait stopped")

// ring is a job's replay ring: the last output events, up to capBytes of
// them (data plus eventOverheadBytes each), numbered.
//
// Nothing is ever dropped unsaid: an event leaves the ring (is evicted)
// only once acknowledged (seq ≤ acked) and, for a spooled job, spooled
// (seq ≤ spooled: see spoolAll), and only to make room. When the
// ring is full of unacknowledged events, or the server's budget is spent,
// the pumps wait (the program then blocks on a full pipe) until an
// acknowledgement or an eviction elsewhere makes room. A reader that asks
// for an evicted event learns of the gap (next).
//
// Pumps reserve room before they read (tryReserve, the read, commit), so a
// blocked pump holds no buffer: memory is the rings' contents, bounded by
// the budget, plus at most one read per pump while it commits.
//
// An abandoned ring (nobody will read the job's output again) takes
// nothing more: the pumps read and drop, as a job whose client left
// always did. A spooled job's abandoned ring takes on, for its spool,
// until the spool writer is done (spoolDone); it only stops waiting for
// acknowledgements.
type ring struct {
	budget   *budget
	capBytes int64
	maxEvent int // the most data one event holds: a ring holds at least two

	mu        sync.Mutex
	events    []Event // seqs first … first+len(events)-1
	first     uint64  // seq of events[0], or of the next event when empty
	bytes     int64   // cost of events held
	reserved  int64   // taken by pumps between tryReserve and commit
	acked     uint64  // events up to this seq may be evicted, as far as clients go
	spooled   uint64  // … as far as the spool goes: MaxUint64 when the job has none
	ended     bool    // the end event is in
	abandoned bool
	exited    bool // the process is gone: exitSlackBytes more may be read
	closed    bool
	asked     uint64 // the highest seq a reader has asked for (next)
	readers   int    // attachments reading now (addReader)
	holds     map[*ringHold]struct{}
	// Each waiter is woken only by what it waits for. Readers (next) wait
	// for data: an event, the end, the close. Pumps wait for room
	// (waitRoom), or for their readers to get on (backlog: asked,
	// readers).
	data, room, progress signal
	// fill, when set, reads ahead for a reader that has every event and
	// would wait for the next (relay.fill). It is called without r.mu.
	fill func()
}

// signal wakes the goroutines waiting for one thing. Its owner's lock
// guards it.
type signal struct {
	ch chan struct{} // nil while nobody waits
}

// wait is a channel that is closed by the next notify.
func (s *signal) wait() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// notify wakes every waiter, if any.
func (s *signal) notify() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

func newRing(b *budget, capBytes int64) *ring {
	r := &ring{budget: b, capBytes: capBytes, first: 1, spooled: math.MaxUint64}
	r.maxEvent = int(capBytes/2) - eventOverheadBytes
	b.add(r)
	return r
}

// notifyLocked wakes every waiter, readers and pumps; r.mu is held.
func (r *ring) notifyLocked() {
	r.data.notify()
	r.room.notify()
	r.progress.notify()
}

// next is the seq the next event gets.
func (r *ring) nextLocked() uint64 { return r.first + uint64(len(r.events)) }

func (r *ring) limitLocked() int64 {
	if r.exited {
		return r.capBytes + exitSlackBytes
	}
	return r.capBytes
}

// evictLocked evicts acknowledged events, oldest first, until need more
// bytes fit or none is left to evict; it returns the bytes freed.
func (r *ring) evictLocked(need int64) int64 {
	return r.evictWhileLocked(r.shortOf(need))
}

// evictPastHoldsLocked is evictLocked with readers' holds passed (a
// pump's patience with them has run out: see holdPatience).
func (r *ring) evictPastHoldsLocked(need int64) int64 {
	return r.evictBelow(r.takenLocked(), r.shortOf(need))
}

// shortOf is an eviction's "more" while need bytes do not fit. r.mu is
// held while it is called.
func (r *ring) shortOf(need int64) func(int64) bool {
	return func(int64) bool { return r.bytes+r.reserved+need > r.limitLocked() }
}

// takenLocked is the last seq every taker but the readers' holds is done
// with: acknowledged by clients and, for a spooled job, spooled. r.mu is
// held.
func (r *ring) takenLocked() uint64 { return min(r.acked, r.spooled) }

// reclaim evicts up to need bytes of acknowledged events for another
// ring's sake (the server's budget is spent); it returns the bytes freed.
// Readers' holds do not count: they are this ring's own affair.
func (r *ring) reclaim(need int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evictBelow(r.takenLocked(), func(freed int64) bool { return freed < need })
}

// evictWhileLocked evicts the oldest event while it is acknowledged and
// spooled (and taken by the readers' holds, see ringHold) and more(bytes
// freed so far) holds, gives the bytes back to the budget and returns
// them. r.mu is held.
func (r *ring) evictWhileLocked(more func(freed int64) bool) int64 {
	return r.evictBelow(r.holdFloorLocked(r.takenLocked()), more)
}

// evictBelow evicts the oldest event while its seq is at most floor and
// more(bytes freed so far) holds; see evictWhileLocked.
func (r *ring) evictBelow(floor uint64, more func(freed int64) bool) int64 {
	var freed int64
	for len(r.events) > 0 && r.events[0].Seq <= floor && more(freed) {
		c := r.events[0].cost()
		r.events[0].buf.release()
		r.events[0] = Event{}
		r.events = r.events[1:]
		r.first++
		r.bytes -= c
		freed += c
	}
	if freed > 0 {
		r.budget.give(freed)
	}
	return freed
}

// tryReserve reserves room for an event of up to want data bytes, without
// waiting: it returns the data bytes granted (at least minGrantBytes or
// want, whichever is less), 0 when there is no room now (waitRoom waits
// for some), or drop when nobody will read the output (droppingLocked).
func (r *ring) tryReserve(want int) (grant int, drop bool) {
	want = min(want, r.maxEvent)
	least := int64(min(want, minGrantBytes)) + eventOverheadBytes
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.droppingLocked() {
		return 0, true
	}
	r.evictLocked(int64(want) + eventOverheadBytes)
	room := r.limitLocked() - r.bytes - r.reserved
	if room < least {
		return 0, false
	}
	n := r.budget.take(least, min(room, int64(want)+eventOverheadBytes), r.exited)
	if n == 0 {
		return 0, false
	}
	r.reserved += n
	return int(n - eventOverheadBytes), false
}

// unreserve gives back a reservation that no event used.
func (r *ring) unreserve(grant int) {
	n := int64(grant) + eventOverheadBytes
	r.mu.Lock()
	r.reserved -= n
	r.budget.give(n)
	r.room.notify()
	r.mu.Unlock()
}

// commit adds an event of stream s holding data (len(data) ≤ grant) in
// place of the reservation of grant bytes. The ring keeps data, and bp,
// the pooled buffer it is in when not nil: the caller lets go of both.
// Data of a ring that takes no more (droppingLocked) is dropped.
func (r *ring) commit(s Stream, data []byte, bp *[]byte, grant int) {
	n := int64(grant) + eventOverheadBytes
	var ref *chunkRef
	if bp != nil {
		ref = &chunkRef{bp: bp}
		ref.refs.Store(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reserved -= n
	ev := Event{Seq: r.nextLocked(), Stream: s, Data: data, buf: ref}
	c := ev.cost()
	r.budget.give(n - c)
	if r.droppingLocked() {
		r.budget.give(c)
		ref.release()
		return
	}
	r.events = append(r.events, ev)
	r.bytes += c
	r.data.notify()
	if c < n { // the event used less than its reservation: room for the other pump
		r.room.notify()
	}
}

// waitRoom waits until tryReserve may grant something, the ring takes no
// more (droppingLocked), or stop closes (errWaitStopped).
func (r *ring) waitRoom(stop <-chan struct{}) error {
	least := int64(min(minGrantBytes, r.maxEvent)) + eventOverheadBytes
	var heldSince time.Time // when readers' holds began to keep the room: see holdPatience
	var holdTimer *time.Timer
	defer func() {
		if holdTimer != nil {
			holdTimer.Stop()
		}
	}()
	for {
		r.mu.Lock()
		if r.droppingLocked() {
			r.mu.Unlock()
			return nil
		}
		r.evictLocked(least)
		fits := r.limitLocked()-r.bytes-r.reserved >= least
		held := !fits && r.heldLocked()
		exited := r.exited
		wake := r.room.wait()
		r.mu.Unlock()
		if !fits {
			var patience <-chan time.Time
			if !held {
				heldSince = time.Time{} // a later hold gets its whole patience
			} else {
				if heldSince.IsZero() {
					heldSince = time.Now()
				}
				if holdTimer == nil {
					holdTimer = time.NewTimer(time.Until(heldSince.Add(holdPatience)))
				} else {
					holdTimer.Reset(time.Until(heldSince.Add(holdPatience)))
				}
				patience = holdTimer.C
			}
			select {
			case <-wake:
				continue
			case <-patience:
				r.mu.Lock()
				if r.evictPastHoldsLocked(least) > 0 {
					r.room.notify() // the other pump may be waiting for the same room
				}
				r.mu.Unlock()
				heldSince = time.Time{}
				continue
			case <-stop:
				return errWaitStopped
			}
		}
		if exited {
			return nil // past the budget: see exitSlackBytes
		}
		ok, bwake := r.budget.room(least)
		if ok {
			return nil
		}
		if r.budget.reclaim(r, least) > 0 {
			continue
		}
		select {
		case <-wake:
		case <-bwake:
		case <-stop:
			return errWaitStopped
		}
	}
}

// processExited lets the pumps read what the pipes still hold past the
// ring's size and the budget (exitSlackBytes).
func (r *ring) processExited() {
	r.mu.Lock()
	r.exited = true
	r.room.notify()
	r.mu.Unlock()
}

// end adds the job's end, the last event, and returns its seq. It needs no
// room (it is tiny and once).
func (r *ring) end(e Exit) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Seq: r.nextLocked(), Exit: &e}
	r.ended = true
	if !r.closed {
		r.forceLocked(ev)
	}
	r.data.notify()
	return ev.Seq
}

// forceLocked adds ev, which needs no room (it is tiny and once: the end,
// a text stream's last held-back bytes), past the ring's size and the
// budget. r.mu is held.
func (r *ring) forceLocked(ev Event) {
	r.events = append(r.events, ev)
	r.bytes += ev.cost()
	r.budget.force(ev.cost())
}

// abandon makes every event acknowledged and drops what comes after:
// nobody will read the job's output. A spooled job's ring still takes
// events for its spool until spoolDone.
func (r *ring) abandon() {
	r.mu.Lock()
	r.abandoned = true
	r.acked = math.MaxUint64
	r.room.notify()
	r.progress.notify()
	r.mu.Unlock()
}

// close frees the ring: every wait returns errRingClosed.
func (r *ring) close() {
	r.mu.Lock()
	r.closed = true
	r.budget.give(r.bytes)
	r.bytes = 0
	for i := range r.events {
		r.events[i].buf.release()
	}
	r.events = nil
	r.notifyLocked()
	r.mu.Unlock()
	r.budget.remove(r)
}

// ack acknowledges every event up to seq (no further than the last one);
// acknowledgements only move forward.
func (r *ring) ack(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq = min(seq, r.nextLocked()-1)
	if seq > r.acked {
		r.acked = seq
		r.room.notify()
	}
}

// resetAck moves the acknowledgement to seq, backwards too, but never
// before what the ring has evicted: a client switching to acknowledging
// says what it really holds.
func (r *ring) resetAck(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned {
		return
	}
	r.acked = min(max(seq, r.first-1), r.nextLocked()-1)
	r.room.notify()
}

// Position is where a reader's next event is: Next is its seq; when the
// ring has evicted events the reader never got, they are GapFrom … GapTo
// (GapTo 0: no gap). Last is the seq of the last event now held (0: none
// yet).
type Position struct {
	Next, GapFrom, GapTo, Last uint64
}

// position is where a reader that has every event up to after goes on.
func (r *ring) position(after uint64) Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Position{Next: after + 1, Last: r.nextLocked() - 1}
	if after+1 < r.first {
		p.GapFrom, p.GapTo, p.Next = after+1, r.first-1, r.first
	}
	return p
}

// next waits for the event with seq want, or the first one after it if it
// was evicted (ev.Seq > want says so). It returns errRingClosed once the
// ring is closed, errEnded when want is past the end, and errWaitStopped
// when stop closes first. The caller releases the event it gets
// (Event.Release) once done with its Data. Asking for want says the caller
// is done with the events before it (see backlog).
func (r *ring) next(want uint64, stop <-chan struct{}) (Event, error) {
	return r.nextEvent(want, stop, true)
}

// nextEvent is next; reader says whether the caller is a reader the pumps
// wait for (backlog) and read ahead for (fill): the spool writer is not.
func (r *ring) nextEvent(want uint64, stop <-chan struct{}, reader bool) (Event, error) {
	r.mu.Lock()
	if reader && want > r.asked {
		r.asked = want
		if want < r.nextLocked() {
			r.progress.notify() // a pump may look at its pipe again
		}
	}
	filled := !reader
	for {
		if r.closed {
			r.mu.Unlock()
			return Event{}, errRingClosed
		}
		// An evicted want gets the first event held; when none is held,
		// the next to come (its seq says what was lost).
		if want < r.nextLocked() && len(r.events) > 0 {
			i := uint64(0)
			if want > r.first {
				i = want - r.first
			}
			ev := r.events[i]
			ev.buf.hold()
			r.mu.Unlock()
			return ev, nil
		}
		if r.ended {
			r.mu.Unlock()
			return Event{}, errEnded
		}
		if fill := r.fill; fill != nil && !filled {
			filled = true
			r.mu.Unlock()
			fill()
			r.mu.Lock()
			continue // a pump may have put the event in meanwhile
		}
		if reader {
			r.progress.notify() // the reader is done with every event: see backlog
		}
		wake := r.data.wait()
		r.mu.Unlock()
		select {
		case <-wake:
		case <-stop:
			return Event{}, errWaitStopped
		}
		r.mu.Lock()
	}
}

// setFill sets the ring's fill (see ring.fill).
func (r *ring) setFill(fill func()) {
	r.mu.Lock()
	r.fill = fill
	r.mu.Unlock()
}

// addReader counts an attachment reading the ring (n = 1) or done (-1).
func (r *ring) addReader(n int) {
	r.mu.Lock()
	r.readers += n
	r.progress.notify()
	r.mu.Unlock()
}

// backlog returns a channel to wait on while a reader is attached and is
// not done with every event (it has not asked for the one after the
// last: it is still sending one, or has more to take); ok false when
// there is no such backlog. A streaming pump waits on it before a small
// read, so that it reads what piled up in the pipe while its client was
// busy as one event, as a pump that sent each chunk itself did, rather
// than many small ones behind a busy client.
func (r *ring) backlog() (wait <-chan struct{}, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.readers == 0 || r.asked >= r.nextLocked() || r.abandoned || r.closed {
		return nil, false
	}
	return r.progress.wait(), true
}

// errEnded is returned by next for a seq past the job's end.
var errEnded = errors.New("past the job's end")

// held is the bytes the ring holds and the seqs of its first and last
// events, for the console and tests.
func (r *ring) held() (bytes int64, first, last, acked uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes, r.first, r.nextLocked() - 1, min(r.acked, r.nextLocked()-1)
}

// budget bounds the bytes of every ring together (replay_memory_max).
type budget struct {
	max int64

	mu      sync.Mutex
	used    int64
	rings   map[*ring]struct{}
	wake    chan struct{}
	waiting bool
}

func newBudget(maxBytes int64) *budget {
	if maxBytes <= 0 {
		maxBytes = DefaultReplayMemoryMax
	}
	return &budget{max: maxBytes, rings: make(map[*ring]struct{}), wake: make(chan struct{})}
}

func (b *budget) add(r *ring) {
	b.mu.Lock()
	b.rings[r] = struct{}{}
	b.mu.Unlock()
}

func (b *budget) remove(r *ring) {
	b.mu.Lock()
	delete(b.rings, r)
	b.mu.Unlock()
}

// take takes between least and most bytes, as many as are free, and
// returns how many: 0 if not even least is free. With force it takes most
// whatever is free (a job's exit slack, bounded by exitSlackBytes).
func (b *budget) take(least, most int64, force bool) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	free := b.max - b.used
	n := min(most, free)
	if force {
		n = most
	}
	if n < least {
		return 0
	}
	b.used += n
	return n
}

// force takes n bytes whatever is free (a job's end event).
func (b *budget) force(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

// give returns n bytes and wakes whoever waits for room.
func (b *budget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.waiting {
		close(b.wake)
		b.wake = make(chan struct{})
		b.waiting = false
	}
	b.mu.Unlock()
}

// room reports whether need bytes are free; if not, wake is closed when
// some are given back.
func (b *budget) room(need int64) (bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max-b.used >= need {
		return true, nil
	}
	b.waiting = true
	return false, b.wake
}

// reclaim evicts acknowledged events of rings other than r until need
// bytes are freed or none is left to evict; it returns the bytes freed.
// It holds no lock while it evicts (ring.mu comes before budget.mu).
func (b *budget) reclaim(r *ring, need int64) int64 {
	b.mu.Lock()
	others := make([]*ring, 0, len(b.rings))
	for o := range b.rings {
		if o != r {
			others = append(others, o)
		}
	}
	b.mu.Unlock()
	var freed int64
	for _, o := range others {
		if freed >= need {
			break
		}
		freed += o.reclaim(need - freed)
	}
	return freed
}

// Used is the bytes all rings hold now.
func (b *budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// appendTail adds the bytes a text stream held back at its end (at most
// three): they need no room.
func (r *ring) appendTail(s Stream, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.droppingLocked() {
		return
	}
	r.forceLocked(Event{Seq: r.nextLocked(), Stream: s, Data: data})
	r.data.notify()
}

// The spool's floor. A spooled job's spool writer reads the ring as a
// reader does (spoolNext) and tells the ring what it has spooled
// (spooledTo): no event is evicted before, so every event a client may
// find evicted is in the job's spool, and a slow spool holds the pumps
// back as a slow client does. Jobs without a spool have no such floor.

// spoolAll makes the ring keep each event until it is spooled
// (spooledTo), and take events while abandoned, until spoolDone. Call it
// before the first event.
func (r *ring) spoolAll() {
	r.mu.Lock()
	r.spooled = 0
	r.mu.Unlock()
}

// spoolNext is next for the spool writer, which no pump waits for.
func (r *ring) spoolNext(want uint64, stop <-chan struct{}) (Event, error) {
	return r.nextEvent(want, stop, false)
}

// spooledTo tells the ring that its events up to seq are spooled.
func (r *ring) spooledTo(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq <= r.spooled {
		return
	}
	moved := r.spooled < r.acked // the spool was the floor
	r.spooled = seq
	if moved {
		r.room.notify()
	}
}

// spoolDone lifts the spool's floor: its writer is done (the output is
// over, or the spool failed). An abandoned ring drops from then on.
func (r *ring) spoolDone() {
	r.mu.Lock()
	r.spooled = math.MaxUint64
	r.notifyLocked()
	r.mu.Unlock()
}

// droppingLocked reports whether the ring takes no more events: it is
// closed, or abandoned with no spool to take them. r.mu is held.
func (r *ring) droppingLocked() bool {
	return r.closed || r.abandoned && r.spooled == math.MaxUint64
}

// Readers' holds. A batch job has no client to wait for: its ring lets an
// event go once it is spooled, and a reader of its events (an HTTP event
// stream) that falls behind by a ring reads the rest from the spool, which
// costs it a read and a decoding of the file per batch. A reader's hold
// keeps the events it has yet to take in the ring, as a client's
// acknowledgements do, but only for a while: a pump that has waited
// holdPatience for room that only holds keep evicts past them, and the
// readers behind then go on from the spool. Each wait for room is thus
// bounded by holdPatience: a reader that stops costs its job at most that
// per stop, and a reader that keeps taking events paces its job as an
// attached client does (a batch job's stream is its tenant's own reader,
// and the job's wall_time bounds it). A reader that keeps up reads the
// ring alone. A hold counts only while its reader is within the ring:
// once past, it is not a floor again until the reader catches up.

// holdPatience is how long a pump waits for a reader's hold to move
// before it evicts past it.
const holdPatience = 100 * time.Millisecond

// ringHold is one reader's hold: it has taken every event up to seq.
// Its ring's mu guards seq.
type ringHold struct {
	r   *ring
	seq uint64
}

// hold adds a reader's hold, the reader having taken every event up to
// after; nil (no hold) when the ring has most holds already.
func (r *ring) hold(after uint64, most int) *ringHold {
	h := &ringHold{r: r, seq: after}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.holds) >= most {
		return nil
	}
	if r.holds == nil {
		r.holds = make(map[*ringHold]struct{})
	}
	r.holds[h] = struct{}{}
	return h
}

// move says the reader has taken every event up to seq.
func (h *ringHold) move(seq uint64) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if seq > h.seq {
		h.seq = seq
		h.r.room.notify()
	}
}

// release removes the hold.
func (h *ringHold) release() {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	delete(h.r.holds, h)
	h.r.room.notify()
}

// holdFloorLocked is floor lowered to the holds within the ring. r.mu is
// held.
func (r *ring) holdFloorLocked(floor uint64) uint64 {
	for h := range r.holds {
		if h.seq+1 >= r.first {
			floor = min(floor, h.seq)
		}
	}
	return floor
}

// heldLocked reports whether only readers' holds keep the oldest event
// from being evicted. r.mu is held.
func (r *ring) heldLocked() bool {
	return len(r.events) > 0 && r.events[0].Seq <= r.takenLocked() && r.holdFloorLocked(math.MaxUint64) < r.events[0].Seq
}

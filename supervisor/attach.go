package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Attaching. A job's output goes into its ring (see relay), and clients
// read it there, each from its own position:
//
//	pumps ──► ring ──► attached client   (one at a time; may acknowledge)
//	              └──► watchers          (any number up to MaxWatchers; read-only)
//
// The job's first client is attached by Run; Attach attaches later ones.
// A new attached client takes over: the one before is dismissed
// (DismissTakenOver). Each attachment runs two goroutines, both waited for
// before Attach (or Run's first attachment) returns: the caller's, reading
// the client's input, and a writer sending ring events from after the
// position it attached at.
//
// Acknowledgement: an event leaves the ring only once acknowledged. An
// attached client that sends InputAck acknowledges by itself from then on
// (its first InputAck moves the acknowledgement to what it says it holds,
// backwards too as far as the ring still reaches). One that never does
// acknowledges each event as it is written to it. A client that says so
// when it connects (Acknowledger) acknowledges by itself from the start:
// nothing written to it before its first InputAck is let go. Watchers never
// acknowledge, and a watcher that falls behind the ring is dismissed
// (DismissTooSlow), so no watcher ever holds the job back.
//
// Leaving: when the attached client goes without being taken over, the
// job's policy decides. With detach_timeout 0 the job ends (client-gone),
// as it always did. With detach_timeout set, a client that dropped (no
// close frame, missed pongs, a write timeout), sent a close frame other
// than 1000 or 1005, or asked to detach (InputDetach) leaves the job
// running, detached; one that sent close 1000 or 1005, or broke the
// protocol (ErrClientViolation), ends it. A job not reattached within
// detach_timeout ends with ReasonDetached. While nobody is attached its
// ring fills and its output waits: nothing is dropped.
//
// The end: the ledger records a job's end when its process ends (Report),
// never later. The job then stays in the table, attachable, until its end
// is delivered: the end event written to a client that does not
// acknowledge, or acknowledged, or the attached client sends any close
// frame after the end; or until nobody will come for it (the client left
// and the job could not detach, detach_timeout passed, Shutdown). Then Run
// returns.

// MaxWatchers bounds the watchers of one job.
const MaxWatchers = 64

// watcherEndWait is how long a watcher still has, once the job's end is
// settled, to take the rest of the ring before it is closed.
const watcherEndWait = 2 * time.Second

var (
	// ErrTooManyWatchers is returned by Attach when MaxWatchers watch.
	ErrTooManyWatchers = errors.New("too many watchers of this job")
	// ErrBadPosition is returned by Attach for an after past the job's
	// last event.
	ErrBadPosition = errors.New("after is past the job's last event")
	// ErrJobEnding is returned by Attach for an attached client when the
	// job is ending with nobody to deliver to (it may still be watched).
	ErrJobEnding = errors.New("the job is ending and takes no client")
)

// AttachOptions say how a client attaches.
type AttachOptions struct {
	// After is the seq of the last event the client has; AfterSet false
	// means the job's acknowledgement point.
	After    uint64
	AfterSet bool
	// Watch attaches read-only, as a watcher.
	Watch bool
}

// attachment is one client of a job.
type attachment struct {
	j       *Job
	c       Client
	watcher bool
	first   bool   // the job's first client: no Resume
	after   uint64 // the client has every event up to after

	// mu orders the switch to acknowledging against the writer's own
	// acknowledgements.
	mu      sync.Mutex
	ackMode bool
	primary bool // still the job's attached client: its writes acknowledge

	sending    atomic.Uint64 // the seq of the event last handed to Send, or after
	endWritten atomic.Bool   // Finish returned nil
	// outBeforeEnd is MessagesOut before Finish (-1: Finish not called):
	// the ledger counts every message but the report of the end.
	outBeforeEnd atomic.Int64
	failed       atomic.Pointer[error] // why the writer failed, first
	stop         chan struct{}         // closed by halt: the writer stops waiting
	haltOnce     sync.Once
	writerDone   chan struct{}
}

func (a *attachment) halt() { a.haltOnce.Do(func() { close(a.stop) }) }

// newResumeToken is a job's resume token: 256 random bits, base32.
func newResumeToken() string { return rand.Text() + rand.Text() }

// ResumeToken is the secret that lets a client reattach to the job.
func (j *Job) ResumeToken() string { return j.resume }

// CheckResume reports whether token is the job's resume token, in
// constant time.
func (j *Job) CheckResume(token string) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(j.resume))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ReplayBytes is the size of the job's ring.
func (j *Job) ReplayBytes() int64 { return j.ring.capBytes }

// DetachTimeout is how long the job runs without a client; 0: it does not.
func (j *Job) DetachTimeout() time.Duration { return j.detachTimeout }

// Position is where a client that has every event up to after would go on.
func (j *Job) Position(after uint64) Position { return j.ring.position(after) }

// Events returns the job's first output event after after, waiting for it
// until ctx is done. ev.Seq > after+1 means the events between were
// evicted (acknowledged by a client before). It returns ErrNoJob once
// the job is gone, and ctx's error. It is the seam for readers that are
// not attachments (HTTP event streams): it takes nothing from the ring
// and acknowledges nothing. Release the event once done with its Data.
// A spooled job's ring evicts no event before it is spooled: the events a
// gap skips are in its spool (Supervisor.OpenSpool, then
// spool.File.EventsAfter(after)), with these seqs.
func (j *Job) Events(ctx context.Context, after uint64) (Event, error) {
	ev, err := j.ring.nextEvent(after+1, ctx.Done(), false)
	switch {
	case errors.Is(err, errWaitStopped):
		return Event{}, ctx.Err()
	case errors.Is(err, errRingClosed), errors.Is(err, errEnded):
		return Event{}, fmt.Errorf("%w: %s", ErrNoJob, j.ID)
	}
	return ev, err
}

// Attach attaches c to the running job from the event after o.After (or
// the acknowledgement point) and serves it until it goes: taken over,
// gone, detached, or the job's end delivered. It returns an error, having
// used c for nothing, when the job is gone or takes no such client.
func (j *Job) Attach(c Client, o AttachOptions) error {
	<-j.attachReady
	j.amu.Lock()
	after, err := j.attachCheckLocked(o)
	if err != nil {
		j.amu.Unlock()
		return err
	}
	a := j.newAttachment(c, after, o.Watch, false)
	var old *attachment
	if o.Watch {
		j.watchers[a] = true
	} else {
		old = j.primary
		if old != nil {
			old.mu.Lock()
			old.primary = false
			old.mu.Unlock()
		}
		j.primary = a
		if j.detachTimer != nil {
			j.detachTimer.Stop()
			j.detachTimer = nil
		}
		j.log.Info("client attached", "after", after, "remote_taking_over", old != nil)
	}
	j.attachments.Add(1)
	j.amu.Unlock()
	if old != nil {
		if err := old.c.Dismiss(DismissTakenOver, "another client attached to "+j.ID); err != nil {
			j.log.Debug("dismiss the client taken over", "err", err)
		}
	}
	j.serve(a)
	return nil
}

// CanAttach returns the error Attach would return for o now, if any.
func (j *Job) CanAttach(o AttachOptions) error {
	<-j.attachReady
	j.amu.Lock()
	defer j.amu.Unlock()
	_, err := j.attachCheckLocked(o)
	return err
}

// attachCheckLocked returns where a client attaching with o goes on from,
// or why it may not attach. j.amu is held.
func (j *Job) attachCheckLocked(o AttachOptions) (after uint64, err error) {
	switch {
	case j.released:
		return 0, fmt.Errorf("%w: %s", ErrNoJob, j.ID)
	case !o.Watch && (j.abandoned || !j.sup.Accepting()):
		return 0, fmt.Errorf("%w: %s", ErrJobEnding, j.ID)
	}
	if o.Watch {
		if err := j.watchersFullLocked(); err != nil {
			return 0, err
		}
	}
	after = o.After
	_, _, last, acked := j.ring.held()
	if !o.AfterSet {
		after = acked
	}
	if after > last {
		return 0, fmt.Errorf("%w: %d > %d", ErrBadPosition, after, last)
	}
	return after, nil
}

func (j *Job) newAttachment(c Client, after uint64, watch, first bool) *attachment {
	a := &attachment{j: j, c: c, watcher: watch, first: first, after: after, primary: !watch,
		stop: make(chan struct{}), writerDone: make(chan struct{})}
	a.outBeforeEnd.Store(-1)
	a.sending.Store(after) // the client says it holds these
	if ac, ok := c.(Acknowledger); ok && ac.AcksFromStart() {
		a.ackMode = true
	}
	return a
}

// serve runs a's writer and reads a's input on this goroutine, until a
// goes; then the job's policy decides what its leaving means (left).
func (j *Job) serve(a *attachment) {
	defer j.attachments.Done()
	go a.writeLoop()
	err := j.inputLoop(a)
	a.halt()
	if errors.Is(err, errDetach) {
		if derr := a.c.Dismiss(DismissDetached, fmt.Sprintf("%s runs on detached for %v", j.ID, j.detachTimeout)); derr != nil {
			j.log.Debug("dismiss a detaching client", "err", derr)
		}
	}
	if cerr := a.c.Close(); cerr != nil {
		j.log.Debug("close client", "err", cerr)
	}
	<-a.writerDone
	// A writer that failed closed the connection under the reader, which
	// then saw only that: the writer's error is why the client went. But
	// a close frame the reader took came from the client itself, which
	// says what it wants (a writer failing on it meanwhile is no news).
	_, closed := errors.AsType[*CloseError](err)
	if werr := a.failed.Load(); werr != nil && !errors.Is(err, errDetach) && !closed {
		j.log.Debug("client input ended after its output failed", "err", err)
		err = *werr
	}
	j.left(a, err)
}

// writeLoop sends the ring's events to a's client, from after a.after,
// until the end is written, the client fails, or halt.
func (a *attachment) writeLoop() {
	defer close(a.writerDone)
	j, c := a.j, a.c
	if !a.watcher { // watchers never hold the job's pumps back
		j.ring.addReader(1)
		defer j.ring.addReader(-1)
	}
	pos := j.ring.position(a.after)
	if !a.first {
		if err := c.Resume(pos); err != nil {
			a.fail(fmt.Errorf("resume: %w", err))
			return
		}
	}
	want := pos.Next
	for {
		ev, err := j.ring.next(want, a.stop)
		if err != nil {
			return // halted, or the ring is gone with the job
		}
		err = a.deliver(ev, want)
		ev.Release()
		if err != nil || ev.Exit != nil {
			return
		}
		want = ev.Seq + 1
	}
}

// deliver sends one event the client waits for (want: the seq it should
// be) and reports an error once the client is done with: failed,
// dismissed, or given the end.
func (a *attachment) deliver(ev Event, want uint64) error {
	j, c := a.j, a.c
	if ev.Seq > want { // evicted before this client could have it
		if a.watcher {
			a.dismiss(DismissTooSlow, fmt.Sprintf("fell behind %s's output by more than its ring", j.ID))
			return errDismissed
		}
		j.log.Warn("attached client missed evicted events", "from", want, "to", ev.Seq-1)
		if err := c.Resume(Position{Next: ev.Seq, GapFrom: want, GapTo: ev.Seq - 1}); err != nil {
			a.fail(err)
			return err
		}
	}
	if ev.Exit != nil {
		if err := c.Flush(); err != nil {
			j.log.Debug("flush client", "err", err)
		}
		a.outBeforeEnd.Store(c.MessagesOut())
		j.answerMu.Lock() // an answer under way goes first
		err := c.Finish(ev)
		j.answerMu.Unlock()
		if err != nil {
			j.log.Debug("finish client", "err", err)
			return err
		}
		a.endWritten.Store(true)
		a.written(ev.Seq)
		return nil
	}
	a.sending.Store(ev.Seq)
	if err := c.Send(ev); err != nil {
		err = fmt.Errorf("send: %w", err)
		a.fail(err)
		return err
	}
	a.written(ev.Seq)
	return nil
}

// errDismissed ends a writer whose client was dismissed.
var errDismissed = errors.New("client dismissed")

// written acknowledges seq if a is the attached client and does not
// acknowledge by itself.
func (a *attachment) written(seq uint64) {
	a.mu.Lock()
	ack := a.primary && !a.ackMode
	if ack {
		a.j.ring.ack(seq)
	}
	a.mu.Unlock()
	if ack {
		a.j.checkDelivered(seq)
	}
}

// fail ends a after its writer failed: the reader is unblocked.
func (a *attachment) fail(err error) {
	a.failed.CompareAndSwap(nil, &err)
	a.j.log.Debug("client write failed", "err", err, "watcher", a.watcher)
	if cerr := a.c.Close(); cerr != nil {
		a.j.log.Debug("close client", "err", cerr)
	}
}

// dismiss ends a with a reason the client is told.
func (a *attachment) dismiss(why Dismissal, detail string) {
	if err := a.c.Dismiss(why, detail); err != nil {
		a.j.log.Debug("dismiss client", "err", err)
	}
}

// ackFrom applies a client's InputAck of seq: never past what it was sent.
func (a *attachment) ackFrom(seq uint64) {
	seq = min(seq, a.sending.Load())
	a.mu.Lock()
	if !a.primary {
		a.mu.Unlock()
		return
	}
	if !a.ackMode {
		a.ackMode = true
		a.j.ring.resetAck(seq)
	}
	a.j.ring.ack(seq)
	a.mu.Unlock() // a.mu is never held while j.amu is taken
	a.j.checkDelivered(seq)
}

// checkDelivered delivers the job's end if seq, acknowledged, is it.
func (j *Job) checkDelivered(seq uint64) {
	if end := j.endSeq.Load(); end != 0 && seq >= end {
		j.amu.Lock()
		j.delivered = true
		j.settleLocked()
		j.amu.Unlock()
	}
}

// ended is the relay's news that the job's end is the ring's event seq.
func (j *Job) ended(seq uint64) {
	if j.spool != nil && seq != j.spoolEndSeq { // closeSpool foretold it
		j.log.Error("spool: the exit event's seq is not the end's", "spool_seq", j.spoolEndSeq, "end_seq", seq)
	}
	j.endSeq.Store(seq)
	j.sup.mu.Lock()
	j.settling = true
	j.sup.settling++
	j.sup.mu.Unlock()
	j.amu.Lock()
	defer j.amu.Unlock()
	if j.primary == nil && !j.abandoned && j.detachTimer == nil {
		j.abandonLocked(ReasonClientGone, "no client") // nobody attached and none may come
	}
	j.settleLocked()
}

// left is a's leaving: the policy's decision when it was the job's
// attached client (see the package's Attaching comment). err is why its
// input ended.
func (j *Job) left(a *attachment, err error) {
	if !a.watcher {
		n := a.outBeforeEnd.Load()
		if n < 0 {
			n = a.c.MessagesOut()
		}
		j.messagesOut.Add(n)
	}
	j.amu.Lock()
	defer j.amu.Unlock()
	if a.watcher {
		delete(j.watchers, a)
		return
	}
	if j.primary != a { // taken over
		return
	}
	j.primary = nil
	ce, closed := errors.AsType[*CloseError](err)
	if j.endSeq.Load() != 0 {
		a.mu.Lock()
		writeAcked := !a.ackMode
		a.mu.Unlock()
		if closed || (a.endWritten.Load() && writeAcked) {
			j.delivered = true
		}
		if j.delivered {
			j.settleLocked()
			return
		}
	}
	ends := closed && (ce.Code == closeNormal || ce.Code == closeNoStatus)
	if ends || errors.Is(err, ErrClientViolation) || j.detachTimeout <= 0 || !j.sup.Accepting() || j.abandoned {
		j.abandonLocked(ReasonClientGone, describeClientErr(err))
		return
	}
	j.log.Info("client detached; the job runs on", "detach_timeout", j.detachTimeout, "why", describeClientErr(err))
	j.detachTimer = time.AfterFunc(j.detachTimeout, j.detachExpired)
}

// Close codes a client may end with that end the job even when it could
// detach: 1000 (done) and 1005 (a close frame with no code: JavaScript's
// ws.close()).
const (
	closeNormal   = 1000
	closeNoStatus = 1005
)

// detachExpired ends a job nobody reattached to within detach_timeout.
func (j *Job) detachExpired() {
	j.amu.Lock()
	defer j.amu.Unlock()
	if j.primary != nil || j.abandoned {
		return
	}
	j.detachTimer = nil
	j.abandonLocked(ReasonDetached, "not reattached within detach_timeout "+j.detachTimeout.String())
}

// abandonLocked gives the job's output up: nobody will read it. A job
// still running ends for reason. j.amu is held.
func (j *Job) abandonLocked(reason Reason, detail string) {
	if j.detachTimer != nil {
		j.detachTimer.Stop()
		j.detachTimer = nil
	}
	j.abandoned = true
	j.ring.abandon()
	if j.endSeq.Load() == 0 {
		j.terminate(reason, detail)
	}
	j.settleLocked()
}

// settleLocked closes settled once the job has ended and its end is
// delivered or abandoned. j.amu is held.
func (j *Job) settleLocked() {
	if j.endSeq.Load() != 0 && (j.delivered || j.abandoned) && !j.settledDone {
		j.settledDone = true
		close(j.settled)
	}
}

// shutdown abandons a detached job's output: the server is stopping, and
// no client will come for it.
func (j *Job) shutdown() {
	j.amu.Lock()
	defer j.amu.Unlock()
	if j.primary == nil && !j.abandoned {
		j.abandonLocked(ReasonShutdown, "server shutting down")
	}
}

// release closes what is left of the job's clients once its end is
// settled: watchers get watcherEndWait to take the rest of the ring. It
// returns once every attachment has returned.
func (j *Job) releaseClients() {
	j.amu.Lock()
	j.released = true
	var timers []*time.Timer
	for w := range j.watchers {
		timers = append(timers, time.AfterFunc(watcherEndWait, func() {
			w.halt()
			if err := w.c.Close(); err != nil {
				j.log.Debug("close watcher", "err", err)
			}
		}))
	}
	j.amu.Unlock()
	j.attachments.Wait()
	for _, t := range timers {
		t.Stop()
	}
}

// inputLoop applies a's input until a is gone or closed. A watcher's input
// is refused, but for its close.
func (j *Job) inputLoop(a *attachment) error {
	for {
		in, err := a.c.Receive()
		if err != nil {
			return err
		}
		if in.Kind == InputAck {
			if !a.watcher {
				a.ackFrom(in.Seq)
			}
			if in.Done != nil {
				in.Done(nil)
			}
			continue
		}
		if a.watcher {
			if in.Done != nil {
				in.Done(errors.New("a watcher is read-only"))
			}
			continue
		}
		if in.Kind == InputDetach {
			if j.detachTimeout <= 0 {
				if in.Done != nil {
					in.Done(errors.New("this job cannot detach: its policy has no detach_timeout"))
				}
				continue
			}
			if in.Done != nil {
				in.Done(nil)
			}
			return errDetach
		}
		j.apply(in)
	}
}

// errDetach ends an attachment whose client asked to detach.
var errDetach = errors.New("client detached")

// ErrInputClosed is returned by Input when the job takes no more input:
// its process has exited, or it is ending.
var ErrInputClosed = errors.New("the job takes no more input")

// Input applies one input from a client that is not attached to the job
// (HTTP: stdin appended, stdin closed, a signal) and returns once it is
// applied, or could not be. A stdin write waits while the program's pipe
// is full, as an attached client's does. It returns ErrInputClosed once
// the job has exited or is ending, and refuses any kind but InputStdin,
// InputCloseStdin and InputSignal.
func (j *Job) Input(in Input) error {
	switch in.Kind {
	case InputStdin, InputCloseStdin, InputSignal:
	default:
		return fmt.Errorf("job %s: input kind %d is not for a client that is not attached", j.ID, in.Kind)
	}
	j.mu.Lock()
	ending := j.procExited || j.reason != ""
	j.mu.Unlock()
	if ending || j.endSeq.Load() != 0 {
		return fmt.Errorf("%w: %s", ErrInputClosed, j.ID)
	}
	var err error
	in.Done = func(e error) { err = e }
	j.apply(in)
	return err
}

// CancelByTenant ends the job at its tenant's request (exit signal,
// grace, kill), recorded as cancelled by the tenant. It returns ErrNoJob
// when the job's process has already exited.
func (j *Job) CancelByTenant() error {
	j.mu.Lock()
	exited := j.procExited
	j.mu.Unlock()
	if exited {
		return fmt.Errorf("%w: %s has exited", ErrNoJob, j.ID)
	}
	by := "tenant " + j.Tenant.Name
	j.cancel(by, "cancelled by its "+by)
	return nil
}

// AddReader counts a reader of the job's events that is not an
// attachment (an HTTP event stream) with its watchers, against
// MaxWatchers: ErrTooManyWatchers when there are as many. Call done once
// the reader is gone.
func (j *Job) AddReader() (done func(), err error) {
	j.amu.Lock()
	defer j.amu.Unlock()
	if err := j.watchersFullLocked(); err != nil {
		return nil, err
	}
	j.readers++
	return sync.OnceFunc(func() {
		j.amu.Lock()
		j.readers--
		j.amu.Unlock()
	}), nil
}

// watchersFullLocked is ErrTooManyWatchers when the job's watchers and
// other readers together are MaxWatchers; j.amu is held.
func (j *Job) watchersFullLocked() error {
	if len(j.watchers)+j.readers >= MaxWatchers {
		return fmt.Errorf("%w (%d)", ErrTooManyWatchers, MaxWatchers)
	}
	return nil
}

// EventHold keeps a reader's events in a batch job's ring for it (see
// ringHold): Move as the reader takes them, Release once it is done.
type EventHold struct{ h *ringHold }

// HoldEvents makes the job's ring keep the events after after for a
// reader of Events, within a bounded wait (see ringHold), so that a
// reader that keeps up does not fall behind to the spool. Only a batch
// job's ring is held: an interactive job's readers are watchers, which
// never slow their job. The hold of a job of another kind does nothing,
// as does one past MaxWatchers holds (readers are bounded so: AddReader).
func (j *Job) HoldEvents(after uint64) *EventHold {
	if !j.App.RunsBatch() {
		return &EventHold{}
	}
	return &EventHold{h: j.ring.hold(after, MaxWatchers)}
}

// Move says the reader has taken every event up to seq.
func (e *EventHold) Move(seq uint64) {
	if e.h != nil {
		e.h.move(seq)
	}
}

// Release lets the ring go on without the reader.
func (e *EventHold) Release() {
	if e.h != nil {
		e.h.release()
	}
}

// EndSeq is the seq of the job's end event once it is in the ring; 0
// while the job runs.
func (j *Job) EndSeq() uint64 { return j.endSeq.Load() }

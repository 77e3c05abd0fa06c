package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// A job over plain HTTP, no WebSocket needed (issue 16 §3):
//
//	GET    /jobs/JOBID/events          Server-Sent Events, or a long-poll
//	POST   /jobs/JOBID/stdin[?close=1] append the body to stdin; close it
//	POST   /jobs/JOBID/signal?signal=INT  (or the name as the body)
//	DELETE /jobs/JOBID                 end the job: cancelled by its tenant
//
// Each takes the tenant's token as a WebSocket job does, and the job's
// resume token in X-Chimirror-Resume or ?resume= (an EventSource cannot
// send headers). Once the job has ended its events are read from its
// spool, and the tenant's token is enough, as for its output; a job that
// kept no spool answers 410 then. Refusals: 401 no token, 403 a wrong
// resume token or an Origin not allowed, 404 no such job running (or
// another tenant's: the same answer), 400 a malformed job ID or a bad
// parameter, 405 another method, 409 a job that takes no more input, 429
// a reader past the job's MaxWatchers (event streams and watchers count
// together).
//
// Events are chimirror.v1's objects, the same bytes a WebSocket client
// gets: {"event":"/stdout","seq":N,"data":…} (with "encoding":"base64"
// for bytes that are not UTF-8), /stderr likewise, /exit {"seq", "data":
// {code, signal, reason}} last, and /gap {"from","to"} for events the job
// no longer holds (acknowledged by its client and evicted). An HTTP reader
// reads as a watcher does: it never acknowledges, so it never holds the
// job back. It misses nothing of a spooled job (batch jobs, spool = true):
// what the ring let go is read from the spool. Of another job, events it
// is too slow for may be gone, and a /gap says so.
//
// Server-Sent Events (the default; Accept: text/event-stream): one SSE
// event per job event, with "id: SEQ", the event's name without its slash
// (stdout, stderr, exit, gap; a gap's id is its "to") and the JSON object
// as data. It starts after ?after=SEQ, or after the Last-Event-ID header
// when present, so a browser's EventSource resumes where it was by itself.
// The stream ends after the exit event; asking again from the end (or
// later) answers 204, which stops an EventSource from reconnecting. A
// comment line every sseKeepAlive keeps proxies from closing a quiet
// stream.
//
// Long-poll (Accept: application/json): ?after=SEQ&wait=25s answers a JSON
// array of the events after SEQ as soon as there is one (as many as are
// there, up to longPollBytes), or an empty array once wait has passed
// (default 25s, at most longPollMaxWait). After the end it answers 204.

const (
	sseKeepAlive      = 15 * time.Second
	eventWriteTimeout = 30 * time.Second
	longPollBytes     = 1 << 20
	longPollWait      = 25 * time.Second
	longPollMaxWait   = 2 * time.Minute
)

// routeJob serves /jobs/ID/events, /stdin, /signal and DELETE /jobs/ID;
// ok is false for any other path.
func (s *Server) routeJob(w http.ResponseWriter, r *http.Request, id, tail string) (ok bool, err error) {
	var method string
	switch tail {
	case "events":
		method = http.MethodGet
	case "stdin", "signal":
		method = http.MethodPost
	case "":
		method = http.MethodDelete
	}
	if method == "" || tail == "" && r.Method != http.MethodDelete {
		return false, nil // in quick mode, one more path of the command's
	}
	if r.Method != method {
		return true, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /jobs/%s/%s: use %s", r.Method, id, tail, method)
	}
	if !s.originAllowed(r) {
		return true, errorf(http.StatusForbidden, "origin %q is not allowed", r.Header.Get("Origin"))
	}
	tenant, err := s.authenticate(r)
	if err != nil {
		return true, err
	}
	if tail == "events" {
		return true, s.jobEvents(w, r, tenant, id)
	}
	job, err := s.resumable(r, tenant, id)
	if err != nil {
		return true, err
	}
	switch tail {
	case "stdin":
		return true, s.stdin(w, r, job)
	case "signal":
		return true, s.signal(w, r, job)
	}
	if err := job.CancelByTenant(); err != nil {
		return true, errorf(http.StatusConflict, "%v", err)
	}
	job.Log().Info("cancelled by its tenant over HTTP", "remote", clientHost(r))
	w.WriteHeader(http.StatusAccepted)
	return true, nil
}

// jobEvents serves the events of tenant's job id: with its resume token
// while it runs; once it has ended, from its spool, to its tenant.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request, tenant *supervisor.Tenant, id string) error {
	job, err := s.resumable(r, tenant, id)
	if err == nil {
		if rec, _, ok := s.sup.Record(job.ID); ok {
			return serveEvents(w, r, s.sup, s.log, job, rec)
		}
		err = noSuchJob(job.ID) // ended since: the ledger has it
	}
	// Not running, or no resume token: an ended job's events are its
	// tenant's, as its output is.
	if he, ok := errors.AsType[*httpError](err); !ok || he.Status != http.StatusNotFound && he.Status != http.StatusUnauthorized {
		return err
	}
	rec, _, ferr := findJob(s.sup, id)
	if ferr != nil {
		return ferr
	}
	if rec.State.Open() || tenant != supervisor.PublicTenant && rec.Tenant != tenant.Name {
		return err // running (or starting); another tenant's job is as unknown
	}
	return serveEvents(w, r, s.sup, s.log, nil, rec)
}

// stdin appends the request's body to the job's stdin, then closes it if
// ?close=1. It answers {"stdin_bytes": N} once the job took the body (a
// program that does not read its stdin holds the answer back).
func (s *Server) stdin(w http.ResponseWriter, r *http.Request, job *supervisor.Job) error {
	closeIt := false
	switch v := r.URL.Query().Get("close"); v {
	case "", "0":
	case "1":
		closeIt = true
	default:
		return errorf(http.StatusBadRequest, "close=%q: want 1 or 0", v)
	}
	took, stopped, err := feedStdin(jobStdin{job}, r.Body, !closeIt)
	if err != nil { // what the job took is said: a retry must not send it again
		return errorf(http.StatusBadRequest, "reading the request body after the job took %d bytes of it: %v", took, err)
	}
	if stopped && took == 0 {
		return errorf(http.StatusConflict, "job %s takes no more input: it has ended, is ending, or closed its stdin", job.ID)
	}
	writeJSON(w, http.StatusOK, map[string]any{"stdin_bytes": took, "stopped": stopped})
	return nil
}

// jobStdin is a job's stdin for a client that is not attached.
type jobStdin struct{ j *supervisor.Job }

func (s jobStdin) Write(p []byte) (int, error) {
	if err := s.j.Input(supervisor.Input{Kind: supervisor.InputStdin, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s jobStdin) CloseStdin() error {
	return s.j.Input(supervisor.Input{Kind: supervisor.InputCloseStdin})
}

// signalBodyBytes bounds a signal request's body: a signal's name.
const signalBodyBytes = 64

// signal sends the signal named by ?signal= or the body (INT, TERM, HUP,
// USR1, USR2, KILL: what chimirror.v1's /signal takes) to the job.
func (s *Server) signal(w http.ResponseWriter, r *http.Request, job *supervisor.Job) error {
	name := r.URL.Query().Get("signal")
	if name == "" {
		b, err := io.ReadAll(io.LimitReader(r.Body, signalBodyBytes+1))
		if err != nil {
			return errorf(http.StatusBadRequest, "reading the request body: %v", err)
		}
		if len(b) > signalBodyBytes {
			return errorf(http.StatusRequestEntityTooLarge, "a signal's name is at most %d bytes", signalBodyBytes)
		}
		name = strings.TrimSpace(string(b))
	}
	sig, err := policies.ClientSignal(name)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := job.Input(supervisor.Input{Kind: supervisor.InputSignal, Signal: sig}); err != nil {
		return errorf(http.StatusConflict, "signal %s: %v", name, err) // ended, ending, or gone meanwhile
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// events serves job id's events as Server-Sent Events or a long-poll. job
// is nil when the job is no longer running: its spool, if it keeps one,
// has its events (the tenant's token is enough then, as for its output).
func serveEvents(w http.ResponseWriter, r *http.Request, sup *supervisor.Supervisor, log *slog.Logger, job *supervisor.Job, rec accounting.Record) error {
	q := r.URL.Query()
	after, err := eventsAfter(r)
	if err != nil {
		return err
	}
	src := &eventSource{id: rec.ID, job: job, log: log}
	defer src.close()
	if rec.Spool && sup.SpoolDir() != "" {
		src.spoolPath = spool.Path(sup.SpoolDir(), rec.ID)
	}
	if job != nil { // an ended job's readers are bounded by the connections
		done, err := job.AddReader()
		if err != nil {
			return &httpError{Status: http.StatusTooManyRequests, Msg: err.Error(), RetryAfter: "5"}
		}
		defer done()
		if end := job.EndSeq(); end != 0 && after >= end {
			w.WriteHeader(http.StatusNoContent) // nothing more will come
			return nil
		}
		// An ended job's ring may be let go already (its events are then
		// its spool's): only a running job's last event bounds after. The
		// end is read again after the position: it is set before a ring
		// is let go.
		if pos := job.Position(after); after > pos.Last && job.EndSeq() == 0 {
			return errorf(http.StatusBadRequest, "after %d is past the job's last event %d", after, pos.Last)
		}
	} else if src.spoolPath == "" {
		return errorf(http.StatusGone, "job %s has ended and kept no spool: its events are gone (its record: GET /api/v1/jobs/%s)", rec.ID, rec.ID)
	}
	accept := r.Header.Get("Accept")
	if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/event-stream") {
		wait := longPollWait
		if v := q.Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errorf(http.StatusBadRequest, "wait=%q: want a duration such as 25s", v)
			}
			wait = min(d, longPollMaxWait)
		}
		return longPoll(w, r, src, after, wait)
	}
	// The first batch before the answer's status: a stream from the end
	// on is 204, and a job gone without a spool 410.
	ctx, cancel := context.WithTimeout(r.Context(), 0)
	first, err := src.next(ctx, after, longPollBytes)
	cancel()
	if errors.Is(err, errEventsEnded) {
		w.WriteHeader(http.StatusNoContent) // nothing more will come
		return nil
	}
	if status := eventsStatus(err, rec.ID); status != nil {
		return status
	}
	if job != nil { // a stream that keeps up reads a batch job's ring alone
		src.hold = job.HoldEvents(after)
		defer src.hold.Release()
	}
	sse(w, r, log, src, after, first)
	return nil
}

// eventsStatus is the answer, before any event, to an error of
// eventSource.next other than errEventsEnded (204): nil when events may
// still come.
func eventsStatus(err error, id string) error {
	switch {
	case errors.Is(err, errEventsGone):
		return errorf(http.StatusGone, "job %s is gone and its remaining events with it: %v", id, err)
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return nil
}

// eventsAfter is where a reader starts: Last-Event-ID (an EventSource
// reconnecting) or ?after=, else from the first event.
func eventsAfter(r *http.Request) (uint64, error) {
	v, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, what = r.URL.Query().Get("after"), "after"
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "%s %q: want the seq of the last event you have", what, v)
	}
	return n, nil
}

var (
	// errEventsEnded: a reader has every event through the job's end.
	errEventsEnded = errors.New("no events after the job's end")
	// errEventsGone: the job is gone with events a reader has yet to
	// get, and no spool keeps them.
	errEventsGone = errors.New("the job's events are no longer kept")
)

// wireEvent is one event as HTTP readers get it.
type wireEvent struct {
	seq  uint64 // a gap's: its last
	name string // stdout, stderr, exit or gap
	obj  []byte // its chimirror.v1 object
}

// eventSource is where an HTTP reader's events come from: the job's ring
// while the job is in the table, and its spool, when it keeps one, for
// what the ring no longer holds: events evicted before the reader came
// for them (a ring evicts an event only once it is spooled), and every
// event once the job is gone. Without a spool an evicted event is a gap.
type eventSource struct {
	id        string
	job       *supervisor.Job // nil once the job is gone: spool only
	spoolPath string          // "": the job keeps no spool
	log       *slog.Logger
	hold      *supervisor.EventHold // a stream's: moved as it asks for more (nil: none)

	// The spool once the job is gone, read on from where the last batch
	// stopped: the file no longer changes.
	sf       *spool.File
	pull     func() (spool.Event, error, bool)
	stopPull func()
	pulled   *spool.Event // read, not yet sent: the next batch's first

	// While the job runs, the spool for the events its ring let go
	// (gapFromSpool): kept open and read on while the reader's batches
	// follow each other, opened again (a newer snapshot) only when its
	// snapshot has no more. Opening it costs a read of every event's
	// header before after: a reader that stays behind the ring would pay
	// that per batch otherwise.
	gap      *eventSource
	gapAfter uint64 // the seq of the last event gap gave
}

func (src *eventSource) close() {
	if src.gap != nil {
		src.gap.close()
		src.gap = nil
	}
	if src.stopPull != nil {
		src.stopPull()
	}
	if src.sf != nil {
		if err := src.sf.Close(); err != nil {
			src.log.Debug("close spool", "job", src.id, "err", err)
		}
	}
}

// next waits, until ctx is done, for the events after after, and returns
// them: at least one, and the ones already there behind it up to maxBytes
// of their encoding. It returns ctx's error, errEventsEnded when after is the job's
// end or later, and errEventsGone when the events are gone.
func (src *eventSource) next(ctx context.Context, after uint64, maxBytes int) ([]wireEvent, error) {
	if src.hold != nil {
		src.hold.Move(after)
	}
	if src.job != nil {
		evs, err := src.fromRing(ctx, after, maxBytes)
		if !errors.Is(err, supervisor.ErrNoJob) {
			return evs, err
		}
		if end := src.job.EndSeq(); end != 0 && after >= end {
			return nil, errEventsEnded
		}
		src.job = nil // gone since: its spool has the rest
	}
	if src.spoolPath == "" {
		return nil, fmt.Errorf("%w: job %s ended without a spool", errEventsGone, src.id)
	}
	if src.pull == nil {
		sf, err := spool.Open(src.spoolPath)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: job %s's spool was pruned (spool_retention)", errEventsGone, src.id)
		}
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", src.id, err) // a 500: not the client's to see
		}
		src.sf = sf
		src.pull, src.stopPull = iter.Pull2(sf.EventsAfter(after))
	}
	evs, err := src.readSpool(maxBytes, 0)
	if err == nil && len(evs) == 0 {
		in, ierr := src.sf.Info()
		switch {
		case ierr != nil:
			err = ierr
		case in.Exit != nil:
			err = errEventsEnded
		default: // lost with its server, or its spool failed
			err = fmt.Errorf("%w: job %s's spool ends at event %d without its exit", errEventsGone, src.id, in.LastSeq)
		}
	}
	return evs, err
}

// readSpool takes the pulled spool's events, up to maxBytes of data (at
// least one), and none past upTo when it is not 0.
func (src *eventSource) readSpool(maxBytes int, upTo uint64) ([]wireEvent, error) {
	var out []wireEvent
	size := 0
	for size < maxBytes || len(out) == 0 {
		var ev spool.Event
		if src.pulled != nil {
			ev, src.pulled = *src.pulled, nil
		} else {
			e, err, ok := src.pull()
			if !ok {
				break
			}
			if err != nil {
				return out, fmt.Errorf("job %s: %w", src.id, err)
			}
			ev = e
		}
		if upTo != 0 && ev.Seq > upTo {
			ev.Payload = bytes.Clone(ev.Payload)
			src.pulled = &ev
			break
		}
		we, err := spoolWire(ev)
		if err != nil {
			return out, fmt.Errorf("job %s: %w", src.id, err)
		}
		out = append(out, we)
		size += len(we.obj)
		if ev.Kind == spool.KindExit {
			break
		}
	}
	return out, nil
}

// fromRing reads the events after after from the job's ring; see next.
// Events the ring has evicted come from the spool (then one batch of
// them alone), or as a gap.
func (src *eventSource) fromRing(ctx context.Context, after uint64, maxBytes int) ([]wireEvent, error) {
	ev, err := src.job.Events(ctx, after)
	if err != nil {
		return nil, err
	}
	var out []wireEvent
	if ev.Seq > after+1 {
		upTo := ev.Seq - 1
		if src.spoolPath != "" {
			evs, err := src.gapFromSpool(after, upTo, maxBytes)
			if err == nil {
				ev.Release()
				return evs, nil
			}
			// The spool failed (and its floor was lifted): what it
			// does not hold is a gap, as for a job with no spool.
			src.log.Warn("events evicted from the ring are not in the spool: a gap", "job", src.id, "from", after+1, "to", upTo, "err", err)
		}
		out = append(out, wireEvent{seq: upTo, name: "gap", obj: appendGapEvent(nil, [2]uint64{after + 1, upTo})})
	}
	size := 0
	done, cancel := context.WithCancel(ctx)
	cancel() // the events already there, without waiting
	for {
		we, err := ringWire(ev)
		size += len(we.obj)
		ended := ev.Exit != nil
		seq := ev.Seq
		ev.Release()
		if err != nil {
			return out, err
		}
		out = append(out, we)
		if ended || size >= maxBytes {
			return out, nil
		}
		next, err := src.job.Events(done, seq)
		if err != nil {
			return out, nil // nothing more now (or the job is gone: the next batch says so)
		}
		if next.Seq != seq+1 { // a gap: the next batch fills it
			next.Release()
			return out, nil
		}
		ev = next
	}
}

// gapFromSpool reads the events after after, up to upTo, from the spool:
// a running job's ring evicted them, having spooled them first. The spool
// stays open for the next batch (src.gap).
func (src *eventSource) gapFromSpool(after, upTo uint64, maxBytes int) ([]wireEvent, error) {
	if src.gap != nil && src.gapAfter != after { // the reader went elsewhere since
		src.gap.close()
		src.gap = nil
	}
	for opened := false; !opened; {
		if src.gap == nil {
			if src.job != nil { // what its spool writer gathered is then in the file
				src.job.FlushSpool()
			}
			sf, err := spool.Open(src.spoolPath)
			if err != nil {
				return nil, fmt.Errorf("job %s: events %d…%d evicted from the ring: %w", src.id, after+1, upTo, err)
			}
			pull, stop := iter.Pull2(sf.EventsAfter(after))
			src.gap, opened = &eventSource{id: src.id, sf: sf, pull: pull, stopPull: stop, log: src.log}, true
		}
		evs, err := src.gap.readSpool(maxBytes, upTo)
		if len(evs) > 0 && err == nil {
			src.gapAfter = evs[len(evs)-1].seq
			return evs, nil
		}
		src.gap.close() // failed, or its snapshot has no more: open a newer one
		src.gap = nil
		if err != nil {
			return evs, err
		}
	}
	return nil, fmt.Errorf("job %s: events %d…%d evicted from the ring are not in its spool", src.id, after+1, upTo)
}

// ringWire encodes a ring event.
func ringWire(ev supervisor.Event) (wireEvent, error) {
	if ev.Exit != nil {
		obj, err := appendExitEvent(nil, ev.Seq, *ev.Exit)
		return wireEvent{seq: ev.Seq, name: "exit", obj: obj}, err
	}
	return wireEvent{seq: ev.Seq, name: ev.Stream.String(), obj: appendOutputEvent(outputEventBuf(len(ev.Data)), ev.Stream, ev.Seq, ev.Data)}, nil
}

// outputEventBuf is an empty buffer for the chimirror.v1 object of n bytes
// of output: room for text with an escape every 16 bytes, or base64, so
// that encoding a big chunk does not grow (and copy) the object again and
// again.
func outputEventBuf(n int) []byte { return make([]byte, 0, n+n/3+96) }

// spoolWire encodes a spool event as its ring event was.
func spoolWire(ev spool.Event) (wireEvent, error) {
	switch ev.Kind {
	case spool.KindStdout, spool.KindStderr:
		s := supervisor.Stdout
		if ev.Kind == spool.KindStderr {
			s = supervisor.Stderr
		}
		return wireEvent{seq: ev.Seq, name: s.String(), obj: appendOutputEvent(outputEventBuf(len(ev.Payload)), s, ev.Seq, ev.Payload)}, nil
	case spool.KindExit:
		e := ev.Exit
		d, err := json.Marshal(exitMap(e.Code, e.Signal, e.Reason, e.Detail))
		if err != nil {
			return wireEvent{}, fmt.Errorf("encode /exit: %w", err)
		}
		obj := append([]byte(`{"event":"/exit","seq":`), strconv.FormatUint(ev.Seq, 10)...)
		obj = append(append(append(obj, `,"data":`...), d...), '}')
		return wireEvent{seq: ev.Seq, name: "exit", obj: obj}, nil
	}
	return wireEvent{}, fmt.Errorf("spool event %d of unknown kind %q", ev.Seq, ev.Kind)
}

func appendGapEvent(dst []byte, gap [2]uint64) []byte {
	dst = append(dst, `{"event":"/gap","data":{"from":`...)
	dst = strconv.AppendUint(dst, gap[0], 10)
	dst = append(dst, `,"to":`...)
	dst = strconv.AppendUint(dst, gap[1], 10)
	return append(dst, `}}`...)
}

// longPoll answers the events after after as a JSON array; see above.
func longPoll(w http.ResponseWriter, r *http.Request, src *eventSource, after uint64, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	evs, err := src.next(ctx, after, longPollBytes)
	if r.Context().Err() != nil {
		return nil // the client left
	}
	if errors.Is(err, errEventsEnded) {
		w.WriteHeader(http.StatusNoContent) // nothing more will come
		return nil
	}
	if status := eventsStatus(err, src.id); status != nil {
		return status
	}
	out := []byte{'['}
	for i, ev := range evs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, ev.obj...)
	}
	out = append(out, "]\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if err := writeDeadline(http.NewResponseController(w), eventWriteTimeout); err != nil {
		return nil // the connection is gone
	}
	if _, err := w.Write(out); err != nil {
		src.log.Debug("long-poll: client gone", "job", src.id, "err", err)
	}
	return nil
}

// sse streams the events after after, first the batch given, as
// Server-Sent Events until the job's end is sent, its events are gone,
// or the client leaves. Each write has a deadline, so a client that stops
// reading is dropped.
func sse(w http.ResponseWriter, r *http.Request, log *slog.Logger, src *eventSource, after uint64, evs []wireEvent) {
	log = log.With("job", src.id, "remote", clientHost(r))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	// Each batch's writes have a deadline: bw writes through once full.
	deadline := func() error { return writeDeadline(rc, eventWriteTimeout) }
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	for {
		if err := deadline(); err != nil {
			return
		}
		ended := false
		for _, ev := range evs {
			if err := writeSSEEvent(bw, ev.seq, ev.name, ev.obj); err != nil {
				return
			}
			after, ended = ev.seq, ev.name == "exit"
		}
		if err := flush(); err != nil {
			log.Debug("sse: client gone", "err", err)
			return
		}
		if ended {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), sseKeepAlive)
		var err error
		evs, err = src.next(ctx, after, longPollBytes)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			if _, err := bw.WriteString(": keep-alive\n\n"); err != nil {
				return
			}
		case errors.Is(err, errEventsGone):
			// The job is gone with events this client had yet to read.
			data, jerr := json.Marshal(map[string]string{"error": err.Error()})
			if jerr != nil {
				log.Error("sse: encode gone", "err", jerr)
				return
			}
			if deadline() != nil {
				return
			}
			if err := writeSSEEvent(bw, after, "gone", data); err != nil {
				return
			}
			if err := flush(); err != nil {
				log.Debug("sse: client gone", "err", err)
			}
			return
		case errors.Is(err, errEventsEnded):
			return
		case err != nil:
			if r.Context().Err() == nil {
				log.Warn("sse: reading events", "err", err)
			}
			return
		}
	}
}

// writeSSEEvent writes one Server-Sent Event to w, data straight from
// the event's encoding (no copy of it into a line). data is one line of
// JSON (JSON escapes every newline in a string).
func writeSSEEvent(w *bufio.Writer, id uint64, name string, data []byte) error {
	var head [64]byte
	h := append(head[:0], "id: "...)
	h = strconv.AppendUint(h, id, 10)
	h = append(h, "\nevent: "...)
	h = append(h, name...)
	h = append(h, "\ndata: "...)
	if _, err := w.Write(h); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.WriteString("\n\n")
	return err
}

package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

// Live events, QuickIO-style: the console's WebSocket speaks chimirror.v1
// ({"event", "data", "callback"}), subscribes to "/jobs", and then gets
//
//	/jobs/started  a job's record, when it starts
//	/jobs/usage    [{id, live}] for every running job, each EventEvery
//	/jobs/ended    a job's final record, when it ends
//
// Starts and ends come from the supervisor's hooks, so every job that
// starts or ends while one is subscribed is reported, however short it
// is, and its /jobs/started comes before its /jobs/ended. A job that
// started before the subscription gets only its /jobs/ended. A /jobs/usage
// batch is a snapshot: it may name a job whose /jobs/started is still on
// its way, or one whose /jobs/ended came just before it. The answer to
// /subscribe comes before any event it brings, and no event follows the
// answer to /unsubscribe. State lives with the server: a client that
// (re)subscribes re-reads the lists through the API.
//
// The hooks queue each event for every /jobs subscriber at once, without
// waiting: Started and Ended on the job's goroutine, Usage each EventEvery
// on the supervisor's goroutine for this hub's subscription (it does
// nothing while nobody listens). Each subscriber has a bounded queue; one
// that falls behind by subBuffer events is disconnected, never waited for,
// so a subscriber still connected has missed nothing. The Admin owns the
// subscription; Close ends it.
type hub struct {
	log         *slog.Logger
	unsubscribe func() // the supervisor's hooks

	mu        sync.Mutex
	subs      map[*subscriber]bool
	listeners atomic.Int32 // subscribers to /jobs; changed under mu
	closed    bool
}

const subBuffer = 64

type subscriber struct {
	c      *wsConn
	remote string // the client's address, behind trusted proxies the real one
	send   chan []byte
	gone   chan struct{} // closed once, by drop
	once   sync.Once
	jobs   bool // subscribed to /jobs; guarded by hub.mu
}

// newHub makes a hub fed by sup's hooks, with a usage batch each every.
// close ends it.
func newHub(log *slog.Logger, sup *supervisor.Supervisor, every time.Duration) *hub {
	h := &hub{log: log, subs: make(map[*subscriber]bool)}
	h.unsubscribe = sup.Subscribe(supervisor.Hooks{Started: h.started, Ended: h.ended,
		Usage: h.usage, UsageEvery: every})
	return h
}

// started is the supervisor's Started hook.
func (h *hub) started(info supervisor.JobInfo, rec accounting.Record) {
	if h.listeners.Load() == 0 {
		return
	}
	h.broadcast("/jobs/started", runningJSON(rec, info))
}

// ended is the supervisor's Ended hook.
func (h *hub) ended(_ supervisor.JobInfo, _ supervisor.Exit, rec accounting.Record) {
	if h.listeners.Load() == 0 {
		return
	}
	h.broadcast("/jobs/ended", jobJSON{Record: rec})
}

// runningJSON is a running job's record with its traffic so far and its
// live usage.
func runningJSON(rec accounting.Record, info supervisor.JobInfo) jobJSON {
	rec.Traffic = info.Counters.Traffic()
	return jobJSON{Record: rec, Live: liveOf(info)}
}

// usageJSON is one running job's entry in /jobs/usage.
type usageJSON struct {
	ID   string    `json:"id"`
	Live *liveJSON `json:"live"`
}

// usage is the supervisor's Usage hook: a batch while anyone listens.
func (h *hub) usage(running func() []supervisor.JobInfo) {
	if h.listeners.Load() == 0 {
		return // idle: no work, whatever the number of jobs
	}
	jobs := running()
	usage := make([]usageJSON, 0, len(jobs))
	for _, j := range jobs {
		usage = append(usage, usageJSON{ID: j.ID, Live: liveOf(j)})
	}
	h.broadcast("/jobs/usage", usage)
}

// setJobs subscribes s to /jobs, or unsubscribes it.
func (h *hub) setJobs(s *subscriber, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.subs[s] || s.jobs == on { // dropped, or no change
		return
	}
	s.jobs = on
	if on {
		h.listeners.Add(1)
	} else {
		h.listeners.Add(-1)
	}
}

// eventJSON is one chimirror.v1 message from the server.
type eventJSON struct {
	Event string `json:"event"`
	Data  any    `json:"data"`
}

// broadcast queues one event for every /jobs subscriber, never waiting:
// one whose queue is full is dropped. It runs in the hooks. The event is
// encoded before the lock is taken: a usage batch for thousands of jobs
// takes a while, and subscribers come and go meanwhile.
func (h *hub) broadcast(event string, data any) {
	msg, err := json.Marshal(eventJSON{Event: event, Data: data})
	if err != nil {
		h.log.Error("encode event", "event", event, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.jobs {
			continue
		}
		select {
		case s.send <- msg:
		default:
			h.log.Info("events: subscriber too slow; disconnected", "remote", s.remote)
			h.dropLocked(s)
		}
	}
}

// add registers s; it reports false once the hub is closed.
func (h *hub) add(s *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.subs[s] = true
	return true
}

// drop disconnects s; it may be called more than once.
func (h *hub) drop(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(s)
}

func (h *hub) dropLocked(s *subscriber) {
	if h.subs[s] && s.jobs {
		s.jobs = false
		h.listeners.Add(-1)
	}
	delete(h.subs, s)
	s.once.Do(func() { close(s.gone) })
}

// close disconnects every subscriber and leaves the supervisor's hooks
// (waiting for a usage batch under way).
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for s := range h.subs {
		h.dropLocked(s)
	}
	h.mu.Unlock()
	h.unsubscribe()
}

var eventsUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	Subprotocols:     []string{ProtoV1},
	// nil CheckOrigin: the Origin's host must equal Host (same origin).
}

// eventsReadLimit bounds a subscriber's message: its requests are a few
// bytes of JSON.
const eventsReadLimit = 4096

// events serves one subscriber: this goroutine reads its requests, a
// writer goroutine (waited for here) sends what the hub queues. The
// socket is a wsConn with the job sockets' keepalive and write timeout.
// Once upgraded, the response is gone: failures are logged, not returned.
func (a *Admin) events(w http.ResponseWriter, r *http.Request, _ string) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return errorf(http.StatusUpgradeRequired, "/api/v1/events is a WebSocket (sub-protocol %s)", ProtoV1)
	}
	ws, err := eventsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // gorilla has answered
	}
	lim := DefaultLimits()
	lim.MaxMessageBytes = eventsReadLimit
	s := &subscriber{c: newWSConn(ws, nil, a.log, lim), remote: r.RemoteAddr, send: make(chan []byte, subBuffer), gone: make(chan struct{})}
	h := a.hub
	if !h.add(s) { // the Admin is closing
		if err := s.c.Close(); err != nil {
			a.log.Debug("close events socket", "err", err)
		}
		return nil
	}
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		writeErr = s.writeLoop(h)
	}()
	readErr := s.readLoop(h)
	h.drop(s)
	wg.Wait() // the writer has closed the socket
	// readLoop ends only on an error: the client's close frame, or worse.
	if !closedNormally(readErr) {
		a.log.Debug("events subscriber left", "err", readErr)
	}
	if writeErr != nil {
		a.log.Debug("events socket", "err", writeErr)
	}
	return nil
}

// closedNormally reports whether err is the client's close frame saying it
// is done (1000) or leaving (1001). wsConn.read wraps it, so errors.As,
// not websocket.IsCloseError.
func closedNormally(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway)
}

// writeLoop sends what is queued until the subscriber is dropped, then
// closes the socket, which unblocks the reader. A write that fails drops
// the subscriber too, which unblocks a reader waiting to queue an answer.
func (s *subscriber) writeLoop(h *hub) error {
	for {
		select {
		case <-s.gone:
			if err := s.c.Close(); err != nil {
				return fmt.Errorf("close: %w", err)
			}
			return nil
		case msg := <-s.send:
			if err := s.c.write(websocket.TextMessage, msg); err != nil {
				h.drop(s)
				err = fmt.Errorf("send event: %w", err)
				if cerr := s.c.Close(); cerr != nil {
					err = errors.Join(err, fmt.Errorf("close: %w", cerr))
				}
				return err
			}
		}
	}
}

// readLoop applies the subscriber's requests until it goes. Answers go
// through the same queue as events, so they arrive in order: a
// subscription starts after its answer is queued, an unsubscription before.
// As on a job's socket, an event with callback 0 (or none) is not answered.
func (s *subscriber) readLoop(h *hub) error {
	for {
		_, p, err := s.c.read()
		if err != nil {
			return err
		}
		var ev v1Event
		on, answer := false, json.Unmarshal(p, &ev)
		if answer != nil {
			answer = fmt.Errorf("not a chimirror.v1 event: %w", answer)
		} else {
			on, answer = request(ev)
		}
		if answer == nil && !on {
			h.setJobs(s, false)
		}
		if ev.Callback != 0 {
			msg, err := json.Marshal(eventJSON{Event: "/callback", Data: callbackOf(ev.Callback, answer)})
			if err != nil {
				return fmt.Errorf("encode /callback: %w", err)
			}
			select {
			case s.send <- msg:
			case <-s.gone:
				return errors.New("subscriber dropped")
			}
		}
		if answer == nil && on {
			h.setJobs(s, true)
		}
	}
}

// request reads one /subscribe (on) or /unsubscribe; the error is the
// client's answer.
func request(ev v1Event) (on bool, err error) {
	var path string // data that is not a string names no subscription
	if len(ev.Data) > 0 && json.Unmarshal(ev.Data, &path) != nil {
		path = ""
	}
	switch {
	case ev.Event == "/subscribe" && path == "/jobs":
		return true, nil
	case ev.Event == "/unsubscribe" && path == "/jobs":
		return false, nil
	case ev.Event == "/subscribe" || ev.Event == "/unsubscribe":
		return false, errors.New("unknown subscription " + string(ev.Data) + ": the only one is \"/jobs\"")
	default:
		return false, errors.New("unknown event " + ev.Event + ": use /subscribe or /unsubscribe")
	}
}

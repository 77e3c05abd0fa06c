package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// Live events, QuickIO-style: the console's WebSocket speaks chimirror.v1
// ({"event", "data", "callback"}), subscribes to "/jobs", and then gets
//
//	/jobs/started  a job's record, when it starts
//	/jobs/usage    [{id, live}] for every running job, each EventEvery
//	/jobs/ended    a job's final record, when it ends
//
// State lives with the server: a client that reconnects subscribes again
// and re-reads the lists through the API.
//
// One hub goroutine (owned by the Admin, stopped by Close) watches the
// session table and fans events out. Each subscriber has a bounded queue;
// one that falls behind by subBuffer events is disconnected, never waited
// for.
type hub struct {
	log   *slog.Logger
	sup   *supervisor.Supervisor
	every time.Duration
	rec   func(id string) (jobJSON, bool) // a running job's record
	ended func(id string) (jobJSON, bool) // an ended job's final record

	mu     sync.Mutex
	subs   map[*subscriber]bool
	closed bool

	stop chan struct{}
	done chan struct{}
}

const subBuffer = 64

type subscriber struct {
	c     *wsConn
	send  chan []byte
	gone  chan struct{} // closed once, by drop
	once  sync.Once
	jobs  bool      // subscribed to /jobs; guarded by hub.mu
	subAt time.Time // when it subscribed; guarded by hub.mu
}

// newHub starts a hub that looks records up with rec (running jobs) and
// ended (ended ones). Close stops it.
func newHub(log *slog.Logger, sup *supervisor.Supervisor, every time.Duration,
	rec, ended func(id string) (jobJSON, bool)) *hub {
	h := &hub{log: log, sup: sup, every: every, rec: rec, ended: ended, subs: make(map[*subscriber]bool),
		stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

// usageJSON is one running job's entry in /jobs/usage.
type usageJSON struct {
	ID   string    `json:"id"`
	Live *liveJSON `json:"live"`
}

func (h *hub) run() {
	defer close(h.done)
	t := time.NewTicker(h.every)
	defer t.Stop()
	var known map[string]bool // nil while nobody listens
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		since, ok := h.listening()
		if !ok {
			known = nil // idle: no work, no garbage, whatever the number of jobs
			continue
		}
		jobs := h.sup.Jobs()
		if known == nil { // jobs older than the subscription: it re-reads the list itself
			known = make(map[string]bool, len(jobs))
			for _, j := range jobs {
				if j.Started.Before(since) {
					known[j.ID] = true
				}
			}
		}
		now := make(map[string]bool, len(jobs))
		usage := make([]usageJSON, 0, len(jobs))
		for _, j := range jobs {
			now[j.ID] = true
			if !known[j.ID] {
				if rec, ok := h.rec(j.ID); ok {
					h.broadcast("/jobs/started", rec)
				}
			}
			usage = append(usage, usageJSON{ID: j.ID, Live: liveOf(j)})
		}
		for id := range known {
			if !now[id] {
				if rec, ok := h.ended(id); ok {
					h.broadcast("/jobs/ended", rec)
				}
			}
		}
		known = now
		h.broadcast("/jobs/usage", usage)
	}
}

// listening reports whether any subscriber wants /jobs events, and since
// when the earliest of them does.
func (h *hub) listening() (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var since time.Time
	ok := false
	for s := range h.subs {
		if s.jobs && (!ok || s.subAt.Before(since)) {
			since, ok = s.subAt, true
		}
	}
	return since, ok
}

// eventJSON is one chimirror.v1 message from the server.
type eventJSON struct {
	Event string `json:"event"`
	Data  any    `json:"data"`
}

// broadcast sends one event to every /jobs subscriber. It is encoded
// before the lock is taken: a usage batch for thousands of jobs takes a
// while, and subscribers come and go meanwhile.
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
			h.log.Info("events: subscriber too slow; disconnected", "remote", s.c.ws.RemoteAddr())
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
	delete(h.subs, s)
	s.once.Do(func() { close(s.gone) })
}

// close disconnects every subscriber and stops the hub goroutine.
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
	close(h.stop)
	<-h.done
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
	s := &subscriber{c: newWSConn(ws, nil, a.log, lim), send: make(chan []byte, subBuffer), gone: make(chan struct{})}
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
	if readErr != nil && !closedNormally(readErr) {
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
// through the same queue as events, so they arrive in order. As on a job's
// socket, an event with callback 0 (or none) is not answered.
func (s *subscriber) readLoop(h *hub) error {
	for {
		_, p, err := s.c.read()
		if err != nil {
			return err
		}
		var ev v1Event
		answer := json.Unmarshal(p, &ev)
		if answer != nil {
			answer = fmt.Errorf("not a chimirror.v1 event: %w", answer)
		} else {
			answer = s.request(h, ev)
		}
		if ev.Callback == 0 {
			continue
		}
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
}

// request applies one /subscribe or /unsubscribe; the error is the
// client's answer.
func (s *subscriber) request(h *hub, ev v1Event) error {
	var path string // data that is not a string names no subscription
	if len(ev.Data) > 0 && json.Unmarshal(ev.Data, &path) != nil {
		path = ""
	}
	switch {
	case ev.Event == "/subscribe" && path == "/jobs":
		h.mu.Lock()
		if !s.jobs {
			s.jobs, s.subAt = true, time.Now()
		}
		h.mu.Unlock()
	case ev.Event == "/unsubscribe" && path == "/jobs":
		h.mu.Lock()
		s.jobs = false
		h.mu.Unlock()
	case ev.Event == "/subscribe" || ev.Event == "/unsubscribe":
		return errors.New("unknown subscription " + string(ev.Data) + ": the only one is \"/jobs\"")
	default:
		return errors.New("unknown event " + ev.Event + ": use /subscribe or /unsubscribe")
	}
	return nil
}

package web

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
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
	ws    *websocket.Conn
	send  chan []byte
	gone  chan struct{} // closed once, by drop
	once  sync.Once
	jobs  bool      // subscribed to /jobs; guarded by hub.mu
	subAt time.Time // when it subscribed; guarded by hub.mu
}

func newHub(log *slog.Logger, sup *supervisor.Supervisor, every time.Duration) *hub {
	return &hub{log: log, sup: sup, every: every, subs: make(map[*subscriber]bool),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the hub's goroutine; the Admin calls it once its lookups are set.
func (h *hub) start() { go h.run() }

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
		usage := make([]map[string]any, 0, len(jobs))
		for _, j := range jobs {
			now[j.ID] = true
			if !known[j.ID] {
				if rec, ok := h.rec(j.ID); ok {
					h.broadcast("/jobs/started", rec)
				}
			}
			usage = append(usage, map[string]any{"id": j.ID, "live": liveOf(j)})
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

// broadcast sends one event to every /jobs subscriber. It is encoded
// before the lock is taken: a usage batch for thousands of jobs takes a
// while, and subscribers come and go meanwhile.
func (h *hub) broadcast(event string, data any) {
	msg, err := json.Marshal(map[string]any{"event": event, "data": data})
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
			h.log.Info("events: subscriber too slow; disconnected", "remote", s.ws.RemoteAddr())
			h.dropLocked(s)
		}
	}
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

// eventsPing keeps idle event sockets alive and finds dead ones.
const eventsPing = 20 * time.Second

// events serves one subscriber: this goroutine reads its requests, a
// writer goroutine (waited for here) sends what the hub queues.
func (a *Admin) events(w http.ResponseWriter, r *http.Request, _ string) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return apiErrorf(http.StatusUpgradeRequired, "/api/v1/events is a WebSocket (sub-protocol %s)", ProtoV1)
	}
	ws, err := eventsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // gorilla has answered
	}
	ws.SetReadLimit(4096)
	s := &subscriber{ws: ws, send: make(chan []byte, subBuffer), gone: make(chan struct{})}
	h := a.hub
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ws.Close()
	}
	h.subs[s] = true
	h.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.writeLoop(h)
	}()
	readErr := s.readLoop(h)
	h.mu.Lock()
	h.dropLocked(s)
	h.mu.Unlock()
	wg.Wait()
	closeErr := ws.Close()
	if readErr != nil && !websocket.IsCloseError(readErr, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
		a.log.Debug("events subscriber left", "err", readErr)
	}
	if closeErr != nil && !errors.Is(closeErr, net.ErrClosed) {
		a.log.Debug("close events socket", "err", closeErr)
	}
	return nil
}

// writeLoop sends what is queued until the subscriber is dropped. A
// write that fails drops it too, which unblocks a reader waiting to queue
// an answer.
func (s *subscriber) writeLoop(h *hub) {
	ping := time.NewTicker(eventsPing)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-s.gone:
			// Unblock the reader too: the connection is done. The handler
			// closes it again and reports that error.
			s.ws.Close()
			return
		case msg := <-s.send:
			if err = s.ws.SetWriteDeadline(time.Now().Add(10 * time.Second)); err == nil {
				err = s.ws.WriteMessage(websocket.TextMessage, msg)
			}
		case <-ping.C:
			err = s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
		}
		if err != nil {
			h.mu.Lock()
			h.dropLocked(s)
			h.mu.Unlock()
			s.ws.Close() // unblocks the reader; the handler reports the close
			return
		}
	}
}

// readLoop applies the subscriber's requests until it goes. Answers go
// through the same queue as events, so they arrive in order.
func (s *subscriber) readLoop(h *hub) error {
	if err := s.ws.SetReadDeadline(time.Now().Add(2 * eventsPing)); err != nil {
		return err
	}
	s.ws.SetPongHandler(func(string) error { return s.ws.SetReadDeadline(time.Now().Add(2 * eventsPing)) })
	for {
		_, p, err := s.ws.ReadMessage()
		if err != nil {
			return err
		}
		if err := s.ws.SetReadDeadline(time.Now().Add(2 * eventsPing)); err != nil {
			return err
		}
		var in struct {
			Event    string          `json:"event"`
			Data     json.RawMessage `json:"data"`
			Callback *int64          `json:"callback"`
		}
		var answer error
		if err := json.Unmarshal(p, &in); err != nil {
			answer = errors.New("not a chimirror.v1 event: " + err.Error())
		} else {
			var path string
			if len(in.Data) > 0 {
				if err := json.Unmarshal(in.Data, &path); err != nil {
					path = ""
				}
			}
			switch {
			case in.Event == "/subscribe" && path == "/jobs":
				h.mu.Lock()
				if !s.jobs {
					s.jobs, s.subAt = true, time.Now()
				}
				h.mu.Unlock()
			case in.Event == "/unsubscribe" && path == "/jobs":
				h.mu.Lock()
				s.jobs = false
				h.mu.Unlock()
			case in.Event == "/subscribe" || in.Event == "/unsubscribe":
				answer = errors.New("unknown subscription " + string(in.Data) + ": the only one is \"/jobs\"")
			default:
				answer = errors.New("unknown event " + in.Event + ": use /subscribe or /unsubscribe")
			}
		}
		if in.Callback == nil {
			continue
		}
		cb := map[string]any{"callback": *in.Callback, "ok": answer == nil}
		if answer != nil {
			cb["error"] = answer.Error()
		}
		msg, err := json.Marshal(map[string]any{"event": "/callback", "data": cb})
		if err != nil {
			return err
		}
		select {
		case s.send <- msg:
		case <-s.gone:
			return errors.New("subscriber dropped")
		}
	}
}

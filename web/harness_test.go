package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

// testServer is a real chimirror server on loopback: real supervisor, real
// processes, real HTTP. Its supervisor shares the test binary's runner, so
// several may run at once.
type testServer struct {
	t   *testing.T
	URL string // ws://127.0.0.1:PORT
	sup *supervisor.Supervisor
	srv *Server
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServer runs a server with a real ledger in a fresh directory. Its
// cleanup, after shutdown, checks the ledger: consistent (bbolt's check),
// no record left starting or running, and every job given an ID recorded.
func startServer(t *testing.T, cfg supervisor.Config, opts Options) *testServer {
	t.Helper()
	log := testLogger(t)
	if cfg.Ledger == nil {
		l, err := accounting.Open(filepath.Join(t.TempDir(), "ledger.db"), accounting.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Ledger = l
		t.Cleanup(func() { checkLedger(t, l) }) // runs after the shutdown below
	}
	if cfg.Runner == nil {
		cfg.Runner = testRunner
	}
	sup, err := supervisor.New(log, cfg)
	if err != nil {
		t.Fatalf("supervisor: %v", err)
	}
	srv := New(log, sup, opts)
	// The server as chimirror serve runs it: its edge and timeouts.
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = srv.HTTPServer()
	ts.Listener = opts.Edge.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := sup.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return &testServer{t: t, URL: "ws" + strings.TrimPrefix(ts.URL, "http"), sup: sup, srv: srv}
}

func checkLedger(t *testing.T, l *accounting.Ledger) {
	t.Helper()
	if err := l.Check(); err != nil {
		t.Errorf("ledger check: %v", err)
	}
	open, err := l.OpenRecords()
	if err != nil {
		t.Error(err)
	}
	for _, r := range open {
		t.Errorf("ledger: %s left %s", r.ID, r.State)
	}
	st, err := l.Stats()
	if err != nil {
		t.Error(err)
	}
	if st.LastID != "" {
		n, err := accounting.ParseID(st.LastID)
		if err != nil {
			t.Errorf("ledger: last ID: %v", err)
		}
		for i := uint64(1); i <= n; i++ {
			if _, _, err := l.Get(accounting.FormatID(i)); err != nil {
				t.Errorf("ledger: %v", err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("close ledger: %v", err)
	}
}

// shApp is an app running a shell script.
func shApp(name, script string) supervisor.App {
	return supervisor.App{Name: name, Path: "/bin/sh", Args: []string{"sh", "-c", script},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}}
}

func (s *testServer) dial(path string, protos ...string) *websocket.Conn {
	s.t.Helper()
	ws, err := s.tryDial(path, nil, protos...)
	if err != nil {
		s.t.Fatalf("dial %s: %v", path, err)
	}
	s.t.Cleanup(func() { ws.Close() })
	return ws
}

// dialJob starts a chimirror.v1 job at path and returns it with its ID,
// read from the /job event.
func (s *testServer) dialJob(path string) (*websocket.Conn, string) {
	s.t.Helper()
	ws := s.dial(path, ProtoV1)
	_, first, err := ws.ReadMessage()
	if err != nil {
		s.t.Fatalf("read /job: %v", err)
	}
	var job struct{ Data struct{ ID string } }
	jsonUnmarshal(s.t, first, &job)
	return ws, job.Data.ID
}

func (s *testServer) tryDial(path string, hdr http.Header, protos ...string) (*websocket.Conn, error) {
	return s.dialWith(websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 5 * time.Second}, path, hdr)
}

// dialWith dials path with d; a refusal is a *dialError.
func (s *testServer) dialWith(d websocket.Dialer, path string, hdr http.Header) (*websocket.Conn, error) {
	ws, resp, err := d.Dial(s.URL+path, hdr)
	if err != nil && resp != nil {
		return nil, &dialError{status: resp.StatusCode, header: resp.Header, err: err}
	}
	return ws, err
}

type dialError struct {
	status int
	header http.Header
	err    error
}

func (e *dialError) Error() string { return e.err.Error() }

// event is one chimirror.v1 message as a client sees it.
type event struct {
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data"`
	Encoding string          `json:"encoding"`
}

func (e event) bytes(t *testing.T) []byte {
	t.Helper()
	var s string
	if err := json.Unmarshal(e.Data, &s); err != nil {
		t.Fatalf("%s data: %v", e.Event, err)
	}
	if e.Encoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%s base64: %v", e.Event, err)
		}
		return b
	}
	return []byte(s)
}

type exitData struct {
	Code   int     `json:"code"`
	Signal *string `json:"signal"`
	Reason string  `json:"reason"`
	Detail string  `json:"detail"`
}

// session collects a chimirror.v1 session until the server closes it.
type session struct {
	events    []event
	stdout    []byte
	stderr    []byte
	exit      *exitData
	closeCode int
	closeText string
}

func readSession(t *testing.T, ws *websocket.Conn, timeout time.Duration) session {
	t.Helper()
	var s session
	if err := ws.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("session read: %v (events so far: %d)", err, len(s.events))
			}
			s.closeCode, s.closeText = ce.Code, ce.Text
			return s
		}
		var ev event
		if err := json.Unmarshal(msg, &ev); err != nil {
			t.Fatalf("bad event %q: %v", msg, err)
		}
		s.events = append(s.events, ev)
		switch ev.Event {
		case "/stdout":
			s.stdout = append(s.stdout, ev.bytes(t)...)
		case "/stderr":
			s.stderr = append(s.stderr, ev.bytes(t)...)
		case "/exit":
			var x exitData
			if err := json.Unmarshal(ev.Data, &x); err != nil {
				t.Fatal(err)
			}
			s.exit = &x
		}
	}
}

func sendEvent(t *testing.T, ws *websocket.Conn, event string, data any, callback int) {
	t.Helper()
	m := map[string]any{"event": event, "data": data}
	if callback != 0 {
		m["callback"] = callback
	}
	if err := ws.WriteJSON(m); err != nil {
		t.Fatalf("send %s: %v", event, err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidGone reports whether pid no longer exists, not even as a zombie.
func pidGone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

func jsonUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// subscribeJobs opens the admin events socket, subscribes to /jobs and
// returns once the subscription is confirmed.
func subscribeJobs(t *testing.T, s *adminServer) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{ProtoV1}, HandshakeTimeout: 5 * time.Second}
	ev, resp, err := d.Dial("ws"+strings.TrimPrefix(s.admin.URL, "http")+"/api/v1/events",
		http.Header{"Authorization": {"Bearer " + adminSecret}})
	if err != nil {
		t.Fatalf("dial events: %v %v", err, resp)
	}
	t.Cleanup(func() { ev.Close() })
	if err := ev.WriteJSON(map[string]any{"event": "/subscribe", "data": "/jobs", "callback": 1}); err != nil {
		t.Fatal(err)
	}
	if err := ev.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		_, m, err := ev.ReadMessage()
		if err != nil {
			t.Fatalf("await the subscription: %v", err)
		}
		var e event
		jsonUnmarshal(t, m, &e)
		if e.Event != "/callback" {
			continue // a usage batch, say
		}
		var cb struct{ OK bool }
		jsonUnmarshal(t, e.Data, &cb)
		if !cb.OK {
			t.Fatalf("subscribe: %s", e.Data)
		}
		return ev
	}
}

// runBlink runs one job of app "blink" through the public endpoint to its
// end and returns its ID, from the /job event.
func runBlink(s *adminServer) (string, error) {
	ws, err := s.tryDial("/apps/blink", nil, ProtoV1)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	if err := ws.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	id := ""
	for {
		_, m, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if id == "" {
				return "", errors.New("closed before /job")
			}
			return id, nil
		}
		if err != nil {
			return id, err
		}
		var e struct {
			Event string
			Data  struct{ ID string }
		}
		if err := json.Unmarshal(m, &e); err != nil {
			return id, err
		}
		if e.Event == "/job" {
			id = e.Data.ID
		}
	}
}

// Ensure that every job reaches the live feed, however short: 200 jobs of
// about a millisecond each, started while a subscriber listens, give it
// exactly 200 /jobs/started and 200 /jobs/ended, each job's start before
// its end, with the IDs the jobs' clients were told.
func TestEvents_EveryShortJob(t *testing.T) {
	t.Parallel()
	const jobs, workers = 200, 4
	s := startAdmin(t, supervisor.Config{Drain: 300 * time.Millisecond, Apps: []supervisor.App{
		{Name: "blink", Path: "/bin/true", Args: []string{"true"}},
	}})
	ev := subscribeJobs(t, s)

	// The subscriber reads on this goroutine while the jobs run: it must
	// keep up, or the hub disconnects it.
	ids := make(chan string, jobs)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < jobs; i += workers {
				id, err := runBlink(s)
				if err != nil {
					t.Errorf("job %d: %v", i, err)
					return
				}
				ids <- id
			}
		})
	}
	defer wg.Wait()

	started := make(map[string]int, jobs) // how many /jobs/started per job
	ended := make(map[string]int, jobs)
	deadline := time.Now().Add(30 * time.Second)
	for len(ended) < jobs {
		if err := ev.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		_, m, err := ev.ReadMessage()
		if err != nil {
			t.Fatalf("after %d started and %d ended of %d jobs: %v", len(started), len(ended), jobs, err)
		}
		var e event
		jsonUnmarshal(t, m, &e)
		var rec struct{ ID, State string }
		switch e.Event {
		case "/jobs/started":
			jsonUnmarshal(t, e.Data, &rec)
			if ended[rec.ID] > 0 {
				t.Errorf("%s: /jobs/started after /jobs/ended", rec.ID)
			}
			started[rec.ID]++
		case "/jobs/ended":
			jsonUnmarshal(t, e.Data, &rec)
			if started[rec.ID] == 0 {
				t.Errorf("%s: /jobs/ended before /jobs/started", rec.ID)
			}
			if rec.State != "finished" {
				t.Errorf("%s: /jobs/ended with state %q", rec.ID, rec.State)
			}
			ended[rec.ID]++
		}
	}
	wg.Wait()
	close(ids)
	clients := make(map[string]bool, jobs)
	for id := range ids {
		clients[id] = true
	}
	for id := range clients {
		if started[id] != 1 || ended[id] != 1 {
			t.Errorf("%s: %d /jobs/started, %d /jobs/ended; want 1 each", id, started[id], ended[id])
		}
	}
	if len(started) != jobs || len(ended) != jobs || len(clients) != jobs {
		t.Errorf("%d jobs told their clients, %d started, %d ended; want %d each", len(clients), len(started), len(ended), jobs)
	}
}

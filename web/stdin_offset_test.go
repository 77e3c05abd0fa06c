package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// Ensure numbered stdin (/stdin with "offset") is taken once: input sent
// again after a cut writes only the bytes past what the job took, input
// wholly taken writes nothing, input past it is refused as a gap, a
// negative offset is refused, unnumbered stdin does not move the count,
// and a reattaching client's /job says how much the job took.
func TestNumberedStdin(t *testing.T) {
	t.Parallel()
	app := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}, Policy: resumePolicy(time.Minute, 64<<10)}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{app}}, Options{})
	ws, id := s.dialJob("/apps/cat")
	// next reads to the next event named one of names, and returns it.
	next := func(ws *websocket.Conn, names ...string) v1Obj {
		t.Helper()
		if err := ws.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for %v: %v", names, err)
			}
			var o v1Obj
			jsonUnmarshal(t, msg, &o)
			for _, n := range names {
				if o.Event == n {
					return o
				}
			}
		}
	}
	for _, tc := range []struct {
		name   string
		event  map[string]any
		ok     bool
		errHas string
		out    string // what the job writes back, "" for nothing
	}{
		{"first", map[string]any{"data": "abc", "offset": 0}, true, "", "abc"},
		{"sent again with more", map[string]any{"data": "abcdef", "offset": 0}, true, "", "def"},
		{"wholly taken", map[string]any{"data": "def", "offset": 3}, true, "", ""},
		{"past what was taken", map[string]any{"data": "x", "offset": 10}, false, "numbered stdin past what the job has taken", ""},
		{"negative", map[string]any{"data": "x", "offset": -1}, false, "negative", ""},
		{"unnumbered", map[string]any{"data": "g"}, true, "", "g"},
		{"numbered on after it", map[string]any{"data": "h", "offset": 6}, true, "", "h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := map[string]any{"event": "/stdin", "callback": 7}
			for k, v := range tc.event {
				ev[k] = v
			}
			if err := ws.WriteJSON(ev); err != nil {
				t.Fatal(err)
			}
			var cb *v1Obj
			out := ""
			for cb == nil || len(out) < len(tc.out) { // the echo may come before the answer
				ev := next(ws, "/callback", "/stdout")
				if ev.Event == "/callback" {
					cb = &ev
				} else {
					out += stringOf(ev.Data)
				}
			}
			data, _ := cb.Data.(map[string]any)
			if ok, _ := data["ok"].(bool); ok != tc.ok || !strings.Contains(stringOf(data["error"]), tc.errHas) {
				t.Fatalf("callback %v, want ok %v with %q", cb.Data, tc.ok, tc.errHas)
			}
			if out != tc.out {
				t.Fatalf("the job wrote %q, want %q", out, tc.out)
			}
		})
	}
	j, err := s.sup.Attachable(id)
	if err != nil {
		t.Fatal(err)
	}
	ws2, err := s.tryDial("/jobs/"+id+"/attach?after=3", http.Header{headerResume: {j.ResumeToken()}}, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	job := next(ws2, "/job")
	if taken, _ := job.Data.(map[string]any)["stdin_taken"].(float64); taken != 7 {
		t.Fatalf("a reattaching client's /job %v: want stdin_taken 7", job.Data)
	}
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

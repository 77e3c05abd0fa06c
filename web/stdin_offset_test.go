package web

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// Ensure numbered stdin (/stdin with "stream" and "offset") is taken once
// per stream: input sent again after a cut writes only the bytes past what
// the job took of its stream, input wholly taken writes nothing, input
// past it is refused as a gap, a stream of another client session counts
// on its own (sessions taking turns at a job), and malformed numbering is
// refused; unnumbered stdin is written as it comes.
func TestNumberedStdin(t *testing.T) {
	t.Parallel()
	app := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}, Policy: resumePolicy(time.Minute, 64<<10)}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{app}}, Options{})
	ws, _ := s.dialJob("/apps/cat")
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
		{"first", map[string]any{"data": "abc", "stream": "A", "offset": 0}, true, "", "abc"},
		{"sent again with more", map[string]any{"data": "abcdef", "stream": "A", "offset": 0}, true, "", "def"},
		{"wholly taken", map[string]any{"data": "def", "stream": "A", "offset": 3}, true, "", ""},
		{"past what was taken", map[string]any{"data": "x", "stream": "A", "offset": 10}, false, "numbered stdin past what the job has taken", ""},
		{"another session's stream", map[string]any{"data": "uvw", "stream": "B", "offset": 0}, true, "", "uvw"},
		{"the first stream on", map[string]any{"data": "g", "stream": "A", "offset": 6}, true, "", "g"},
		{"the other sent again", map[string]any{"data": "uvwxyz", "stream": "B", "offset": 0}, true, "", "xyz"},
		{"unnumbered", map[string]any{"data": "h"}, true, "", "h"},
		{"offset without a stream", map[string]any{"data": "x", "offset": 0}, false, `"stream" and "offset" go together`, ""},
		{"a stream without an offset", map[string]any{"data": "x", "stream": "A"}, false, `"stream" and "offset" go together`, ""},
		{"negative", map[string]any{"data": "x", "stream": "A", "offset": -1}, false, "negative", ""},
		{"a long stream name", map[string]any{"data": "x", "stream": strings.Repeat("s", 65), "offset": 0}, false, "more than 64", ""},
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
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

package web

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// Ensure a spooled job's spool numbers its events with the seqs its
// chimirror.v1 client saw: every /stdout, /stderr and /exit event is in
// the spool with its seq, stream and bytes, and EventsAfter(N) returns
// exactly the client's events after N.
func TestSpool_SeqsAreTheClientsSeqs(t *testing.T) {
	t.Parallel()
	app := shApp("both", `i=0; while [ $i -lt 300 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; printf 'é'; exit 4`)
	app.Policy = &policies.Policy{Name: "spooled", Spool: true}
	s := startServer(t, supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{app}}, Options{})
	ws, id := s.dialJob("/apps/both")
	type seen struct {
		kind spool.Kind
		data []byte
	}
	got := map[uint64]seen{}
	var last uint64
	if err := ws.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read after seq %d: %v", last, err)
		}
		var ev struct {
			Event string `json:"event"`
			Seq   uint64 `json:"seq"`
			event
		}
		jsonUnmarshal(t, msg, &ev)
		ev.event.Event = ev.Event
		var k spool.Kind
		switch ev.Event {
		case "/stdout":
			k = spool.KindStdout
		case "/stderr":
			k = spool.KindStderr
		case "/exit":
			k = spool.KindExit
		default:
			continue
		}
		if ev.Seq != last+1 {
			t.Fatalf("%s seq %d after %d", ev.Event, ev.Seq, last)
		}
		last = ev.Seq
		if k == spool.KindExit {
			got[ev.Seq] = seen{kind: k, data: ev.Data}
			break
		}
		got[ev.Seq] = seen{kind: k, data: ev.event.bytes(t)}
	}
	if rec := s.waitEnded(id); !rec.Spool {
		t.Fatalf("record %+v: want spooled", rec)
	}
	sf, err := s.sup.OpenSpool(id)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	for _, after := range []uint64{0, last / 2, last - 1, last} {
		want := after + 1
		for ev, err := range sf.EventsAfter(after) {
			if err != nil {
				t.Fatal(err)
			}
			c, ok := got[ev.Seq]
			if ev.Seq != want || !ok || ev.Kind != c.kind {
				t.Fatalf("after %d: spool event %d (%c), want %d as the client saw it (%c)", after, ev.Seq, ev.Kind, want, c.kind)
			}
			if ev.Kind == spool.KindExit {
				var x exitData
				if err := json.Unmarshal(c.data, &x); err != nil {
					t.Fatal(err)
				}
				if ev.Exit == nil || ev.Exit.Code != x.Code || ev.Exit.Code != 4 || ev.Exit.Reason != x.Reason {
					t.Fatalf("spool's exit %+v, client's %+v", ev.Exit, x)
				}
			} else if !bytes.Equal(ev.Payload, c.data) {
				t.Fatalf("event %d: spool %q, client %q", ev.Seq, ev.Payload, c.data)
			}
			want++
		}
		if want != last+1 {
			t.Fatalf("after %d: the spool ended before seq %d; the client's last was %d", after, want, last)
		}
	}
}

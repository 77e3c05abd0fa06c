package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/cutproxy"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
)

// resumePolicy is a policy that lets jobs detach for detach.
func resumePolicy(detach time.Duration, replay int64) *policies.Policy {
	return &policies.Policy{Name: "resume", DetachTimeout: detach, ReplayBytes: replay, Grace: time.Second,
		ExitSignal: policies.DefaultExitSignal}
}

// numbered is the output of the "numbered" app: lines numbered 1…n.
func numbered(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%012d the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()
}

func numberedApp(name string, n int, pol *policies.Policy) supervisor.App {
	a := shApp(name, fmt.Sprintf(`exec awk 'BEGIN { for (i = 1; i <= %d; i++) printf "%%012d the quick brown fox jumps over the lazy dog\n", i }'`, n))
	a.Policy = pol
	return a
}

// v1Client reads a chimirror.v1 job's events across connections as a
// resuming client does: it checks that seqs run on by one, acknowledges
// every half ring of message bytes, and hashes stdout.
type v1Client struct {
	t        *testing.T
	id       string
	resume   string
	replay   int64
	last     uint64 // seq of the last event taken
	unacked  int64  // message bytes since the last /ack
	sum      hash.Hash
	n        int64 // stdout bytes
	exit     *exitData
	gaps     int
	noAck    bool
	messages int
}

func newV1Client(t *testing.T) *v1Client { return &v1Client{t: t, sum: sha256.New()} }

// read takes ws's events until the job's end (true) or the connection
// fails (false), after stopAfter stdout bytes in all (0: no stop).
func (c *v1Client) read(ws *websocket.Conn, stopAfter int64) bool {
	c.t.Helper()
	if !c.noAck {
		if err := ws.WriteJSON(map[string]any{"event": "/ack", "data": map[string]uint64{"seq": c.last}}); err != nil {
			return false
		}
	}
	for {
		if stopAfter > 0 && c.n >= stopAfter {
			return false
		}
		ws.SetReadDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
		_, msg, err := ws.ReadMessage()
		if err != nil {
			if _, ok := err.(*websocket.CloseError); ok && c.exit != nil {
				return true
			}
			return false
		}
		c.messages++
		var ev struct {
			Event    string          `json:"event"`
			Seq      uint64          `json:"seq"`
			Data     json.RawMessage `json:"data"`
			Encoding string          `json:"encoding"`
		}
		jsonUnmarshal(c.t, msg, &ev)
		switch ev.Event {
		case "/job":
			var j struct {
				ID          string `json:"id"`
				Resume      string `json:"resume"`
				ReplayBytes int64  `json:"replay_bytes"`
			}
			jsonUnmarshal(c.t, ev.Data, &j)
			c.id, c.replay = j.ID, j.ReplayBytes
			if j.Resume != "" {
				c.resume = j.Resume
			}
			continue
		case "/gap":
			c.gaps++
			continue
		case "/stdout", "/stderr", "/exit":
		default:
			continue
		}
		if ev.Seq != c.last+1 {
			c.t.Fatalf("%s seq %d after %d: a gap or a duplicate", ev.Event, ev.Seq, c.last)
		}
		c.last = ev.Seq
		if ev.Event == "/exit" {
			var x exitData
			jsonUnmarshal(c.t, ev.Data, &x)
			c.exit = &x
		} else if ev.Event == "/stdout" {
			b := event{Event: ev.Event, Data: ev.Data, Encoding: ev.Encoding}.bytes(c.t)
			c.sum.Write(b)
			c.n += int64(len(b))
		}
		c.unacked += int64(len(msg))
		if !c.noAck && c.replay > 0 && c.unacked >= c.replay/2 {
			if err := ws.WriteJSON(map[string]any{"event": "/ack", "data": map[string]uint64{"seq": c.last}}); err != nil {
				return false
			}
			c.unacked = 0
		}
	}
}

// attach reattaches c's job at base (ws://host:port) after c.last.
func (c *v1Client) attach(base string, extra string) (*websocket.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{ProtoV1}, HandshakeTimeout: 5 * time.Second}
	hdr := http.Header{headerResume: {c.resume}}
	if !c.noAck {
		hdr.Set(headerAck, "1")
	}
	ws, resp, err := d.Dial(fmt.Sprintf("%s/jobs/%s/attach?after=%d%s", base, c.id, c.last, extra), hdr)
	if err != nil && resp != nil {
		return nil, &dialError{status: resp.StatusCode, header: resp.Header, err: err}
	}
	return ws, err
}

// Ensure a client whose connection is cut twice mid-stream, with no close
// frame, and that reattaches with its last seq each time, gets exactly
// the program's 50 MB: same checksum, seqs running on by one (no gap, no
// duplicate).
func TestResumeByteExact(t *testing.T) {
	// Not parallel: 57 MB through the server would skew the heap that
	// parallel tests measure.
	const lines = 1_000_000 // 57 MB
	want := numbered(lines)
	var e ends
	pol := resumePolicy(time.Minute, 0)
	s := startServer(t, supervisor.Config{OnEnd: e.hook, Apps: []supervisor.App{numberedApp("numbered", lines, pol)}}, Options{})
	p := cutproxy.New(t, strings.TrimPrefix(s.URL, "ws://"))
	d := websocket.Dialer{Subprotocols: []string{ProtoV1}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+p.Addr()+"/apps/numbered", http.Header{headerAck: {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := newV1Client(t)
	cuts := []int64{int64(len(want)) / 4, int64(len(want)) * 3 / 5}
	for i := 0; ; i++ {
		stop := int64(0)
		if i < len(cuts) {
			stop = cuts[i]
		}
		done := c.read(ws, stop)
		ws.Close()
		if done {
			break
		}
		if i >= len(cuts) {
			t.Fatalf("connection %d failed at %d bytes, not at a cut", i+1, c.n)
		}
		p.Cut() // the server sees a reset, never a close frame
		for attempt := 0; ; attempt++ {
			ws, err = c.attach("ws://"+p.Addr(), "")
			if err == nil {
				break
			}
			if attempt == 50 {
				t.Fatalf("reattach: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wsum := sha256.Sum256(want)
	if got := c.sum.Sum(nil); c.n != int64(len(want)) || !bytes.Equal(got, wsum[:]) {
		t.Fatalf("got %d bytes (sha256 %x), want %d (%x)", c.n, got, len(want), wsum)
	}
	if c.gaps != 0 {
		t.Fatalf("%d gaps", c.gaps)
	}
	if c.exit == nil || c.exit.Code != 0 || c.exit.Reason != "exit" {
		t.Fatalf("exit %+v", c.exit)
	}
	if x := e.wait(t, "numbered", 10*time.Second); x.Reason != supervisor.ReasonExit {
		t.Fatalf("end %+v", x)
	}
}

// procCPUTicks is a process's user+system CPU in clock ticks, and its state.
func procCPUTicks(t *testing.T, pid int) (int64, string) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, f[0]
}

// Ensure a detached job whose ring fills is held by back-pressure, not
// dropped: the program blocks on its full pipe using no CPU, the ring
// stays within replay_bytes and the server's heap stays flat, and a client
// that reattaches gets every byte.
func TestBackPressureNotLoss(t *testing.T) {
	// Not parallel: the heap measured is this test's.
	const lines = 200_000 // 11 MB
	want := numbered(lines)
	var e ends
	pol := resumePolicy(time.Minute, 64<<10)
	app := shApp("numbered", fmt.Sprintf(`echo $$ >&2; exec awk 'BEGIN { for (i = 1; i <= %d; i++) printf "%%012d the quick brown fox jumps over the lazy dog\n", i }'`, lines))
	app.Policy = pol
	s := startServer(t, supervisor.Config{OnEnd: e.hook, Apps: []supervisor.App{app}}, Options{})
	ws, err := s.tryDial("/apps/numbered", http.Header{headerAck: {"1"}}, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	c := newV1Client(t)
	// Take the /job and the pid, acknowledge nothing, and drop.
	var pid int
	for pid == 0 {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var ev event
		jsonUnmarshal(t, msg, &ev)
		switch ev.Event {
		case "/job":
			var j struct{ ID, Resume string }
			jsonUnmarshal(t, ev.Data, &j)
			c.id, c.resume = j.ID, j.Resume
		case "/stderr":
			pid, _ = strconv.Atoi(strings.TrimSpace(string(ev.bytes(t))))
		}
	}
	ws.UnderlyingConn().Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// The program blocks: its output stops growing and it sleeps.
	var out int64
	waitFor(t, 10*time.Second, "the program blocked on its pipe", func() bool {
		_, info, ok := s.sup.Record(c.id)
		if !ok {
			t.Fatal("job gone")
		}
		n := info.Counters.StdoutBytes
		stable := n == out && n > 0
		out = n
		time.Sleep(100 * time.Millisecond)
		return stable
	})
	t0, state := procCPUTicks(t, pid)
	time.Sleep(time.Second)
	t1, _ := procCPUTicks(t, pid)
	if state != "S" || t1-t0 > 2 {
		t.Fatalf("program state %s, %d CPU ticks in a second: want asleep, no CPU", state, t1-t0)
	}
	if out > 64<<10+2<<20 { // the ring, what the pump held, the pipe
		t.Fatalf("%d bytes read from a job with a 64 KiB ring nobody acknowledged", out)
	}
	if used := s.sup.ReplayMemoryUsed(); used > 64<<10 {
		t.Fatalf("rings hold %d bytes, more than the job's 64 KiB", used)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
		t.Fatalf("heap grew %d bytes while the job was held", grew)
	}
	// Reattach from the start: everything arrives.
	c.last = 0
	ws2, err := c.attach(s.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	if !c.read(ws2, 0) {
		t.Fatalf("reattached read failed after %d bytes", c.n)
	}
	wsum := sha256.Sum256(want)
	if got := c.sum.Sum(nil); c.n != int64(len(want)) || !bytes.Equal(got, wsum[:]) {
		t.Fatalf("got %d bytes (sha256 %x), want %d (%x)", c.n, got, len(want), wsum)
	}
	if c.gaps != 0 {
		t.Fatal("a gap in output nobody acknowledged")
	}
}

// Ensure the lifecycle of a detachable job: detach_timeout ends it with
// reason detached; close 1000 ends it at once; a take-over closes the old
// client with 4300; an ended job's end is settled by any close frame, not
// left waiting for detach_timeout.
func TestDetachLifecycle(t *testing.T) {
	t.Parallel()
	var e ends
	short := resumePolicy(300*time.Millisecond, 0)
	long := resumePolicy(time.Hour, 0)
	cat := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}, Policy: long}
	shortCat := supervisor.App{Name: "shortcat", Path: "/bin/cat", Args: []string{"cat"}, Policy: short}
	quick := shApp("quick", `echo hi; exit 3`)
	quick.Policy = long
	s := startServer(t, supervisor.Config{OnEnd: e.hook, Apps: []supervisor.App{cat, shortCat, quick}}, Options{})

	t.Run("detach_timeout expires", func(t *testing.T) {
		ws, id := s.dialJob("/apps/shortcat")
		ws.UnderlyingConn().Close() // no close frame
		x := e.wait(t, "shortcat", 10*time.Second)
		if x.Reason != supervisor.ReasonDetached {
			t.Fatalf("end %+v, want detached", x)
		}
		waitFor(t, 5*time.Second, "the record", func() bool {
			r, _, err := s.sup.Ledger().Get(id)
			return err == nil && r.Reason == "detached"
		})
	})
	t.Run("close 1000 ends the job at once", func(t *testing.T) {
		ws, _ := s.dialJob("/apps/cat")
		t0 := time.Now()
		if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
			t.Fatal(err)
		}
		x := e.wait(t, "cat", 10*time.Second)
		if x.Reason != supervisor.ReasonClientGone || time.Since(t0) > 5*time.Second {
			t.Fatalf("end %+v after %v, want client-gone at once", x, time.Since(t0))
		}
	})
	t.Run("a dropped client detaches, a take-over closes the old one", func(t *testing.T) {
		c := newV1Client(t)
		ws := s.dial("/apps/cat", ProtoV1)
		jobID, jobResume := readJob(t, ws)
		c.id, c.resume = jobID, jobResume
		ws2, err := c.attach(s.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		defer ws2.Close()
		ws.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		_, _, err = ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != CloseTakenOver {
			t.Fatalf("old client got %v, want close %d", err, CloseTakenOver)
		}
		sendEvent(t, ws2, "/stdin", "still here\n", 0)
		var got string
		for !strings.Contains(got, "still here") {
			ws2.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			_, msg, err := ws2.ReadMessage()
			if err != nil {
				t.Fatalf("new client: %v", err)
			}
			got += string(msg)
		}
		// Dropped without a close frame: the job runs on, detached.
		ws2.UnderlyingConn().Close()
		time.Sleep(200 * time.Millisecond)
		if _, _, ok := s.sup.Record(c.id); !ok {
			t.Fatal("a dropped client ended a job with detach_timeout")
		}
		ws3, err := c.attach(s.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := ws3.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
			t.Fatal(err)
		}
		if x := e.wait(t, "cat", 10*time.Second); x.Reason != supervisor.ReasonClientGone {
			t.Fatalf("end %+v", x)
		}
		ws3.Close()
	})
	t.Run("an ended job is settled by any close frame", func(t *testing.T) {
		for _, code := range []int{1000, 1001, 4999} {
			ws := s.dial("/apps/quick", ProtoV1)
			c := newV1Client(t)
			c.noAck = true
			// Read to the end, and answer the server's close with code.
			for c.exit == nil {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(msg), `"/exit"`) {
					c.exit = &exitData{}
				}
			}
			if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, "")); err != nil {
				t.Fatal(err)
			}
			ws.Close()
			waitFor(t, 5*time.Second, fmt.Sprintf("the job gone after close %d", code), func() bool { return s.sup.Running() == 0 })
		}
	})
	t.Run("a job that ended detached hands its end to a reattach", func(t *testing.T) {
		ws, err := s.tryDial("/apps/quick", http.Header{headerAck: {"1"}}, ProtoV1)
		if err != nil {
			t.Fatal(err)
		}
		c := newV1Client(t)
		jobID, jobResume := readJob(t, ws)
		c.id, c.resume = jobID, jobResume
		// Acknowledge nothing, and drop: the output waits in the ring.
		ws.UnderlyingConn().Close()
		x := e.wait(t, "quick", 10*time.Second)
		if x.Status.Code != 3 {
			t.Fatalf("end %+v", x)
		}
		waitFor(t, 5*time.Second, "the end recorded at the exit", func() bool {
			r, _, err := s.sup.Ledger().Get(c.id)
			return err == nil && !r.State.Open()
		})
		ws2, err := c.attach(s.URL, "")
		if err != nil {
			var de *dialError
			errors.As(err, &de)
			t.Fatalf("%v: status %d", err, de.status)
		}
		defer ws2.Close()
		c.read(ws2, 0)
		if c.exit == nil || c.exit.Code != 3 || c.n != 3 {
			t.Fatalf("reattach got %d bytes, exit %+v", c.n, c.exit)
		}
		waitFor(t, 5*time.Second, "the job gone once its end was delivered", func() bool { return s.sup.Running() == 0 })
	})
}

// Ensure a watcher that falls behind is closed with 4301 while the job
// runs at full speed to its attached client, and that watchers are
// read-only.
func TestSlowWatcherDropped(t *testing.T) {
	// Not parallel: see TestResumeByteExact.
	const lines = 300_000 // 17 MB
	want := numbered(lines)
	var e ends
	pol := resumePolicy(time.Minute, 0)
	s := startServer(t, supervisor.Config{OnEnd: e.hook, Apps: []supervisor.App{numberedApp("numbered", lines, pol)}}, Options{})
	ws := s.dial("/apps/numbered", ProtoV1)
	c := newV1Client(t)
	c.noAck = true
	jobID, jobResume := readJob(t, ws)
	w := &v1Client{t: t, id: jobID, resume: jobResume}
	wws, err := w.attach(s.URL, "&watch=1")
	if err != nil {
		t.Fatal(err)
	}
	defer wws.Close()
	watcherEnd := make(chan error, 1)
	go func() {
		sendEvent(t, wws, "/stdin", "nope", 7)
		for {
			wws.SetReadDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
			_, _, err := wws.ReadMessage()
			if err != nil {
				watcherEnd <- err
				return
			}
			time.Sleep(20 * time.Millisecond) // a slow watcher
		}
	}()
	t0 := time.Now()
	if !c.read(ws, 0) {
		t.Fatalf("attached client failed after %d bytes", c.n)
	}
	elapsed := time.Since(t0)
	wsum := sha256.Sum256(want)
	if got := c.sum.Sum(nil); c.n != int64(len(want)) || !bytes.Equal(got, wsum[:]) {
		t.Fatalf("attached client got %d bytes, want %d", c.n, len(want))
	}
	select {
	case err := <-watcherEnd:
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != CloseTooSlow {
			t.Fatalf("watcher ended with %v, want close %d", err, CloseTooSlow)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow watcher never dropped")
	}
	// At 20ms a message, the watcher alone would take minutes.
	if elapsed > 60*time.Second {
		t.Fatalf("the job took %v with a slow watcher", elapsed)
	}
}

// Ensure reattaching takes the job's tenant and resume token: each wrong
// one has its documented status, and none attaches (the client attached
// stays).
func TestAttachRefusals(t *testing.T) {
	t.Parallel()
	alice, bob := "alice-secret-0123456789abcdef0123456789", "bob-secret-0123456789abcdef0123456789"
	pol := resumePolicy(time.Minute, 0)
	cat := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}, Policy: pol}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{cat},
		Tenants: []supervisor.Tenant{tenant("alice", alice, 0), tenant("bob", bob, 0)}}, Options{})
	ws, err := s.tryDial("/apps/cat", bearerHeader(alice), ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	jobID, jobResume := readJob(t, ws)
	id, token := jobID, jobResume
	if len(token) < 32 {
		t.Fatalf("resume token %q: too short for 128 bits", token)
	}
	hdr := func(tenantToken, resume string) http.Header {
		h := bearerHeader(tenantToken)
		if resume != "" {
			h.Set(headerResume, resume)
		}
		return h
	}
	tests := []struct {
		name   string
		path   string
		hdr    http.Header
		status int
	}{
		{"no tenant token", "/jobs/" + id + "/attach", http.Header{headerResume: {token}}, http.StatusUnauthorized},
		{"no resume token", "/jobs/" + id + "/attach", hdr(alice, ""), http.StatusUnauthorized},
		{"wrong resume token", "/jobs/" + id + "/attach", hdr(alice, strings.Repeat("A", len(token))), http.StatusForbidden},
		{"another tenant's", "/jobs/" + id + "/attach", hdr(bob, token), http.StatusNotFound},
		{"unknown job", "/jobs/JOB09999999/attach", hdr(alice, token), http.StatusNotFound},
		{"after past the end", "/jobs/" + id + "/attach?after=99", hdr(alice, token), http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.tryDial(tc.path, tc.hdr, ProtoV1)
			var de *dialError
			if !errors.As(err, &de) || de.status != tc.status {
				t.Fatalf("got %v, want HTTP %d", err, tc.status)
			}
		})
	}
	// The job's client is still the attached one.
	sendEvent(t, ws, "/stdin", "ping\n", 0)
	ws.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), "ping") {
		t.Fatalf("the attached client after the refusals: %q %v", msg, err)
	}
	// The right tenant and token attach, by ?resume= too.
	ws2, err := s.tryDial("/jobs/"+id+"/attach?resume="+token, bearerHeader(alice), ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	ws2.Close()
}

// Ensure the channel protocol numbers frames by an attach-time offset:
// a reattached connection's first frame is channel 7 with the seq of the
// next output frame.
func TestChannelResume(t *testing.T) {
	t.Parallel()
	pol := resumePolicy(time.Minute, 0)
	app := shApp("count", `for i in 1 2 3; do echo $i; sleep 0.05; done; read x; echo $x`)
	app.Policy = pol
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{app}}, Options{})
	d := websocket.Dialer{Subprotocols: []string{ProtoChannel}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(s.URL+"/apps/count", nil)
	if err != nil {
		t.Fatal(err)
	}
	id, token := resp.Header.Get(headerJob), resp.Header.Get(headerResume)
	if id == "" || token == "" {
		t.Fatalf("upgrade response without %s and %s", headerJob, headerResume)
	}
	var frames int
	var got []byte
	for !bytes.Contains(got, []byte("3\n")) {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		frames++
		got = append(got, m[1:]...)
	}
	ws.UnderlyingConn().Close()
	ws2, _, err := d.Dial(fmt.Sprintf("%s/jobs/%s/attach?after=%d", s.URL, id, frames), http.Header{headerResume: {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	_, m, err := ws2.ReadMessage()
	if err != nil || m[0] != chanResume {
		t.Fatalf("first frame %q %v, want channel 7", m, err)
	}
	var r struct{ Next uint64 }
	jsonUnmarshal(t, m[1:], &r)
	if r.Next != uint64(frames)+1 {
		t.Fatalf("next %d, want %d", r.Next, frames+1)
	}
	if err := ws2.WriteMessage(websocket.BinaryMessage, append([]byte{chanStdin}, "four\n"...)); err != nil {
		t.Fatal(err)
	}
	_, m, err = ws2.ReadMessage()
	if err != nil || m[0] != chanStdout || string(m[1:]) != "four\n" {
		t.Fatalf("after reattach got %q %v", m, err)
	}
}

func bearerHeader(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// readJob reads a chimirror.v1 job's first event, /job: its ID and resume
// token.
func readJob(t *testing.T, ws *websocket.Conn) (id, resume string) {
	t.Helper()
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var job struct{ Data struct{ ID, Resume string } }
	jsonUnmarshal(t, msg, &job)
	return job.Data.ID, job.Data.Resume
}

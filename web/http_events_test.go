package web

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// submitOpen submits a job of app with stdin left open and returns its ID
// and resume token.
func (s *testServer) submitOpen(app, token string) (id, resume string) {
	s.t.Helper()
	st, _, body := s.do(http.MethodPost, "/apps/"+app+"/jobs?stdin=open", token, nil, nil)
	if st != http.StatusCreated {
		s.t.Fatalf("submit %s: %d %s", app, st, body)
	}
	var ans struct{ ID, Resume, Events, Stdin string }
	jsonUnmarshal(s.t, body, &ans)
	if ans.Events != "/jobs/"+ans.ID+"/events" || ans.Stdin != "/jobs/"+ans.ID+"/stdin" || ans.Resume == "" {
		s.t.Fatalf("submit answer %s: want events and stdin URLs and a resume token", body)
	}
	return ans.ID, ans.Resume
}

// sseEv is one Server-Sent Event as a client parses it.
type sseEv struct {
	ID, Name, Data string
}

// sseStream is an open event stream.
type sseStream struct {
	resp *http.Response
	br   *bufio.Reader
}

// openSSE opens job id's event stream with hdr added.
func (s *testServer) openSSE(id, token, resume string, hdr http.Header) (*sseStream, int) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.httpBase()+"/jobs/"+id+"/events", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(headerResume, resume)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Fatalf("events: Content-Type %q", ct)
	}
	st := &sseStream{resp: resp, br: bufio.NewReader(resp.Body)}
	s.t.Cleanup(func() { resp.Body.Close() })
	return st, resp.StatusCode
}

// next reads the next event (comments skipped); io.EOF at the stream's end.
func (st *sseStream) next() (sseEv, error) {
	var ev sseEv
	for {
		line, err := st.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.Name != "" || ev.Data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		default:
			return ev, fmt.Errorf("unexpected line %q", line)
		}
	}
}

// v1Obj is an event object of the HTTP stream (chimirror.v1's).
type v1Obj struct {
	Event    string `json:"event"`
	Seq      uint64 `json:"seq"`
	Data     any    `json:"data"`
	Encoding string `json:"encoding"`
}

// Ensure the HTTP protocol runs a job end to end with no WebSocket: SSE
// events numbered as chimirror.v1's, stdin appended and closed, a resume
// after a cut from Last-Event-ID with no event twice and none missed, the
// stream ending after the exit, and 204 from the end on.
func TestHTTPEventsSSE(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("b", `while read l; do echo "got $l"; done; echo bye >&2; exit 4`),
	}, Tenants: []supervisor.Tenant{tenant("alice", aliceToken, 0)}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("b", aliceToken)
	post := func(path, body string) (int, []byte) {
		t.Helper()
		st, _, b := s.do(http.MethodPost, "/jobs/"+id+path, aliceToken, strings.NewReader(body), http.Header{headerResume: {resume}})
		return st, b
	}
	st, _ := s.openSSE(id, aliceToken, resume, nil)
	if code, b := post("/stdin", "a\nb\n"); code != http.StatusOK || !strings.Contains(string(b), `"stdin_bytes":4`) {
		t.Fatalf("stdin: %d %s", code, b)
	}
	// Output events may hold several lines (the pump reads what is
	// there): read until the text wanted is in.
	var out, text strings.Builder // the events; their data alone
	last, lastSeq := "", uint64(0)
	readUntil := func(st *sseStream, want string) {
		t.Helper()
		for !strings.Contains(text.String(), want) {
			ev, err := st.next()
			if err != nil {
				t.Fatalf("after %q: %v", out.String(), err)
			}
			var o v1Obj
			jsonUnmarshal(t, []byte(ev.Data), &o)
			if "/"+ev.Name != o.Event || ev.ID != strconv.FormatUint(o.Seq, 10) {
				t.Fatalf("event %+v: its id and name are not its object's %+v", ev, o)
			}
			if o.Seq != lastSeq+1 {
				t.Fatalf("event %d after %d: want each once, in order", o.Seq, lastSeq)
			}
			lastSeq, last = o.Seq, ev.ID
			if ev.Name == "exit" {
				m := o.Data.(map[string]any)
				fmt.Fprintf(&out, "exit %v %v|", m["code"], m["reason"])
				fmt.Fprintf(&text, "exit %v %v|", m["code"], m["reason"])
			} else {
				fmt.Fprintf(&out, "%s %s|", ev.Name, o.Data)
				text.WriteString(o.Data.(string))
			}
		}
	}
	readUntil(st, "got b\n")
	st.resp.Body.Close() // the cut
	if code, _ := post("/stdin", "c\n"); code != http.StatusOK {
		t.Fatalf("stdin after the cut: %d", code)
	}
	// The job's own ?after= is older: Last-Event-ID wins, as an
	// EventSource's reconnect sends it with the URL it started with.
	st, _ = s.openSSE(id, aliceToken, resume, http.Header{"Last-Event-ID": {last}})
	readUntil(st, "got c\n")
	if code, b := post("/stdin?close=1", ""); code != http.StatusOK {
		t.Fatalf("close stdin: %d %s", code, b)
	}
	readUntil(st, "exit 4 exit|")
	if got := strings.ReplaceAll(out.String(), "|stdout ", ""); got != "stdout got a\ngot b\ngot c\n|stderr bye\n|exit 4 exit|" {
		t.Fatalf("events %q", out.String())
	}
	if _, err := st.next(); err != io.EOF {
		t.Fatalf("after the exit: %v, want the stream's end", err)
	}
	rec := s.waitEnded(id)
	if rec.ExitCode == nil || *rec.ExitCode != 4 || rec.Traffic.StdinBytes != 6 {
		t.Fatalf("record %+v", rec)
	}
	// An EventSource reconnecting from the exit on is told to stop.
	if _, status := s.openSSE(id, aliceToken, resume, http.Header{"Last-Event-ID": {last}}); status != http.StatusNoContent {
		t.Fatalf("from the exit on: %d, want 204", status)
	}
}

// Ensure a long-poll answers at once when events are there, after wait
// with an empty array when none come, and the events after its after.
func TestHTTPLongPoll(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("b", `echo one; read l; echo "$l"`),
	}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("b", "")
	poll := func(after uint64, wait string) (int, []v1Obj, time.Duration) {
		t.Helper()
		start := time.Now()
		code, _, b := s.do(http.MethodGet, fmt.Sprintf("/jobs/%s/events?after=%d&wait=%s", id, after, wait), "", nil,
			http.Header{headerResume: {resume}, "Accept": {"application/json"}})
		var evs []v1Obj
		if code == http.StatusOK {
			jsonUnmarshal(t, b, &evs)
		}
		return code, evs, time.Since(start)
	}
	code, evs, _ := poll(0, "20s")
	if code != http.StatusOK || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Data != "one\n" {
		t.Fatalf("first poll: %d %+v", code, evs)
	}
	code, evs, took := poll(1, "300ms")
	if code != http.StatusOK || len(evs) != 0 || took < 300*time.Millisecond {
		t.Fatalf("empty poll: %d %+v after %v, want [] after the wait", code, evs, took)
	}
	// A poll waiting when the event comes answers with it, long before
	// its wait.
	go func() {
		time.Sleep(200 * time.Millisecond)
		s.do(http.MethodPost, "/jobs/"+id+"/stdin?close=1", "", strings.NewReader("two\n"), http.Header{headerResume: {resume}})
	}()
	code, evs, took = poll(1, "60s")
	if code != http.StatusOK || len(evs) == 0 || evs[0].Seq != 2 || evs[0].Data != "two\n" || took > 30*time.Second {
		t.Fatalf("waiting poll: %d %+v after %v", code, evs, took)
	}
}

// Ensure signal and DELETE reach the job, DELETE is recorded as the
// tenant's cancel, and each refusal has its documented status.
func TestHTTPSignalCancelRefusals(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("b", `trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done`),
	}, Tenants: []supervisor.Tenant{tenant("alice", aliceToken, 0), tenant("bob", bobToken, 0)}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("b", aliceToken)
	rh := http.Header{headerResume: {resume}}
	st, _ := s.openSSE(id, aliceToken, resume, nil)
	if ev, err := st.next(); err != nil || !strings.Contains(ev.Data, "ready") {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	for _, tc := range []struct {
		name, method, path, token string
		hdr                       http.Header
		status                    int
	}{
		{"no resume token", http.MethodPost, "/signal?signal=USR1", aliceToken, nil, http.StatusUnauthorized},
		{"wrong resume token", http.MethodPost, "/signal?signal=USR1", aliceToken, http.Header{headerResume: {"x" + resume}}, http.StatusForbidden},
		{"another tenant", http.MethodDelete, "", bobToken, rh, http.StatusNotFound},
		{"no tenant token", http.MethodDelete, "", "", rh, http.StatusUnauthorized},
		{"unknown job", http.MethodPost, "/../JOB999999/signal", aliceToken, rh, http.StatusNotFound},
		{"malformed job ID", http.MethodPost, "/../J999999/signal", aliceToken, rh, http.StatusBadRequest},
		{"bad signal", http.MethodPost, "/signal?signal=STOP", aliceToken, rh, http.StatusBadRequest},
		{"bad after", http.MethodGet, "/events?after=x", aliceToken, rh, http.StatusBadRequest},
		{"after past the last event", http.MethodGet, "/events?after=99", aliceToken, rh, http.StatusBadRequest},
		{"wrong method", http.MethodGet, "/stdin", aliceToken, rh, http.StatusMethodNotAllowed},
		{"bad close", http.MethodPost, "/stdin?close=yes", aliceToken, rh, http.StatusBadRequest},
		{"foreign origin", http.MethodDelete, "", aliceToken, http.Header{headerResume: {resume}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/jobs/" + id + tc.path
			if strings.HasPrefix(tc.path, "/..") {
				path = "/jobs/" + strings.TrimPrefix(tc.path, "/../")
			}
			if code, _, b := s.do(tc.method, path, tc.token, nil, tc.hdr); code != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, path, code, b, tc.status)
			}
		})
	}
	if code, _, b := s.do(http.MethodPost, "/jobs/"+id+"/signal", aliceToken, strings.NewReader("USR1\n"), rh); code != http.StatusNoContent {
		t.Fatalf("signal: %d %s", code, b)
	}
	// The signal goes to the job's process group: its sleep dies of it
	// too, and the shell may say so on stderr first.
	awaitStdout(t, st, "usr1")
	if code, _, b := s.do(http.MethodDelete, "/jobs/"+id, aliceToken, nil, rh); code != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	rec := s.waitEnded(id)
	if rec.Reason != string(supervisor.ReasonCancelled) || rec.CancelledBy != "tenant alice" || rec.State != accounting.StateFinished {
		t.Fatalf("record %+v: want cancelled by tenant alice", rec)
	}
	if code, _, _ := s.do(http.MethodPost, "/jobs/"+id+"/signal?signal=INT", aliceToken, nil, rh); code != http.StatusNotFound && code != http.StatusConflict {
		t.Fatalf("signal after the end: %d, want 404 or 409", code)
	}
}

// readAllSSE reads a stream to its end and returns its stdout bytes, the
// exit's code and the events' seqs, failing on a gap, a gone or a seq out
// of turn.
func readAllSSE(t *testing.T, st *sseStream, after uint64) (stdout []byte, code float64, last uint64) {
	t.Helper()
	last = after
	code = -1
	for {
		ev, err := st.next()
		if err == io.EOF {
			return stdout, code, last
		}
		if err != nil {
			t.Fatalf("after event %d: %v", last, err)
		}
		var o v1Obj
		jsonUnmarshal(t, []byte(ev.Data), &o)
		if ev.Name == "gap" || ev.Name == "gone" || o.Seq != last+1 {
			t.Fatalf("event %+v after %d: want each seq once, in order, and no gap", ev, last)
		}
		last = o.Seq
		switch ev.Name {
		case "stdout":
			stdout = append(stdout, o.Data.(string)...)
		case "exit":
			code = o.Data.(map[string]any)["code"].(float64)
		}
	}
}

// Ensure an HTTP reader misses nothing of a spooled job: events its ring
// evicted before the reader came are read from the spool, live ones from
// the ring, and once the job is gone the spool serves them all; from the
// end on the answer is 204. A job that kept no spool is 410 once gone.
func TestHTTPEventsFromSpool(t *testing.T) {
	t.Parallel()
	const lines = 40_000 // 2.2 MB: far more than the 64 KiB ring
	want := numbered(lines)
	pol := resumePolicy(0, 64<<10)
	pol.Batch = true
	half := fmt.Sprintf(`awk 'BEGIN { for (i = 1; i <= %d; i++) printf "%%012d the quick brown fox jumps over the lazy dog\n", i }'`, lines/2)
	rest := fmt.Sprintf(`awk 'BEGIN { for (i = %d; i <= %d; i++) printf "%%012d the quick brown fox jumps over the lazy dog\n", i }'`, lines/2+1, lines)
	b := shApp("b", half+`; read go; `+rest+`; exit 6`)
	b.Policy = pol
	plain := shApp("plain", `awk 'BEGIN { for (i = 1; i <= 5000; i++) print i }'; read x`)
	plain.Policy = resumePolicy(time.Minute, 4<<10)
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{b, plain}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("b", "")
	// Wait until the first half is spooled: the ring holds only its end.
	waitFor(t, 20*time.Second, "the first half spooled", func() bool {
		_, _, body := s.do(http.MethodGet, "/jobs/"+id+"/output?stream=stdout", "", nil, nil)
		return len(body) == len(want)/2
	})
	st, _ := s.openSSE(id, "", resume, nil)
	if code, _, b := s.do(http.MethodPost, "/jobs/"+id+"/stdin", "", strings.NewReader("go\n"), http.Header{headerResume: {resume}}); code != http.StatusOK {
		t.Fatalf("stdin: %d %s", code, b)
	}
	got, code, last := readAllSSE(t, st, 0)
	if !bytes.Equal(got, want) || code != 6 {
		t.Fatalf("live: %d bytes of %d (equal %v), exit %v", len(got), len(want), bytes.Equal(got, want), code)
	}
	s.waitEnded(id)
	// Gone: the spool serves it all, from the start or from anywhere.
	for _, after := range []uint64{0, last / 2} {
		st, status := s.openSSE(id, "", "", http.Header{"Last-Event-ID": {strconv.FormatUint(after, 10)}})
		if status != http.StatusOK {
			t.Fatalf("after the end, from %d: %d", after, status)
		}
		again, code, end := readAllSSE(t, st, after)
		if after == 0 && !bytes.Equal(again, want) || code != 6 || end != last {
			t.Fatalf("from the spool after %d: %d bytes, exit %v, last %d (want %d)", after, len(again), code, end, last)
		}
	}
	if _, status := s.openSSE(id, "", "", http.Header{"Last-Event-ID": {strconv.FormatUint(last, 10)}}); status != http.StatusNoContent {
		t.Fatalf("from the end: %d, want 204", status)
	}
	code2, _, body := s.do(http.MethodGet, fmt.Sprintf("/jobs/%s/events?after=%d", id, last-1), "", nil, http.Header{"Accept": {"application/json"}})
	if code2 != http.StatusOK || !strings.Contains(string(body), `"event":"/exit"`) {
		t.Fatalf("long-poll of a gone job: %d %s", code2, body)
	}
	// No spool: events the ring let go are a gap, and once the job is
	// gone its events are.
	ws, pid := s.dialJob("/apps/plain")
	var seen []byte
	for !bytes.HasSuffix(seen, []byte("\n5000\n")) {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var o v1Obj
		jsonUnmarshal(t, msg, &o)
		if o.Event == "/stdout" {
			seen = append(seen, o.Data.(string)...)
		}
	}
	pj, err := s.sup.Attachable(pid)
	if err != nil {
		t.Fatal(err)
	}
	plainResume := pj.ResumeToken()
	code3, _, body3 := s.do(http.MethodGet, "/jobs/"+pid+"/events?wait=0s", "", nil, http.Header{"Accept": {"application/json"}, headerResume: {plainResume}})
	var evs []v1Obj
	if code3 == http.StatusOK {
		jsonUnmarshal(t, body3, &evs)
	}
	if code3 != http.StatusOK || len(evs) < 2 || evs[0].Event != "/gap" || evs[1].Seq != uint64(evs[0].Data.(map[string]any)["to"].(float64))+1 {
		t.Fatalf("events of a ring that let events go: %d %s, want a gap, then the rest", code3, body3)
	}
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	s.waitEnded(pid)
	if code, _, body := s.do(http.MethodGet, "/jobs/"+pid+"/events", "", nil, nil); code != http.StatusGone {
		t.Fatalf("events of a gone job without a spool: %d %s, want 410", code, body)
	}
}

// Ensure a job that has ended, its end waiting for its detached client,
// holds no session of the caps: a new job starts at max_sessions 1.
func TestEndedDetachedJobHoldsNoSession(t *testing.T) {
	t.Parallel()
	quick := shApp("quick", `echo done`)
	quick.Policy = resumePolicy(time.Minute, 0)
	s := startServer(t, supervisor.Config{MaxSessions: 1, Apps: []supervisor.App{quick}}, Options{})
	ws, err := s.tryDial("/apps/quick", http.Header{headerAck: {"1"}}, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := readJob(t, ws)
	ws.UnderlyingConn().Close() // dropped: the job ends detached, its end undelivered
	waitFor(t, 10*time.Second, id+" ended", func() bool {
		r, _, err := s.sup.Ledger().Get(id)
		return err == nil && !r.State.Open()
	})
	if _, err := s.sup.Attachable(id); err != nil {
		t.Fatalf("%s: %v; want it still attachable, its end undelivered", id, err)
	}
	ws2, err := s.tryDial("/apps/quick", nil, ProtoV1)
	if err != nil {
		t.Fatalf("a new job beside an ended detached one, at max_sessions 1: %v", err)
	}
	ws2.Close()
}

// Ensure an event stream, a long-poll and a followed output outlive the
// server's read timeout (ReadHeaderTimeout + BodyTimeout, an absolute
// deadline on the connection that net/http arms for each request): a
// stream quiet past it still gets its next event.
func TestEventStreamsOutliveReadTimeout(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("b", `echo one; read l; echo "$l"`),
	}}
	s := startServer(t, cfg, Options{Edge: Edge{ReadHeaderTimeout: 100 * time.Millisecond, BodyTimeout: 100 * time.Millisecond}})
	id, resume := s.submitOpen("b", "")
	rh := http.Header{headerResume: {resume}}
	if code, _, body := s.do(http.MethodGet, "/jobs/"+id+"/events?wait=5s", "", nil, http.Header{headerResume: {resume}, "Accept": {"application/json"}}); code != http.StatusOK || !strings.Contains(string(body), "one") {
		t.Fatalf("first poll: %d %s", code, body)
	}
	code, _, body := s.do(http.MethodGet, "/jobs/"+id+"/events?after=1&wait=700ms", "", nil, http.Header{headerResume: {resume}, "Accept": {"application/json"}})
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("a long-poll past the read timeout: %d %q, want [] after its wait", code, body)
	}
	st, _ := s.openSSE(id, "", resume, http.Header{"Last-Event-ID": {"1"}})
	followed := make(chan []byte, 1)
	go func() {
		req, err := http.NewRequest(http.MethodGet, s.httpBase()+"/jobs/"+id+"/output?follow=1&stream=stdout", nil)
		if err != nil {
			followed <- []byte(err.Error())
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			followed <- []byte(err.Error())
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		followed <- b
	}()
	time.Sleep(700 * time.Millisecond) // quiet past the read timeout
	if code, _, b := s.do(http.MethodPost, "/jobs/"+id+"/stdin?close=1", "", strings.NewReader("two\n"), rh); code != http.StatusOK {
		t.Fatalf("stdin: %d %s", code, b)
	}
	ev, err := st.next()
	if err != nil || !strings.Contains(ev.Data, `"two\n"`) {
		t.Fatalf("the stream's event after a quiet spell: %+v, %v", ev, err)
	}
	if got := <-followed; string(got) != "one\ntwo\n" {
		t.Fatalf("followed output %q, want all of it", got)
	}
}

// Ensure a reader behind a running job's ring reads the evicted events
// from one open spool while its batches follow each other, opens a newer
// snapshot only when its own has no more, and starts over where a reader
// jumped to: every event once, in order.
func TestEventSource_GapFromSpoolKeepsSpoolOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := spool.Create(dir, "JOB00000001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(0, nil); err != nil {
			t.Error(err)
		}
	})
	appendEvents := func(from, to uint64) {
		t.Helper()
		for seq := from; seq <= to; seq++ {
			if err := w.Append(spool.KindStdout, seq, fmt.Appendf(nil, "%06d\n", seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendEvents(1, 10)
	src := &eventSource{id: "JOB00000001", spoolPath: spool.Path(dir, "JOB00000001")}
	t.Cleanup(src.close)
	batch := func(after, upTo uint64, wantFrom, wantTo uint64) *spool.File {
		t.Helper()
		evs, err := src.gapFromSpool(after, upTo, 80) // two events' encodings (45 bytes each) a batch
		if err != nil {
			t.Fatalf("gapFromSpool(%d, %d): %v", after, upTo, err)
		}
		var seqs []uint64
		for _, ev := range evs {
			seqs = append(seqs, ev.seq)
			if want := fmt.Sprintf(`{"event":"/stdout","seq":%d,"data":"%06d\n"}`, ev.seq, ev.seq); string(ev.obj) != want {
				t.Fatalf("event %d: %s, want %s", ev.seq, ev.obj, want)
			}
		}
		if len(seqs) == 0 || seqs[0] != wantFrom || seqs[len(seqs)-1] != wantTo || len(seqs) != int(wantTo-wantFrom+1) {
			t.Fatalf("gapFromSpool(%d, %d) = events %v, want %d…%d", after, upTo, seqs, wantFrom, wantTo)
		}
		return src.gap.sf
	}
	first := batch(0, 7, 1, 2)
	for _, b := range []struct{ after, upTo, from, to uint64 }{{2, 7, 3, 4}, {4, 7, 5, 6}, {6, 7, 7, 7}, {7, 10, 8, 9}} {
		if sf := batch(b.after, b.upTo, b.from, b.to); sf != first {
			t.Fatalf("after %d: the spool was opened again, want the open one read on", b.after)
		}
	}
	appendEvents(11, 14) // past the open snapshot
	if sf := batch(9, 10, 10, 10); sf != first {
		t.Fatal("after 9: the spool was opened again, want the open one read on")
	}
	renewed := batch(10, 13, 11, 12)
	if renewed == first {
		t.Fatal("after 10: the snapshot had no more, want a newer one")
	}
	if sf := batch(3, 13, 4, 5); sf == renewed {
		t.Fatal("after 3: the reader jumped back, want the spool opened at 3")
	}
	if _, err := src.gapFromSpool(14, 20, 14); err == nil || !strings.Contains(err.Error(), "not in its spool") {
		t.Fatalf("events past the spool: %v, want an error", err)
	}
}

// Ensure an HTTP reader's event of a big chunk of output is encoded into
// a buffer made once, not grown (and copied) again and again: text with a
// newline every 100 bytes or an escape every 16, and bytes that are not
// UTF-8 (base64).
func TestSpoolWire_BigChunkNotRegrown(t *testing.T) {
	lines := bytes.Repeat(append(bytes.Repeat([]byte{'0'}, 99), '\n'), 2600)    // 260 KB, as lines' reads are
	escapes := bytes.Repeat(append(bytes.Repeat([]byte{'a'}, 15), '"'), 16<<10) // 256 KiB
	binary := bytes.Repeat([]byte{0xff, 0xfe, 0x00, 0x80}, 64<<10)              // 256 KiB, base64
	for name, data := range map[string][]byte{"lines": lines, "escapes": escapes, "binary": binary} {
		t.Run(name, func(t *testing.T) {
			ev := spool.Event{Kind: spool.KindStdout, Seq: 7, Payload: data}
			allocs := testing.AllocsPerRun(5, func() {
				if _, err := spoolWire(ev); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 2 {
				t.Fatalf("spoolWire of %d bytes: %.0f allocations, want at most 2", len(data), allocs)
			}
			we, err := spoolWire(ev)
			if err != nil || !bytes.HasPrefix(we.obj, []byte(`{"event":"/stdout","seq":7,"data":"`)) {
				t.Fatalf("spoolWire = %.60s, %v", we.obj, err)
			}
		})
	}
}

// Ensure a job's HTTP readers count with its watchers: past MaxWatchers an
// event stream is refused with 429, and one that leaves makes room.
func TestHTTPReadersCapped(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{batchApp("b", `echo hi; read x`)}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("b", "")
	var streams []*sseStream
	for range supervisor.MaxWatchers {
		st, code := s.openSSE(id, "", resume, nil)
		if code != http.StatusOK {
			t.Fatalf("stream %d: %d", len(streams)+1, code)
		}
		streams = append(streams, st)
	}
	if _, code := s.openSSE(id, "", resume, nil); code != http.StatusTooManyRequests {
		t.Fatalf("stream %d: %d, want 429", supervisor.MaxWatchers+1, code)
	}
	streams[0].resp.Body.Close()
	waitFor(t, 5*time.Second, "room for a stream", func() bool {
		st, code := s.openSSE(id, "", resume, nil)
		if code == http.StatusOK {
			st.resp.Body.Close()
		}
		return code == http.StatusOK
	})
}

// Ensure a signal is not held behind stdin the program does not read: an
// operator's interrupt reaches a job whose stdin pipe is full, as Ctrl-C
// reaches a program whatever was typed ahead.
func TestHTTPSignalOvertakesFullStdin(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("n", `trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done`),
	}, Tenants: []supervisor.Tenant{tenant("alice", aliceToken, 0)}}
	s := startServer(t, cfg, Options{})
	id, resume := s.submitOpen("n", aliceToken)
	rh := http.Header{headerResume: {resume}}
	st, _ := s.openSSE(id, aliceToken, resume, nil)
	if ev, err := st.next(); err != nil || !strings.Contains(ev.Data, "ready") {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	// 8 MiB for a pipe of at most 1 MiB that nobody reads: the write waits.
	stdinDone := s.postAsync("/jobs/"+id+"/stdin", resume, bytes.NewReader(make([]byte, 8<<20)))
	time.Sleep(300 * time.Millisecond) // the stdin write is waiting on the full pipe
	signal := s.postAsync("/jobs/"+id+"/signal?signal=USR1", resume, nil)
	select {
	case code := <-signal:
		if code != http.StatusNoContent {
			t.Fatalf("signal: %d, want 204", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the signal waited 5 s behind a stdin write the program never reads")
	}
	awaitStdout(t, st, "usr1")
	if code, _, b := s.do(http.MethodDelete, "/jobs/"+id, aliceToken, nil, rh); code != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	s.waitEnded(id)
	select {
	case <-stdinDone: // answered (or cut) once the job ended
	case <-time.After(10 * time.Second):
		t.Fatal("the stdin write still waits after the job ended")
	}
}

// awaitStdout reads st until a stdout event holds want; an exit, or the
// stream's end, first fails the test.
func awaitStdout(t *testing.T, st *sseStream, want string) {
	t.Helper()
	for {
		ev, err := st.next()
		if err != nil || ev.Name == "exit" {
			t.Fatalf("%+v, %v; want stdout with %q", ev, err, want)
		}
		if ev.Name == "stdout" && strings.Contains(ev.Data, want) {
			return
		}
	}
}

// postAsync POSTs body to path as alice with the job's resume token, on a
// goroutine of its own, and sends the status (-1: no answer) once answered.
func (s *testServer) postAsync(path, resume string, body io.Reader) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, s.httpBase()+path, body)
		if err != nil {
			done <- -1
			return
		}
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		req.Header.Set(headerResume, resume)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

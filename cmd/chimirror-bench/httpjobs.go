package main

// The HTTP protocol's figures (issue 16 §3): a job's output read as
// Server-Sent Events against the same job over chimirror.v1, and the
// long-poll's round trip when the events are already there against a
// minimal net/http server's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// benchHTTPApps are the HTTP figures' apps: lines' program as a batch app
// (its jobs spool) and under bench-spool interactive, so that SSE and
// chimirror.v1 read the same job spooling alike; and cat as a batch app
// whose stdin stays open, for the long-poll.
const benchHTTPApps = `
[[app]]
name = "lines-batch"
command = ["sh", "-c", "yes \"$(printf '%%099d' 0)\" | head -n %[1]d"]
env = ["PATH"]
mode = "batch"
policy = "bench-spool"
[[app]]
name = "lines-spooled"
command = ["sh", "-c", "yes \"$(printf '%%099d' 0)\" | head -n %[1]d"]
env = ["PATH"]
policy = "bench-spool"
[[app]]
name = "cat-batch"
command = ["cat"]
mode = "batch"
policy = "bench"
`

// httpJobsConfig is the HTTP figures' apps for a bench server of o.
func httpJobsConfig(o benchOpts) string { return fmt.Sprintf(benchHTTPApps, o.lines) }

// jsonFloorPath is the minimal WebSocket server's path that answers
// jsonFloorBody at once over plain HTTP: the long-poll figure's floor.
const jsonFloorPath = "/json"

// jsonFloorBody is a long-poll's answer of one short event.
const jsonFloorBody = `[{"event":"/stdout","seq":1,"data":"x\n"}]` + "\n"

// serveJSONFloor answers jsonFloorBody.
func serveJSONFloor(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if _, err := io.WriteString(w, jsonFloorBody); err != nil {
		fmt.Fprintln(os.Stderr, "bench: JSON floor: client gone:", err)
	}
}

// longPollEvents is how many events the long-poll figure's job holds:
// the polls ask after 0…longPollEvents-1 in turn.
const longPollEvents = 8

// httpRows measures the groups sse and longpoll on srv (the long-poll's
// floor on wsf), as want asks.
func httpRows(srv *benchServer, wsf *wsFloor, o benchOpts, want map[string]bool, add func(benchRow)) error {
	if want["sse"] {
		var sse, v1, plain float64
		for range 3 { // in turns, best of three each: the machine is shared
			s, err := srv.sseLines(o.lines)
			if err != nil {
				return fmt.Errorf("SSE output: %w", err)
			}
			v, err := srv.v1Lines("lines-spooled", o.lines)
			if err != nil {
				return fmt.Errorf("chimirror.v1 output, spooled: %w", err)
			}
			p, err := srv.v1Lines("lines", o.lines)
			if err != nil {
				return fmt.Errorf("chimirror.v1 output: %w", err)
			}
			sse, v1, plain = max(sse, s), max(v1, v), max(plain, p)
		}
		add(benchRow{"SSE output (100-byte lines, a batch job)",
			fmt.Sprintf("%.0f lines/s, %.0f MB/s of payload (%.2f× floor)", sse, sse*100/1e6, sse/v1),
			fmt.Sprintf("%.0f lines/s the same job spooled over chimirror.v1 (%.0f lines/s unspooled); best of three each, in turns", v1, plain),
			"≥ 0.8× floor"})
	}
	if want["longpoll"] {
		ours, floor, err := srv.longPollLatency(wsf.url, o.echoN)
		if err != nil {
			return fmt.Errorf("long-poll: %w", err)
		}
		add(benchRow{"long-poll round trip, events waiting",
			fmt.Sprintf("p50 %s, p99 %s", ms(ours[len(ours)/2]), ms(ours[len(ours)*99/100])),
			fmt.Sprintf("p50 %s, p99 %s GET of a small JSON body from a minimal net/http server, kept alive, in turns", ms(floor[len(floor)/2]), ms(floor[len(floor)*99/100])),
			"p50 ≤ 1 ms"})
	}
	return nil
}

// submitted is a submit's answer, as the bench uses it.
type submitted struct {
	ID     string `json:"id"`
	Resume string `json:"resume"`
	Events string `json:"events"`
	Stdin  string `json:"stdin"`
}

// submit submits a job of the batch app with body as its stdin (query
// added to the URL), on client.
func (s *benchServer) submit(client *http.Client, app, query string, body []byte) (submitted, error) {
	u := "http://" + s.addr + "/apps/" + app + "/jobs" + query
	resp, err := client.Post(u, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return submitted{}, fmt.Errorf("submit %s: %w", app, err)
	}
	b, err := io.ReadAll(resp.Body)
	err = errors.Join(err, resp.Body.Close())
	if err != nil {
		return submitted{}, fmt.Errorf("submit %s: %w", app, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return submitted{}, fmt.Errorf("submit %s: %s: %s", app, resp.Status, bytes.TrimSpace(b))
	}
	var j submitted
	if err := json.Unmarshal(b, &j); err != nil {
		return submitted{}, fmt.Errorf("submit %s: answer %.200q: %w", app, b, err)
	}
	if j.ID == "" || j.Resume == "" || j.Events == "" || j.Stdin == "" {
		return submitted{}, fmt.Errorf("submit %s: answer %.200q lacks id, resume, events or stdin", app, b)
	}
	return j, nil
}

// sseLines submits a lines-batch job of n lines and reads its events as
// Server-Sent Events to its exit, and returns lines per second from the
// submit to the exit event.
func (s *benchServer) sseLines(n int) (float64, error) {
	tr := &http.Transport{ReadBufferSize: 64 << 10, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Minute}
	start := time.Now()
	j, err := s.submit(client, "lines-batch", "", nil)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+s.addr+j.Events, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("X-Chimirror-Resume", j.Resume)
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("events of %s: %w", j.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return 0, errors.Join(fmt.Errorf("events of %s: %s %s: %s", j.ID, resp.Status, resp.Header.Get("Content-Type"), bytes.TrimSpace(b)), err)
	}
	st, err := readSSE(resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("events of %s: %w", j.ID, err)
	}
	if st.payload != int64(n)*100 {
		return 0, fmt.Errorf("events of %s: %d bytes of output in %d events, want %d", j.ID, st.payload, st.last, n*100)
	}
	return float64(n) / d.Seconds(), nil
}

// outputTally is what a reader of a job's events got: the bytes of its
// output events, and the seq of the last event.
type outputTally struct {
	payload int64
	last    uint64
}

// add checks that obj, a chimirror.v1 object, is the event after t.last,
// and counts it; it returns the event's name without its slash ("stdout",
// "stderr", "exit").
func (t *outputTally) add(obj []byte) (name string, err error) {
	name, seq, n, err := parseV1Output(obj)
	if err != nil {
		return "", err
	}
	if seq != t.last+1 {
		return "", fmt.Errorf("event %s seq %d after seq %d", name, seq, t.last)
	}
	t.last = seq
	t.payload += int64(n)
	return name, nil
}

// readSSE reads a Server-Sent Events stream of a job's events to its exit
// event and then to its end: each event's id must be its object's seq.
func readSSE(r io.Reader) (outputTally, error) {
	var t outputTally
	// An event's data line holds up to a 256 KiB read, escaped: a buffer
	// that takes it whole reads it in place, not gathered in pieces.
	br := bufio.NewReaderSize(r, 1<<20)
	var id uint64
	var name string
	exited := false
	var long []byte // a line longer than br's buffer: an event of up to a 256 KiB read, escaped
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			if !exited {
				return t, fmt.Errorf("stream ended after event %d, before the exit", t.last)
			}
			return t, nil
		}
		if err != nil {
			return t, fmt.Errorf("after event %d: %w", t.last, err)
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		field, value, _ := bytes.Cut(line, []byte(": "))
		switch {
		case len(line) == 0 || line[0] == ':': // an event's end, or a comment
		case string(field) == "id":
			if id, err = strconv.ParseUint(string(value), 10, 64); err != nil {
				return t, fmt.Errorf("id %q: %w", value, err)
			}
		case string(field) == "event":
			name = string(value)
		case string(field) == "data":
			if exited {
				return t, fmt.Errorf("event %s after the exit", name)
			}
			got, err := t.add(value)
			if err != nil {
				return t, err
			}
			exited = got == "exit"
			if id != t.last || name != got {
				return t, fmt.Errorf("SSE event %s id %d carries %.80s", name, id, value)
			}
		default:
			return t, fmt.Errorf("unexpected line %.80q", line)
		}
	}
}

// eventName is the "event" of a chimirror.v1 object, as parseV1Output
// reads it.
func eventName(obj []byte) string {
	rest, ok := bytes.CutPrefix(obj, []byte(`{"event":"`))
	if !ok {
		return ""
	}
	name, _, _ := bytes.Cut(rest, []byte{'"'})
	return string(name)
}

// parseV1Output reads a chimirror.v1 output or exit event the way the
// server writes one (web.appendOutputEvent, appendExitEvent): its name
// without the slash, its seq, and how many bytes of output it carries (a
// string's bytes once unescaped, or base64's decoded). Anything else, a
// /gap included, is an error: the figures' readers miss no event.
func parseV1Output(obj []byte) (name string, seq uint64, n int, err error) {
	bad := func(why string) error { return fmt.Errorf("event %.80q: %s", obj, why) }
	name = eventName(obj)
	rest, ok := bytes.CutPrefix(obj, []byte(`{"event":"`+name+`","seq":`))
	if !ok {
		return "", 0, 0, bad("not an output or exit event")
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if seq, err = strconv.ParseUint(string(rest[:i]), 10, 64); err != nil {
		return "", 0, 0, bad("bad seq")
	}
	data, ok := bytes.CutPrefix(rest[i:], []byte(`,"data":`))
	if !ok {
		return "", 0, 0, bad("no data after seq")
	}
	switch name {
	case "/exit":
		if len(data) < 2 || data[len(data)-1] != '}' || !json.Valid(data[:len(data)-1]) {
			return "", 0, 0, bad("exit data is not an object")
		}
		return "exit", seq, 0, nil
	case "/stdout", "/stderr":
	default:
		return "", 0, 0, bad("unknown event")
	}
	if b64, ok := bytes.CutSuffix(data, []byte(`","encoding":"base64"}`)); ok && len(b64) > 0 && b64[0] == '"' {
		n, err := base64.StdEncoding.Decode(make([]byte, base64.StdEncoding.DecodedLen(len(b64)-1)), b64[1:])
		if err != nil {
			return "", 0, 0, bad("bad base64")
		}
		return name[1:], seq, n, nil
	}
	str, ok := bytes.CutSuffix(data, []byte(`"}`))
	if !ok || len(str) == 0 || str[0] != '"' {
		return "", 0, 0, bad("data is not a string")
	}
	str = str[1:]
	for i := 0; i < len(str); {
		if str[i] != '\\' {
			n++
			i++
			continue
		}
		if i+1 >= len(str) {
			return "", 0, 0, bad("cut escape")
		}
		if str[i+1] != 'u' {
			n++
			i += 2
			continue
		}
		if i+6 > len(str) {
			return "", 0, 0, bad("cut \\u escape")
		}
		r, err := strconv.ParseUint(string(str[i+2:i+6]), 16, 16)
		if err != nil {
			return "", 0, 0, bad("bad \\u escape")
		}
		if r >= 0xd800 && r < 0xdc00 { // a surrogate pair: one 4-byte character
			n += 4
			i += 12
			continue
		}
		n += utf8.RuneLen(rune(r))
		i += 6
	}
	return name[1:], seq, n, nil
}

// v1Lines runs app (a lines program) over chimirror.v1, acknowledging as
// it is written (no X-Chimirror-Ack), reads its events to the exit and
// the server's close, and returns lines per second from the dial to the
// exit event.
func (s *benchServer) v1Lines(app string, n int) (float64, error) {
	start := time.Now()
	ws, err := s.dial(app, protoV1)
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", app, err)
	}
	defer ws.Close()
	var t outputTally
	buf := bytes.NewBuffer(make([]byte, 0, 64<<10))
	var took time.Duration
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure && took != 0 {
				break
			}
			return 0, fmt.Errorf("%s after event %d: %w", app, t.last, err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return 0, fmt.Errorf("%s after event %d: %w", app, t.last, err)
		}
		if eventName(buf.Bytes()) == "/job" {
			continue
		}
		if took != 0 {
			return 0, fmt.Errorf("%s: event after the exit: %.80q", app, buf.Bytes())
		}
		name, err := t.add(buf.Bytes())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", app, err)
		}
		if name == "exit" {
			took = time.Since(start)
		}
	}
	if t.payload != int64(n)*100 {
		return 0, fmt.Errorf("%s: %d bytes of output in %d events, want %d", app, t.payload, t.last, n*100)
	}
	return float64(n) / took.Seconds(), nil
}

// keptAlive is an HTTP client of one kept-alive connection: dials counts
// the connections it opened.
type keptAlive struct {
	*http.Client
	dials atomic.Int64
}

func newKeptAlive() *keptAlive {
	k := &keptAlive{}
	var d net.Dialer
	k.Client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableCompression: true,
		MaxConnsPerHost:    1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			k.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}}
	return k
}

// getEvents GETs u with hdr and returns the JSON events it answers (200),
// read whole.
func (k *keptAlive) getEvents(u string, hdr http.Header) ([]v1Event, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header = hdr
	resp, err := k.Do(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	if err = errors.Join(err, resp.Body.Close()); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, bytes.TrimSpace(b))
	}
	var evs []v1Event
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("GET %s: answer %.200q: %w", u, b, err)
	}
	return evs, nil
}

// longPollLatency submits a cat-batch job with its stdin open, gives it
// longPollEvents lines one at a time (each waited for with a long-poll, so
// that each is an event of its own), then times n long-polls of the
// events after 0…longPollEvents-1 in turn, and n GETs of the floor's JSON
// at floorBase (the minimal server), in turns, each on its own kept-alive
// connection. It returns the latencies, sorted, and ends the job.
func (s *benchServer) longPollLatency(floorBase string, n int) (ours, floor []time.Duration, retErr error) {
	ka := newKeptAlive()
	defer ka.CloseIdleConnections()
	j, err := s.submit(ka.Client, "cat-batch", "?stdin=open", nil)
	if err != nil {
		return nil, nil, err
	}
	hdr := http.Header{"Accept": {"application/json"}, "X-Chimirror-Resume": {j.Resume}}
	poll := func(after uint64) string {
		return fmt.Sprintf("http://%s%s?after=%d&wait=25s", s.addr, j.Events, after)
	}
	post := func(query, body string) error {
		req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+j.Stdin+query, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("X-Chimirror-Resume", j.Resume)
		resp, err := ka.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		if err = errors.Join(err, resp.Body.Close()); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("stdin of %s: %s: %.200s", j.ID, resp.Status, bytes.TrimSpace(b))
		}
		return nil
	}
	defer func() { // close its stdin: cat ends; read on to the exit
		err := post("?close=1", "")
		for after := uint64(longPollEvents); err == nil; {
			var evs []v1Event
			if evs, err = ka.getEvents(poll(after), hdr); err == nil && len(evs) > 0 {
				after = evs[len(evs)-1].Seq
				if evs[len(evs)-1].Event == "/exit" {
					break
				}
			}
		}
		if err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("end %s: %w", j.ID, err))
		}
	}()
	for i := range uint64(longPollEvents) {
		if err := post("", "x\n"); err != nil {
			return nil, nil, err
		}
		evs, err := ka.getEvents(poll(i), hdr)
		if err != nil {
			return nil, nil, err
		}
		if len(evs) != 1 || evs[0].Seq != i+1 || string(evs[0].Data) != `"x\n"` {
			return nil, nil, fmt.Errorf("after %d: want event %d, x, alone; got %+v", i, i+1, evs)
		}
	}
	fl := newKeptAlive()
	defer fl.CloseIdleConnections()
	floorURL := strings.TrimSuffix(strings.Replace(floorBase, "ws://", "http://", 1), "/") + jsonFloorPath
	dials := ka.dials.Load() // the server closes a connection after a request with a body (web/framing.go): not after a GET
	for i := range n {
		after := uint64(i % longPollEvents)
		t0 := time.Now()
		evs, err := ka.getEvents(poll(after), hdr)
		d := time.Since(t0)
		if err != nil {
			return nil, nil, err
		}
		if len(evs) != longPollEvents-int(after) || evs[0].Seq != after+1 {
			return nil, nil, fmt.Errorf("after %d: got %+v, want %d events from seq %d", after, evs, longPollEvents-int(after), after+1)
		}
		ours = append(ours, d)
		t0 = time.Now()
		if evs, err = fl.getEvents(floorURL, http.Header{"Accept": {"application/json"}}); err != nil {
			return nil, nil, fmt.Errorf("floor: %w", err)
		}
		floor = append(floor, time.Since(t0))
		if len(evs) != 1 {
			return nil, nil, fmt.Errorf("floor: %d events, want 1", len(evs))
		}
	}
	if ka.dials.Load() != dials || fl.dials.Load() != 1 {
		return nil, nil, fmt.Errorf("connections not kept alive: %d more to chimirror, %d to the floor, want 0 and 1", ka.dials.Load()-dials, fl.dials.Load())
	}
	slices.Sort(ours)
	slices.Sort(floor)
	return ours, floor, nil
}

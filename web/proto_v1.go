package web

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
)

// ProtoV1 is the chimirror.v1 sub-protocol: QuickIO-style events, one JSON
// object per text message: {"event": PATH, "data": ..., "callback": N}.
//
// Byte-exact streams: /stdout and /stderr data is a JSON string holding the
// bytes when they are valid UTF-8. A chunk that is not valid UTF-8 is sent
// with "encoding": "base64" and data holding the base64 of the bytes. For a
// text app a multi-byte character split by a read boundary is held back
// (at most three bytes) by the job and sent with the next chunk, so text
// never turns into base64 by accident. Decoding every event's data by its
// encoding and concatenating gives exactly the bytes the program wrote.
// /stdin takes the same "encoding": "base64" for binary input.
//
// Sequence numbers: /stdout, /stderr and /exit carry "seq": N, the job's
// output events numbered from 1 (stdout and stderr together). A client
// that acknowledges (/ack {"seq": N}) keeps every event after N in the
// job's ring until it does; one that reattaches (GET /jobs/ID/attach?after=N)
// gets /job, then /gap {"from", "to"} if the ring no longer holds events
// it asked for, then every event from the next one on.
const ProtoV1 = "chimirror.v1"

type v1Proto struct {
	*wsConn
	job v1Job // the /job event a reattaching client gets first
}

// v1Job is the data of /job.
type v1Job struct {
	ID     string `json:"id"`
	App    string `json:"app"`
	Resume string `json:"resume,omitempty"`
	// Attach is the path (base path included) a client reattaches at.
	Attach string `json:"attach"`
	// ReplayBytes is the job's ring: a client that acknowledges does so at
	// least every half of it (counting the messages' bytes).
	ReplayBytes int64 `json:"replay_bytes"`
	// DetachTimeoutMs is how long the job runs on without its client; 0:
	// losing the client ends it.
	DetachTimeoutMs int64 `json:"detach_timeout_ms"`
}

type v1Event struct {
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data"`
	Callback int64           `json:"callback"`
	Encoding string          `json:"encoding"`
	Stream   string          `json:"stream"` // /stdin's, when numbered: its stream
	Offset   *int64          `json:"offset"` // and its first byte's offset in it
}

var eventPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// putEvent returns an event buffer to the pool, unless a big chunk with many
// escapes made it too big to keep around.
func putEvent(bp *[]byte) {
	if cap(*bp) <= 512<<10 {
		eventPool.Put(bp)
	}
}

// maxStdinStreamName bounds a numbered stdin stream's name: a job keeps
// MaxStdinStreams of them.
const maxStdinStreamName = 64

func (p *v1Proto) sendJob(j v1Job) error { return p.writeJSON("/job", j) }

// Resume sends a reattaching client its /job, then /gap when events it
// asked for are gone.
func (p *v1Proto) Resume(pos supervisor.Position) error {
	if err := p.sendJob(p.job); err != nil {
		return err
	}
	if pos.GapTo == 0 {
		return nil
	}
	return p.writeJSON("/gap", map[string]uint64{"from": pos.GapFrom, "to": pos.GapTo})
}

func (p *v1Proto) writeJSON(event string, data any) error {
	d, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s: %w", event, err)
	}
	bp := eventPool.Get().(*[]byte)
	defer putEvent(bp)
	b := append((*bp)[:0], `{"event":`...)
	b = strconv.AppendQuote(b, event) // event paths are ASCII
	b = append(b, `,"data":`...)
	b = append(b, d...)
	b = append(b, '}')
	*bp = b
	return p.write(websocket.TextMessage, b)
}

func (p *v1Proto) Receive() (supervisor.Input, error) {
	for {
		mt, b, err := p.read()
		if err != nil {
			return supervisor.Input{}, err
		}
		in, cb, perr := p.decode(mt, b)
		if perr == nil {
			if cb != 0 {
				in.Done = func(err error) { p.answer(cb, err) }
			}
			return in, nil
		}
		p.answer(cb, perr) // a bad event is answered, not fatal
	}
}

func (p *v1Proto) decode(mt int, b []byte) (supervisor.Input, int64, error) {
	var ev v1Event
	if mt != websocket.TextMessage {
		return supervisor.Input{}, 0, errors.New("chimirror.v1 takes text messages holding JSON")
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		return supervisor.Input{}, 0, fmt.Errorf("malformed event: %w", err)
	}
	switch ev.Event {
	case "/ack":
		var a struct {
			Seq *uint64 `json:"seq"`
		}
		if err := json.Unmarshal(ev.Data, &a); err != nil || a.Seq == nil {
			return supervisor.Input{}, ev.Callback, errors.New(`/ack: data must be {"seq": N}`)
		}
		return supervisor.Input{Kind: supervisor.InputAck, Seq: *a.Seq}, ev.Callback, nil
	case "/detach":
		return supervisor.Input{Kind: supervisor.InputDetach}, ev.Callback, nil
	}
	var s string
	if len(ev.Data) > 0 && string(ev.Data) != "null" {
		if err := json.Unmarshal(ev.Data, &s); err != nil {
			return supervisor.Input{}, ev.Callback, fmt.Errorf("%s: data must be a string", ev.Event)
		}
	}
	switch ev.Event {
	case "/stdin":
		data := []byte(s)
		switch ev.Encoding {
		case "":
		case "base64":
			d, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return supervisor.Input{}, ev.Callback, fmt.Errorf("/stdin: bad base64: %w", err)
			}
			data = d
		default:
			return supervisor.Input{}, ev.Callback, fmt.Errorf("/stdin: unknown encoding %q", ev.Encoding)
		}
		in := supervisor.Input{Kind: supervisor.InputStdin, Data: data}
		switch {
		case ev.Stream == "" && ev.Offset == nil:
		case ev.Stream == "" || ev.Offset == nil:
			return supervisor.Input{}, ev.Callback, errors.New(`/stdin: "stream" and "offset" go together`)
		case len(ev.Stream) > maxStdinStreamName:
			return supervisor.Input{}, ev.Callback, fmt.Errorf("/stdin: stream name of %d bytes, more than %d", len(ev.Stream), maxStdinStreamName)
		case *ev.Offset < 0:
			return supervisor.Input{}, ev.Callback, fmt.Errorf("/stdin: offset %d is negative", *ev.Offset)
		default:
			in.Stream, in.Offset = ev.Stream, *ev.Offset
		}
		return in, ev.Callback, nil
	case "/stdin/close":
		return supervisor.Input{Kind: supervisor.InputCloseStdin}, ev.Callback, nil
	case "/signal":
		sig, err := policies.ClientSignal(s)
		if err != nil {
			return supervisor.Input{}, ev.Callback, fmt.Errorf("/signal: %w", err)
		}
		return supervisor.Input{Kind: supervisor.InputSignal, Signal: sig}, ev.Callback, nil
	}
	return supervisor.Input{}, ev.Callback, fmt.Errorf("unknown event %q", ev.Event)
}

// callbackJSON is the data of a /callback event: the outcome of the
// client's event numbered Callback. Job sockets and the admin's events
// socket answer alike.
type callbackJSON struct {
	Callback int64  `json:"callback"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"` // why it failed
}

func callbackOf(cb int64, err error) callbackJSON {
	c := callbackJSON{Callback: cb, OK: err == nil}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

// answer reports an event's outcome: /callback when the client asked for one,
// otherwise /error for a failure.
func (p *v1Proto) answer(cb int64, err error) {
	var werr error
	switch {
	case cb != 0:
		werr = p.writeJSON("/callback", callbackOf(cb, err))
	case err != nil:
		werr = p.writeJSON("/error", err.Error())
	}
	if werr != nil {
		p.log.Debug("answer client event", "err", werr)
	}
}

func (p *v1Proto) Send(ev supervisor.Event) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.sendChunk(ev.Stream, ev.Seq, ev.Data)
}

func (p *v1Proto) sendChunk(s supervisor.Stream, seq uint64, b []byte) error {
	bp := eventPool.Get().(*[]byte)
	defer putEvent(bp)
	*bp = appendOutputEvent((*bp)[:0], s, seq, b)
	return p.writeLocked(websocket.TextMessage, *bp)
}

// appendOutputEvent appends chimirror.v1's event for output b of stream s,
// numbered seq: {"event":"/stdout","seq":N,"data":…} (see ProtoV1 for the
// encoding). The HTTP event stream sends the same objects.
func appendOutputEvent(dst []byte, s supervisor.Stream, seq uint64, b []byte) []byte {
	dst = append(dst, `{"event":"/`...)
	dst = append(dst, s.String()...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"data":`...)
	if utf8.Valid(b) {
		dst = appendJSONString(dst, b)
		return append(dst, '}')
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, `","encoding":"base64"}`...)
}

// appendExitEvent appends chimirror.v1's /exit event, numbered seq.
func appendExitEvent(dst []byte, seq uint64, e supervisor.Exit) ([]byte, error) {
	d, err := json.Marshal(exitJSON(e))
	if err != nil {
		return dst, fmt.Errorf("encode /exit: %w", err)
	}
	dst = append(dst, `{"event":"/exit","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(append(append(dst, `,"data":`...), d...), '}')
	return dst, nil
}

// Flush has nothing to send: the job holds split characters back itself.
func (p *v1Proto) Flush() error { return nil }

func (p *v1Proto) Finish(ev supervisor.Event) error {
	b, err := appendExitEvent(nil, ev.Seq, *ev.Exit)
	if err != nil {
		return err
	}
	err = p.write(websocket.TextMessage, b)
	return errors.Join(err, p.finish(*ev.Exit))
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends b, valid UTF-8, as a JSON string.
func appendJSONString(dst, b []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(b); i++ {
		// Eight bytes at a time while none needs escaping: output is
		// mostly plain text, and this loop is a fifth of the server's CPU
		// when a job streams lines.
		for i+8 <= len(b) && !escapeIn8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i == len(b) {
			break
		}
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, b[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, b[start:]...)
	return append(dst, '"')
}

// escapeIn8 reports whether any of the eight bytes of x needs escaping in
// a JSON string: a control byte (below 0x20), '"' or '\\'. Each test is
// the exact "has a byte below n" test on all bytes at once (n ≤ 0x80:
// bytes from 0x80 up, UTF-8's, never match).
func escapeIn8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	return ((x-ones*0x20)&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0
}

// exitStatusJSON is used by channel 3 of the binary protocol.
func exitStatusJSON(e supervisor.Exit) []byte {
	b, err := json.Marshal(exitJSON(e))
	if err != nil { // a map of strings and ints always encodes
		panic(err)
	}
	return b
}

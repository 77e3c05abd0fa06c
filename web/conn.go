package web

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
)

// batchConn lets a protocol put many small frames into one write syscall.
// Between begin and end, writes are gathered in a pooled buffer (bounded:
// it is flushed when full); outside a batch they pass straight through, so
// control frames written from other goroutines are never held back for long.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf *[]byte
}

const batchSize = 64 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchSize); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return c.Conn.Write(p)
	}
	b := *c.buf
	if len(b)+len(p) > cap(b) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		b = *c.buf
	}
	if len(p) > cap(b) {
		return c.Conn.Write(p)
	}
	*c.buf = append(b, p...)
	return len(p), nil
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.on = true
	c.buf = batchPool.Get().(*[]byte)
	c.mu.Unlock()
}

// end flushes the batch and returns its buffer to the pool.
func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	c.on = false
	batchPool.Put(c.buf)
	c.buf = nil
	return err
}

func (c *batchConn) flushLocked() error {
	b := *c.buf
	*c.buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	_, err := c.Conn.Write(b)
	return err
}

// hijackWriter hands gorilla a batchConn instead of the raw connection.
type hijackWriter struct {
	http.ResponseWriter
	bc *batchConn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.bc = &batchConn{Conn: c}
	return h.bc, rw, nil
}

// wsConn is what every protocol adapter shares: keepalive, deadlines, the
// write lock and the closing handshake.
//
// gorilla's rule: one reader, one writer; only WriteControl and Close may run
// concurrently with them. Receive is the one reader; wmu makes the writer.
type wsConn struct {
	ws  *websocket.Conn
	bc  *batchConn
	log *slog.Logger
	lim Limits

	acks      bool // the client acknowledges by itself (X-Chimirror-Ack: 1)
	wmu       sync.Mutex
	sent      atomic.Int64 // data messages written
	pingMu    sync.Mutex   // the timer fires on its own goroutine
	ping      *time.Timer
	pingOff   bool // stopped for good: never re-armed
	closeOnce sync.Once
}

func newWSConn(ws *websocket.Conn, bc *batchConn, log *slog.Logger, lim Limits) *wsConn {
	c := &wsConn{ws: ws, bc: bc, log: log, lim: lim}
	ws.SetReadLimit(lim.MaxMessageBytes)
	ws.SetPongHandler(func(string) error { return c.extendRead() })
	if lim.PingInterval > 0 {
		c.pingMu.Lock()
		c.ping = time.AfterFunc(lim.PingInterval, c.sendPing)
		c.pingMu.Unlock()
	}
	return c
}

// stopPing stops keepalive for good.
func (c *wsConn) stopPing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingOff = true
	if c.ping != nil {
		c.ping.Stop()
	}
}

// extendRead gives the client another ping period plus the pong timeout.
func (c *wsConn) extendRead() error {
	if c.lim.PingInterval <= 0 {
		return nil
	}
	return c.ws.SetReadDeadline(time.Now().Add(c.lim.PingInterval + c.lim.PongTimeout))
}

func (c *wsConn) sendPing() {
	err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.lim.WriteTimeout))
	if err != nil {
		return // the reader notices the dead connection; no more pings
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if !c.pingOff {
		c.ping.Reset(c.lim.PingInterval)
	}
}

// read returns the next data message. Errors say why the client is gone.
func (c *wsConn) read() (int, []byte, error) {
	if err := c.extendRead(); err != nil {
		return 0, nil, err
	}
	mt, p, err := c.ws.ReadMessage()
	if err != nil {
		return 0, nil, describeReadErr(err, c.lim.MaxMessageBytes)
	}
	return mt, p, nil
}

func describeReadErr(err error, limit int64) error {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return fmt.Errorf("message too big (limit %d bytes): %w: %w", limit, supervisor.ErrClientViolation, err)
	case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure:
		// gorilla's name for EOF: no close frame came.
		return fmt.Errorf("connection dropped: %w", err)
	case errors.As(err, &ce):
		return fmt.Errorf("%w: %w", &supervisor.CloseError{Code: ce.Code, Text: ce.Text}, err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("no pong or message in time: %w", err)
	}
	return err
}

// write sends one data message under the write lock with the write timeout.
func (c *wsConn) write(mt int, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(mt, p)
}

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

// writeLocked sends one data message, under the write lock, with the write
// timeout, and counts it. Every data message goes through here.
func (c *wsConn) writeLocked(mt int, p []byte) error {
	if err := c.ws.SetWriteDeadline(deadline(c.lim.WriteTimeout)); err != nil {
		return err
	}
	if err := c.ws.WriteMessage(mt, p); err != nil {
		return err
	}
	c.sent.Add(1)
	return nil
}

// writePrefixedLocked is writeLocked for the message prefix+p, without
// copying p: one frame when it fits the write buffer, else gorilla sends a
// big chunk as fragments of the one message.
func (c *wsConn) writePrefixedLocked(mt int, prefix byte, p []byte) error {
	if err := c.ws.SetWriteDeadline(deadline(c.lim.WriteTimeout)); err != nil {
		return err
	}
	w, err := c.ws.NextWriter(mt)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte{prefix}); err != nil {
		return err
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	c.sent.Add(1)
	return nil
}

// MessagesOut is how many data messages went to the client (the ledger's
// messages_out); protocols may frame one output chunk as several.
func (c *wsConn) MessagesOut() int64 { return c.sent.Load() }

// closeWait bounds how long Finish waits for the client's close frame.
const closeWait = time.Second

// finish sends the close frame for e; the caller has sent any final event.
// The reader then sees the client's close, or a deadline, and returns.
func (c *wsConn) finish(e supervisor.Exit) error {
	code, text := closeFor(e)
	c.stopPing()
	err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
		time.Now().Add(c.lim.WriteTimeout))
	return errors.Join(err, c.ws.SetReadDeadline(time.Now().Add(closeWait)))
}

// Dismiss ends the connection while the job goes on, with a close frame
// saying why (see the close codes below), then closes it.
func (c *wsConn) Dismiss(why supervisor.Dismissal, detail string) error {
	code := dismissCodes[why]
	if len(detail) > 123 {
		detail = detail[:123]
	}
	c.stopPing()
	err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, detail),
		time.Now().Add(c.lim.WriteTimeout))
	if errors.Is(err, websocket.ErrCloseSent) {
		err = nil // the job's end was reported first
	}
	return errors.Join(err, c.Close())
}

// AcksFromStart reports whether the client said, as it connected, that it
// acknowledges what it gets (supervisor.Acknowledger).
func (c *wsConn) AcksFromStart() bool { return c.acks }

// Resume has nothing to send where the protocol numbers nothing (text
// lines): the stream goes on.
func (c *wsConn) Resume(supervisor.Position) error { return nil }

// Close closes the TCP connection; it is safe to call more than once.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.stopPing()
		err = c.ws.Close()
	})
	return err
}

// Close codes. A job's end is always reported with a close frame:
//
//	1000       exit 0
//	4001–4255  exit 1–255 (4000 + code)
//	4129–4192  killed by a signal (4000 + 128 + signal); the text names it
//	1001       the server is shutting down
//	1009       a client message was over the size limit (sent by the reader)
//
// A client's connection may also end while its job goes on:
//
//	4300  another client attached to the job (take-over)
//	4301  a watcher fell behind the job's ring
//	4302  the client asked to detach (/detach): the job runs on
//	4303  the job ended, its end delivered to another client, before this one attached
const (
	closeExitBase  = 4000
	CloseTakenOver = 4300
	CloseTooSlow   = 4301
	CloseDetached  = 4302
	CloseJobGone   = 4303
)

var dismissCodes = map[supervisor.Dismissal]int{
	supervisor.DismissTakenOver: CloseTakenOver,
	supervisor.DismissTooSlow:   CloseTooSlow,
	supervisor.DismissDetached:  CloseDetached,
	supervisor.DismissGone:      CloseJobGone,
}

func closeFor(e supervisor.Exit) (int, string) {
	text := e.Status.String()
	switch e.Reason {
	case supervisor.ReasonExit, supervisor.ReasonSignal:
	default:
		text = string(e.Reason) + ": " + text
	}
	if len(text) > 123 { // a close frame's reason must fit in 123 bytes
		text = text[:123]
	}
	if e.Reason == supervisor.ReasonShutdown {
		return websocket.CloseGoingAway, text
	}
	if e.Status.Code == 0 && e.Status.Signal == 0 {
		return websocket.CloseNormalClosure, text
	}
	return closeExitBase + e.Status.Code, text
}

// exitJSON is the status object of /exit and channel 3.
func exitJSON(e supervisor.Exit) map[string]any {
	sig := ""
	if e.Status.Signal != 0 {
		sig = sandbox.SignalName(e.Status.Signal)
	}
	return exitMap(e.Status.Code, sig, string(e.Reason), e.Detail)
}

// exitMap is a job's end as the protocols send it: {"code", "signal"
// (null when none), "reason", "detail" (when there is one)}, from the
// job's end as it ran or as its spool keeps it.
func exitMap(code int, signal, reason, detail string) map[string]any {
	m := map[string]any{"code": code, "signal": nil, "reason": reason}
	if signal != "" {
		m["signal"] = signal
	}
	if detail != "" {
		m["detail"] = detail
	}
	return m
}

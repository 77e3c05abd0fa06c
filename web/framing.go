package web

// The request-framing check. A request with both Content-Length and
// Transfer-Encoding is the shape of request smuggling: a proxy in front
// that honours the other framing splits the connection's bytes into other
// requests than ours. net/http deletes Content-Length when Transfer-Encoding
// is present (and ignores Transfer-Encoding in HTTP/1.0), so no handler can
// tell; the check reads the request heads below net/http, on the plaintext
// bytes, and the edge asks it for each request's verdict.
//
// It reads heads only while requests are bodyless: after a head with a
// body (by either framing), an upgrade, or anything it cannot read, it
// reads nothing more on that connection, and that request's verdict closes
// the connection after it, so no request is served unread. That spares it
// from parsing bodies, and the connection costs one field check per Read
// from then on (a WebSocket's frames all pass so).
//
// Bytes are never held back: the Read that returns a head's last byte has
// recorded the head's verdict before returning, so before net/http can
// finish parsing the head and call the handler. net/http reads a
// connection's requests strictly in order and (bar "OPTIONS *", below)
// either serves each to the handler or closes the connection, so the n-th
// verdict recorded is the n-th asked for.
//
// Contract for handlers: only a request with an Upgrade header (or a
// CONNECT) may hijack its connection; on any other the check would go on
// reading the hijacked bytes as heads (harmless to them, but meaningless).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
)

const (
	// lineKeepBytes is how much of each head line is kept: enough for
	// every name and value the check reads. A longer line is judged by
	// its start, conservatively.
	lineKeepBytes = 128
	// maxPendingHeads bounds the verdicts recorded and not yet asked for
	// (pipelined requests); the head past it ends inspection and closes
	// the connection after it.
	maxPendingHeads = 256
)

// errFramingRefused ends a connection at an "OPTIONS *" head that must
// close it (a body, an upgrade, an unreadable line): net/http answers
// OPTIONS * itself, without asking for a verdict. It answers the Read
// error with a 400 and closes.
var errFramingRefused = errors.New("web: an OPTIONS * request with a body, an upgrade or an unreadable head")

// framingListener wraps every connection ln accepts in the framing check.
// Serve it with framingConnContext as the server's ConnContext. A
// connection's *tls.Conn is hidden from net/http (r.TLS is nil): see
// connTLS.
func framingListener(ln net.Listener) net.Listener { return framingLn{ln} }

type framingLn struct{ net.Listener }

func (l framingLn) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

type framingKey struct{}

// framingConnContext keeps c's framing state in its requests' context.
func framingConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		ctx = context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

// framingVerdict is r's verdict; the edge asks once per request, in the
// order net/http serves them. bad: r's head had both Content-Length and
// Transfer-Encoding. closeAfter: the connection must not be reused after r.
// A request whose head the check did not read is refused: its connection
// was not accepted by framingListener, or inspection should have closed it
// before this request.
func framingVerdict(r *http.Request) (bad, closeAfter bool) {
	c, ok := r.Context().Value(framingKey{}).(*framingConn)
	if !ok {
		return true, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return true, true
	}
	v := c.pending[0]
	c.pending = slices.Delete(c.pending, 0, 1) // keeps the array: no allocation per request
	return v.bad, v.closeAfter
}

// connTLS is the TLS state of r's connection, nil without TLS.
func connTLS(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	c, ok := r.Context().Value(framingKey{}).(*framingConn)
	if !ok {
		return nil
	}
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}

type framingMode uint8

const (
	framingInspect framingMode = iota
	framingPass                // inspection over: bytes pass untouched
	framingRefused             // every Read fails with errFramingRefused
)

type verdict struct{ bad, closeAfter bool }

// headFacts is what the check learnt of the head being read.
type headFacts struct {
	started       bool // its request line is read
	optionsStar   bool // "OPTIONS *": net/http answers it without the handler
	contentLength bool
	transfer      bool // Transfer-Encoding: a chunked (or refused) body
	stop          bool // a body, an upgrade, or a line the check cannot read
}

// framingConn is a connection with its request heads inspected as they
// are read. net/http reads a connection from one goroutine at a time, and
// so does a hijacker: the read side needs no lock. The verdicts, asked
// for by the handler while net/http may be reading ahead, do.
type framingConn struct {
	net.Conn
	mode    framingMode
	line    [lineKeepBytes]byte // the start of the line being read
	lineLen int                 // its length so far, past lineKeepBytes if longer
	head    headFacts

	mu      sync.Mutex
	pending []verdict // recorded, not yet asked for, oldest first
}

// Read is the inner Read, inspecting what it returns until inspection ends.
func (c *framingConn) Read(p []byte) (int, error) {
	if c.mode == framingPass {
		return c.Conn.Read(p)
	}
	return c.readInspecting(p)
}

func (c *framingConn) readInspecting(p []byte) (int, error) {
	if c.mode == framingRefused {
		return 0, errFramingRefused
	}
	n, err := c.Conn.Read(p)
	if keep, refused := c.inspect(p[:n]); refused {
		return keep, errFramingRefused
	}
	return n, err
}

// inspect reads b as the next bytes of request heads. refused: b's first
// keep bytes are all net/http may see of the connection.
func (c *framingConn) inspect(b []byte) (keep int, refused bool) {
	for i := 0; i < len(b) && c.mode == framingInspect; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			c.addToLine(b[i:])
			break
		}
		c.addToLine(b[i : i+j])
		// Withholding a refused head's final newline leaves
		// net/http an unfinished head.
		if c.endLine() && c.endHead() {
			return i + j, true
		}
		i += j + 1
	}
	return 0, false
}

func (c *framingConn) addToLine(b []byte) {
	if c.lineLen < len(c.line) {
		copy(c.line[c.lineLen:], b)
	}
	c.lineLen += len(b)
}

// endLine reads the line just ended (its "\n" excluded) as textproto
// would, and reports whether it ends the head.
func (c *framingConn) endLine() (headDone bool) {
	n := c.lineLen
	c.lineLen = 0
	truncated := n > len(c.line)
	line := c.line[:min(n, len(c.line))]
	if !truncated {
		line = bytes.TrimSuffix(line, []byte("\r"))
	}
	h := &c.head
	if !h.started {
		h.started = true
		if len(line) == 0 { // net/http refuses an empty request line
			h.stop = true
			return true
		}
		h.optionsStar = bytes.HasPrefix(line, []byte("OPTIONS * "))
		h.stop = bytes.HasPrefix(line, []byte("CONNECT "))
		return false
	}
	if len(line) == 0 {
		return true
	}
	if line[0] == ' ' || line[0] == '\t' { // obs-fold, joined to the field before
		h.stop = true
		return false
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	switch {
	case !ok: // malformed, or a name longer than the kept start
		h.stop = true
	case asciiEqualFold(name, "content-length"):
		h.contentLength = true
		if truncated || !zeroLength(value) {
			h.stop = true
		}
	case asciiEqualFold(name, "transfer-encoding"):
		h.transfer = true
		h.stop = true
	case asciiEqualFold(name, "upgrade"):
		h.stop = true
	}
	return false
}

// endHead records the verdict of the head just ended. refuse: the
// connection must end before net/http sees the head.
func (c *framingConn) endHead() (refuse bool) {
	h := c.head
	c.head = headFacts{}
	v := verdict{bad: h.contentLength && h.transfer, closeAfter: h.stop}
	if h.optionsStar {
		// No verdict is asked for: the check can only refuse.
		if v.closeAfter {
			c.mode = framingRefused
			return true
		}
		return false
	}
	c.mu.Lock()
	if len(c.pending) >= maxPendingHeads {
		v.closeAfter = true
	}
	c.pending = append(c.pending, v)
	c.mu.Unlock()
	if v.closeAfter {
		c.mode = framingPass
	}
	return false
}

// zeroLength: a Content-Length value net/http reads as 0.
func zeroLength(v []byte) bool {
	v = bytes.Trim(v, " \t\r")
	return len(v) > 0 && len(bytes.Trim(v, "0")) == 0
}

// asciiEqualFold is strings.EqualFold without Unicode folding, which
// would let "ſ" match "s" where net/http sees a different name.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lower[i] {
			return false
		}
	}
	return true
}

// CloseWrite half-closes the connection when the inner one can, which
// net/http does before closing on a refused request so that the client
// reads the answer instead of a reset.
func (c *framingConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}

// ReadFrom keeps the inner connection's sendfile and splice for net/http's
// responses; reading is not involved.
func (c *framingConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

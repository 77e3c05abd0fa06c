package web

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// edgeServer serves h behind e on a real loopback listener, as chimirror
// serve does, and returns its address. handled counts the requests that
// reached h.
func edgeServer(t *testing.T, e Edge, h http.Handler) (addr string, handled *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handled = new(atomic.Int32)
	srv := e.httpServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		h.ServeHTTP(w, r)
	}), testLogger(t))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(e.Listener(ln)) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), handled
}

// echoBody answers 200 with the request's body.
var echoBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := w.Write(b); err != nil {
		panic(http.ErrAbortHandler)
	}
})

// rawConn is a client connection whose bytes the test writes itself.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) write(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// reply is one response as the test client read it.
type reply struct {
	status int
	close  bool // the server said Connection: close
	body   string
}

func (rc *rawConn) read() reply {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return reply{status: resp.StatusCode, close: resp.Close, body: string(b)}
}

// closed reports whether the server ends the connection within wait, with
// nothing more sent. An open connection costs the whole wait.
func (rc *rawConn) closed(wait time.Duration) bool {
	rc.t.Helper()
	if err := rc.c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		rc.t.Fatal(err)
	}
	b, err := rc.br.ReadByte()
	if err == nil {
		rc.t.Fatalf("unexpected byte %q after the last response", b)
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// smuggle is a request with both framings: 5 bytes of body by
// Content-Length, an empty chunked body by Transfer-Encoding.
func smuggle(proto, cl, te, teValue string, teFirst bool) string {
	h := []string{cl + ": 5", te + ": " + teValue}
	if teFirst {
		h[0], h[1] = h[1], h[0]
	}
	return "POST / " + proto + "\r\nHost: 127.0.0.1\r\n" + strings.Join(h, "\r\n") + "\r\n\r\n0\r\n\r\n"
}

func TestFramingRefusesBothLengths(t *testing.T) {
	addr, handled := edgeServer(t, Edge{}, echoBody)
	tests := []struct {
		name string
		req  string
		// 400 from the edge; net/http refuses a transfer coding other
		// than chunked itself (501), also before any handler.
		status int
	}{
		{"CL then TE", smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "chunked", false), 400},
		{"TE then CL", smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "chunked", true), 400},
		{"odd casing", smuggle("HTTP/1.1", "content-length", "TRANSFER-ENCODING", "chunked", false), 400},
		{"odd casing TE first", smuggle("HTTP/1.1", "cOnTeNt-LeNgTh", "transfer-encoding", "Chunked", true), 400},
		// net/http ignores Transfer-Encoding in HTTP/1.0 and deletes it:
		// the handler would see a plain 5-byte body.
		{"HTTP/1.0", smuggle("HTTP/1.0", "Content-Length", "Transfer-Encoding", "chunked", false), 400},
		{"bare LF", "POST / HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n", 400},
		{"gzip, chunked", smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "gzip, chunked", false), 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := handled.Load()
			rc := dialRaw(t, addr)
			rc.write(tt.req)
			if got := rc.read(); got.status != tt.status {
				t.Errorf("status %d (%q), want %d", got.status, got.body, tt.status)
			}
			if !rc.closed(5 * time.Second) {
				t.Error("connection left open after the refusal")
			}
			if n := handled.Load() - before; n != 0 {
				t.Errorf("handler ran %d times", n)
			}
		})
	}
}

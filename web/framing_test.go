package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chimirror/chimirror/internal/testpki"
	"github.com/gorilla/websocket"
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
		// A proxy may read chunks; net/http refuses the name itself.
		{"space before the colon", smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding ", "chunked", false), 400},
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

const getReq = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

// writeMode is how a test writes its requests.
type writeMode int

const (
	oneByOne   writeMode = iota // each request after the answer to the last
	oneWrite                    // all pipelined in one write
	byteWrites                  // all pipelined, a byte per write
)

func TestFramingKeepAlive(t *testing.T) {
	addr, handled := edgeServer(t, Edge{}, echoBody)
	bad := smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "chunked", false)
	optionsBoth := "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	tests := []struct {
		name    string
		mode    writeMode
		reqs    []string
		status  []int // of the responses read
		handled int32
		closed  bool
	}{
		{"two GETs then both framings", oneByOne, []string{getReq, getReq, bad}, []int{200, 200, 400}, 2, true},
		{"pipelined", oneWrite, []string{getReq, getReq, bad}, []int{200, 200, 400}, 2, true},
		{"pipelined byte by byte", byteWrites, []string{getReq, getReq, bad}, []int{200, 200, 400}, 2, true},
		{"zero Content-Length keeps the connection", oneWrite,
			[]string{"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 000\r\n\r\n", getReq}, []int{200, 200}, 2, false},
		// net/http answers OPTIONS * itself: it must not shift the
		// verdicts of the requests after it.
		{"OPTIONS * then both framings", oneWrite, []string{"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", getReq, bad}, []int{200, 200, 400}, 1, true},
		{"OPTIONS * with both framings", oneWrite, []string{getReq, optionsBoth, getReq}, []int{200, 400}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := handled.Load()
			rc := dialRaw(t, addr)
			switch all := strings.Join(tt.reqs, ""); tt.mode {
			case oneWrite:
				rc.write(all)
			case byteWrites:
				for i := range len(all) {
					rc.write(all[i : i+1])
				}
			}
			for i, want := range tt.status {
				if tt.mode == oneByOne {
					rc.write(tt.reqs[i])
				}
				if got := rc.read(); got.status != want {
					t.Errorf("response %d: status %d (%q), want %d", i, got.status, got.body, want)
				}
			}
			if got := rc.closed(openWait(tt.closed)); got != tt.closed {
				t.Errorf("connection closed: %v, want %v", got, tt.closed)
			}
			if n := handled.Load() - before; n != tt.handled {
				t.Errorf("handler ran %d times, want %d", n, tt.handled)
			}
		})
	}
}

// openWait is how long closed waits: long for a close expected, short
// for a connection expected to stay open, which costs the whole wait.
func openWait(closed bool) time.Duration {
	if closed {
		return 5 * time.Second
	}
	return 200 * time.Millisecond
}

func TestFramingBodies(t *testing.T) {
	addr, handled := edgeServer(t, Edge{}, echoBody)
	post := "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
	chunked := "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	tests := []struct {
		name    string
		req     string
		handled int32 // the request after the body is never served
	}{
		{"Content-Length", post, 1},
		{"chunked", chunked, 1},
		{"Content-Length then a pipelined GET", post + getReq, 1},
		{"chunked then a pipelined GET", chunked + getReq, 1},
		{"GET with a body", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := handled.Load()
			rc := dialRaw(t, addr)
			rc.write(tt.req)
			got := rc.read()
			if got.status != 200 || got.body != "hello" {
				t.Errorf("got %d %q, want 200 \"hello\"", got.status, got.body)
			}
			if !got.close {
				t.Error("no Connection: close after a request with a body")
			}
			if !rc.closed(5 * time.Second) {
				t.Error("connection left open")
			}
			if n := handled.Load() - before; n != tt.handled {
				t.Errorf("handler ran %d times, want %d", n, tt.handled)
			}
		})
	}
}

func TestFramingWebSocket(t *testing.T) {
	up := websocket.Upgrader{}
	// Whether inspection ended at the upgrade head: the handler runs on
	// the goroutine that read it.
	passing := make(chan bool, 1)
	addr, _ := edgeServer(t, Edge{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc, ok := r.Context().Value(framingKey{}).(*framingConn)
		passing <- ok && fc.mode == framingPass
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // gorilla answered
		}
		defer ws.Close()
		for {
			mt, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(mt, b); err != nil {
				return
			}
		}
	}))
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// Bytes that would read as heads, had inspection not ended.
	msg := bytes.Repeat([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 100<<10/64)
	for i := range 3 {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo %d: %d bytes back, not the %d sent", i, len(got), len(msg))
		}
	}
	if !<-passing {
		t.Error("still inspecting after the upgrade")
	}
}

// selfSigned is a TLS configuration serving a fresh certificate for
// localhost, and one trusting it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca := testpki.NewCA(t, "chimirror framing test")
	certPEM, keyPEM := ca.Server(t, 1)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
}

func TestFramingTLS(t *testing.T) {
	serverCfg, clientCfg := selfSigned(t)
	type seen struct {
		ok            bool // connTLS was not nil
		name          string
		version       uint16
		handshakeDone bool
	}
	var got atomic.Pointer[seen]
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &seen{}
		if st := connTLS(r); st != nil {
			*s = seen{ok: true, name: st.ServerName, version: st.Version, handshakeDone: st.HandshakeComplete}
		}
		got.Store(s)
		echoBody(w, r)
	})
	tlsAddr, _ := edgeServer(t, Edge{TLS: serverCfg}, h)
	plainAddr, _ := edgeServer(t, Edge{}, h)
	tests := []struct {
		name   string
		addr   string
		cfg    *tls.Config // nil: plain TCP
		want   seen
		req    string
		status int
	}{
		{"TLS 1.3", tlsAddr, clientCfg, seen{true, "localhost", tls.VersionTLS13, true}, getReq, 200},
		{"TLS 1.2", tlsAddr, withMaxVersion(clientCfg, tls.VersionTLS12), seen{true, "localhost", tls.VersionTLS12, true}, getReq, 200},
		{"plain", plainAddr, nil, seen{}, getReq, 200},
		// The check reads the plaintext, under TLS.
		{"TLS both framings", tlsAddr, clientCfg, seen{}, smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "chunked", false), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got.Store(nil)
			rc := dialRaw(t, tt.addr)
			if tt.cfg != nil {
				tc := tls.Client(rc.c, tt.cfg)
				rc.c, rc.br = tc, bufio.NewReader(tc)
			}
			rc.write(tt.req)
			if r := rc.read(); r.status != tt.status {
				t.Fatalf("status %d (%q), want %d", r.status, r.body, tt.status)
			}
			s := got.Load()
			if tt.status != 200 {
				if s != nil {
					t.Errorf("handler ran, saw %+v", *s)
				}
				return
			}
			if s == nil {
				t.Fatal("handler did not run")
			}
			if *s != tt.want {
				t.Errorf("connTLS: %+v, want %+v", *s, tt.want)
			}
		})
	}
}

// TestFramingServesFiles: net/http's file responses go through the
// connection's ReadFrom (sendfile on plain TCP).
func TestFramingServesFiles(t *testing.T) {
	want := make([]byte, 1<<20)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	serverCfg, clientCfg := selfSigned(t)
	tlsAddr, _ := edgeServer(t, Edge{TLS: serverCfg}, h)
	plainAddr, _ := edgeServer(t, Edge{}, h)
	tests := []struct {
		name string
		url  string
	}{
		{"plain", "http://" + plainAddr + "/"},
		{"TLS", "https://" + tlsAddr + "/"},
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientCfg}}
	t.Cleanup(client.CloseIdleConnections)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || !bytes.Equal(got, want) {
				t.Errorf("status %d, %d bytes, not the file's %d", resp.StatusCode, len(got), len(want))
			}
		})
	}
}

func withMaxVersion(c *tls.Config, v uint16) *tls.Config {
	c = c.Clone()
	c.MaxVersion = v
	return c
}

func TestFramingLargeHead(t *testing.T) {
	addr, handled := edgeServer(t, Edge{}, echoBody)
	big := strings.Repeat("a", 80<<10)
	tests := []struct {
		name string
		req  string
	}{
		{"one long field", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + big + "\r\n\r\n"},
		{"many fields", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + strings.Repeat("X-Many: "+big[:1000]+"\r\n", 80) + "\r\n"},
		{"both framings past the limit", "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + big +
			"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"long request line", "GET /" + big + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := handled.Load()
			rc := dialRaw(t, addr)
			wrote := make(chan error, 1)
			// The server answers before reading it all, and may
			// reset the connection under the rest.
			go func() {
				_, err := io.WriteString(rc.c, tt.req)
				wrote <- err
			}()
			if got := rc.read(); got.status != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("status %d (%q), want 431", got.status, got.body)
			}
			if !rc.closed(5 * time.Second) {
				t.Error("connection left open")
			}
			if err := <-wrote; err != nil {
				t.Logf("write: %v", err)
			}
			if n := handled.Load() - before; n != 0 {
				t.Errorf("handler ran %d times", n)
			}
		})
	}
}

// chunkConn is a connection whose reads return chunks, then io.EOF.
type chunkConn struct {
	net.Conn // nil: only Read is called
	chunks   []string
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// split is one way a test cuts a stream into reads.
type split struct {
	name   string
	chunks []string
}

// splits cut stream in two at every offset, and a byte at a time.
func splits(stream string) []split {
	var all []split
	for i := range len(stream) + 1 {
		all = append(all, split{fmt.Sprintf("cut at %d", i), []string{stream[:i], stream[i:]}})
	}
	bytewise := split{name: "byte by byte"}
	for i := range len(stream) {
		bytewise.chunks = append(bytewise.chunks, stream[i:i+1])
	}
	return append(all, bytewise)
}

func TestFramingHeads(t *testing.T) {
	ok, closing, bad := verdict{}, verdict{closeAfter: true}, verdict{bad: true, closeAfter: true}
	long := strings.Repeat("a", 2*lineKeepBytes)
	optionsBody := "OPTIONS * HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"
	tests := []struct {
		name   string
		stream string
		want   []verdict
		keep   int // bytes let through before a refusal; 0: all of them
	}{
		{"bodyless then both framings", getReq + getReq + smuggle("HTTP/1.1", "Content-Length", "Transfer-Encoding", "chunked", false), []verdict{ok, ok, bad}, 0},
		{"nothing read after a body", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET / HTTP/1.1\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"zero lengths", "GET / HTTP/1.1\r\nContent-Length:  0 \r\n\r\nGET / HTTP/1.1\r\ncontent-length:\t00\r\n\r\n", []verdict{ok, ok}, 0},
		{"no length value", "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"long zero length", "GET / HTTP/1.1\r\nContent-Length: " + strings.Repeat("0", 2*lineKeepBytes) + "\r\n\r\n", []verdict{closing}, 0},
		{"both framings after a long line", "GET /" + long + " HTTP/1.1\r\nX-Long: " + long + "\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", []verdict{bad}, 0},
		{"a long name", "GET / HTTP/1.1\r\nX-" + long + ": 1\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"no colon", "GET / HTTP/1.1\r\nX\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"empty request line", "\r\n" + getReq, []verdict{closing}, 0},
		{"upgrade", "GET / HTTP/1.1\r\nuPgRaDe: websocket\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"CONNECT", "CONNECT h:443 HTTP/1.1\r\n\r\n" + getReq, []verdict{closing}, 0},
		{"a Unicode fold is another name", "GET / HTTP/1.1\r\nContent-Length: 0\r\nTranſfer-Encoding: chunked\r\n\r\n", []verdict{ok}, 0},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\nGET / HTTP/1.1\n\n", []verdict{ok, ok}, 0},
		{"a lone CR is no empty line", "GET / HTTP/1.1\r\n\r\r\nTransfer-Encoding: chunked\r\n\r\n", []verdict{closing}, 0},
		{"OPTIONS * is not asked for", "OPTIONS * HTTP/1.1\r\n\r\n" + getReq, []verdict{ok}, 0},
		{"OPTIONS * with a body", getReq + optionsBody + getReq, []verdict{ok}, len(getReq+optionsBody) - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOut, wantErr := tt.stream, io.EOF
			if tt.keep > 0 {
				wantOut, wantErr = tt.stream[:tt.keep], errFramingRefused
			}
			for _, sp := range splits(tt.stream) {
				c := &framingConn{Conn: &chunkConn{chunks: sp.chunks}}
				out, err := io.ReadAll(c)
				if err == nil { // ReadAll's io.EOF
					err = io.EOF
				}
				if string(out) != wantOut || !errors.Is(err, wantErr) {
					t.Fatalf("%s: got %q, %v; want %q, %v", sp.name, out, err, wantOut, wantErr)
				}
				if !slices.Equal(c.pending, tt.want) {
					t.Fatalf("%s: verdicts %+v, want %+v", sp.name, c.pending, tt.want)
				}
			}
		})
	}
}

func TestFramingVerdictUnread(t *testing.T) {
	c := &framingConn{Conn: &chunkConn{}}
	c.pending = []verdict{{}}
	tests := []struct {
		name      string
		ctx       context.Context
		bad, stop bool
	}{
		{"read", framingConnContext(context.Background(), c), false, false},
		// The one verdict was asked for above.
		{"fewer heads than requests", framingConnContext(context.Background(), c), true, true},
		{"not through framingListener", context.Background(), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(tt.ctx, "GET", "/", nil)
			if bad, stop := framingVerdict(r); bad != tt.bad || stop != tt.stop {
				t.Errorf("verdict %v, %v; want %v, %v", bad, stop, tt.bad, tt.stop)
			}
		})
	}
}

// discardConn is a connection whose reads fill p at once.
type discardConn struct{ net.Conn }

func (discardConn) Read(p []byte) (int, error) { return len(p), nil }

// BenchmarkFramingRead is a WebSocket relay's reads: through a connection
// past inspection against the bare one.
func BenchmarkFramingRead(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    net.Conn
	}{
		{"bare", discardConn{}},
		{"passing", &framingConn{Conn: discardConn{}, mode: framingPass}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := make([]byte, 4096)
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := bc.c.Read(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

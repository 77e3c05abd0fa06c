package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// dialFrom opens a WebSocket to s from the loopback address src
// (127.0.0.2, ...: all of 127/8 is this host), as a second client would.
func (s *testServer) dialFrom(src, path string, hdr http.Header) (*websocket.Conn, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return s.dialWith(websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}, path, hdr)
}

func dialStatus(err error) int {
	var de *dialError
	if errors.As(err, &de) {
		return de.status
	}
	return 0
}

// Ensure wrong tenant tokens are throttled per client address: after five,
// that address gets 429 with Retry-After and no process starts; its
// correct token still gets in, and another address is not locked out.
func TestEdge_TenantTokenThrottle(t *testing.T) {
	t.Parallel()
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}},
		Tenants: []supervisor.Tenant{tenant("alice", "alice-secret-0123456789abcdef0123456789", 0)}}, Options{})
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for i := range 5 {
		if _, err := s.dialFrom("127.0.0.2", "/apps/cat", bearer(fmt.Sprintf("guess-%d", i))); dialStatus(err) != http.StatusUnauthorized {
			t.Fatalf("guess %d: %v, want 401", i, err)
		}
	}
	_, err := s.dialFrom("127.0.0.2", "/apps/cat", bearer("guess-6"))
	var de *dialError
	if !errors.As(err, &de) || de.status != http.StatusTooManyRequests {
		t.Fatalf("sixth guess: %v, want 429", err)
	}
	// Until the first guess leaves the minute's window.
	if secs, err := strconv.Atoi(de.header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
		t.Fatalf("Retry-After %q, want the seconds left of the minute", de.header.Get("Retry-After"))
	}
	ws, err := s.dialFrom("127.0.0.2", "/apps/cat", bearer("alice-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatalf("alice's own token from the guessing address: %v", err)
	}
	ws.Close()
	if _, err := s.dialFrom("127.0.0.3", "/apps/cat", bearer("guess-7")); dialStatus(err) != http.StatusUnauthorized {
		t.Fatalf("another address: %v, want 401, not locked out", err)
	}
	if n := s.sup.Started(); n != 1 {
		t.Fatalf("%d processes started, want 1 (alice's)", n)
	}
}

// rawGet sends a GET with the given Host (and Origin, when set) and
// returns the status.
func rawGet(t *testing.T, base, path, host, origin string, hdr http.Header) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	req, err := http.NewRequest(http.MethodGet, u.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode // the body is the WebSocket: closing it ends the job
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// Ensure DNS rebinding fails: a Host that is not an IP literal, localhost
// or one of hosts gets 421 before anything else, on both listeners, and no
// job starts; a listed name and the address itself are served.
func TestEdge_HostCheck(t *testing.T) {
	t.Parallel()
	edge := Edge{Hosts: []string{"jobs.example.com"}}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}},
		Options{Edge: edge})
	port := s.URL[strings.LastIndexByte(s.URL, ':')+1:]
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	for _, tc := range []struct {
		name, host string
		want       int
	}{
		{"rebinding name", "evil.example:" + port, http.StatusMisdirectedRequest},
		{"rebinding name, trailing dot", "evil.example.:" + port, http.StatusMisdirectedRequest},
		{"listed name", "jobs.example.com:" + port, http.StatusSwitchingProtocols},
		{"listed name, other case", "JOBS.example.com", http.StatusSwitchingProtocols},
		{"the address", "127.0.0.1:" + port, http.StatusSwitchingProtocols},
		{"localhost", "localhost:" + port, http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.sup.Started()
			got := rawGet(t, s.URL, "/apps/cat", tc.host, "http://"+tc.host, upgrade)
			if got != tc.want {
				t.Fatalf("Host %s: %d, want %d", tc.host, got, tc.want)
			}
			if started := s.sup.Started() - before; (tc.want == http.StatusMisdirectedRequest) != (started == 0) {
				t.Fatalf("Host %s: %d jobs started", tc.host, started)
			}
		})
	}
	a := startAdminEdge(t, s, Edge{})
	if got := rawGet(t, a.URL, "/api/v1/healthz", "evil.example", "", nil); got != http.StatusMisdirectedRequest {
		t.Fatalf("admin with Host evil.example: %d, want 421", got)
	}
	if got := rawGet(t, a.URL, "/api/v1/healthz", strings.TrimPrefix(a.URL, "http://"), "", nil); got != http.StatusOK {
		t.Fatalf("admin healthz: %d", got)
	}
}

// startAdminEdge serves an admin listener for s's supervisor behind edge.
func startAdminEdge(t *testing.T, s *testServer, edge Edge) *httptest.Server {
	t.Helper()
	a := NewAdmin(testLogger(t), s.sup, AdminOptions{Edge: edge,
		Tokens: []AdminToken{{Label: "ops", SHA256: sha256.Sum256([]byte(adminSecret))}}})
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = a.HTTPServer()
	ts.Listener = edge.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(func() { a.Close(); ts.Close() })
	return ts
}

// Ensure base_path serves everything under the prefix and nothing outside
// it: the test page, the apps, the console, its API and its cookie.
func TestEdge_BasePath(t *testing.T) {
	t.Parallel()
	edge := Edge{BasePath: "/chimirror"}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{shApp("path", `echo "$SCRIPT_NAME|$REQUEST_URI"`)}},
		Options{Edge: edge})
	ws, err := s.tryDial("/chimirror/apps/path", nil, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	got := readSession(t, ws, 5*time.Second)
	ws.Close()
	if !strings.Contains(string(got.stdout), "/apps/path") {
		t.Fatalf("job under the base path printed %q", got.stdout)
	}
	if _, err := s.tryDial("/apps/path", nil); dialStatus(err) != http.StatusNotFound {
		t.Fatalf("an app outside the base path: %v, want 404", err)
	}
	host := strings.TrimPrefix(s.URL, "ws://")
	for _, tc := range []struct {
		path string
		want int
	}{{"/chimirror/", 200}, {"/", 404}, {"/chimirrorx/", 404}} {
		if got := rawGet(t, s.URL, tc.path, host, "", nil); got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + host + "/chimirror")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/chimirror/" {
		t.Fatalf("GET /chimirror: %d to %q, want a redirect to /chimirror/", resp.StatusCode, resp.Header.Get("Location"))
	}

	a := startAdminEdge(t, s, edge)
	for _, tc := range []struct {
		path string
		want int
	}{{"/chimirror/", 200}, {"/chimirror/static/console.js", 200}, {"/chimirror/api/v1/healthz", 200}, {"/api/v1/healthz", 404}} {
		if got := rawGet(t, a.URL, tc.path, strings.TrimPrefix(a.URL, "http://"), "", nil); got != tc.want {
			t.Errorf("admin GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
	resp, err = http.PostForm(a.URL+"/chimirror/login", url.Values{"token": {adminSecret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusNoContent || len(cookies) != 1 || cookies[0].Path != "/chimirror/" {
		t.Fatalf("login under the base path: %d, cookies %v; want 204 and a cookie for /chimirror/", resp.StatusCode, cookies)
	}
}

// Ensure a request body that trickles in is cut off: the connection is
// closed once the header and body timeouts have passed, on the admin
// listener, where bodies are read.
func TestEdge_SlowBody(t *testing.T) {
	t.Parallel()
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}}, Options{})
	a := startAdminEdge(t, s, Edge{ReadHeaderTimeout: 200 * time.Millisecond, BodyTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=", strings.TrimPrefix(a.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	// Trickle a byte every 100ms for up to 10s; the server must end it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReader(c)
		_, err := br.ReadString('\n') // the answer, or the close
		done <- err
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return // answered or closed: the body was not allowed to trickle on
		case <-ctx.Done():
			t.Fatal("a body trickling for 10s was still being read")
		case <-tick.C:
			if _, err := c.Write([]byte("x")); err != nil {
				<-done
				return // closed by the server
			}
		}
	}
}

// Ensure max_sessions_per_client keeps one address from taking every
// session: its next one is 429 with Retry-After, and another address
// still gets in.
func TestEdge_PerClientCap(t *testing.T) {
	t.Parallel()
	s := startServer(t, supervisor.Config{MaxSessionsPerClient: 2,
		Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}}, Options{})
	for i := range 2 {
		ws, err := s.dialFrom("127.0.0.2", "/apps/cat", nil)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		t.Cleanup(func() { ws.Close() })
	}
	_, err := s.dialFrom("127.0.0.2", "/apps/cat", nil)
	var de *dialError
	if !errors.As(err, &de) || de.status != http.StatusTooManyRequests || de.header.Get("Retry-After") == "" {
		t.Fatalf("third session from one address: %v, want 429 with Retry-After", err)
	}
	ws, err := s.dialFrom("127.0.0.3", "/apps/cat", nil)
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	ws.Close()
}

// Ensure a token shorter than 128 bits never gets in, even one whose hash
// the config holds: the hash cannot tell, so the door does.
func TestEdge_ShortTokenRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}},
		Tenants: []supervisor.Tenant{tenant("weak", "password123", 0)}}, Options{})
	_, resp, err := websocket.DefaultDialer.Dial(s.URL+"/apps/cat", http.Header{"Authorization": {"Bearer password123"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a short token: %v, want 401", err)
	}
	body, rerr := io.ReadAll(resp.Body)
	if rerr != nil || !strings.Contains(string(body), "must hold at least 128 bits (32 hex digits, 26 base32 or 22 base64 characters): make one with chimirror token") {
		t.Fatalf("401 body %q (%v), want it to say why", body, rerr)
	}
	if n := s.sup.Started(); n != 0 {
		t.Fatalf("%d jobs started", n)
	}
}

// Ensure a token's strength is judged by its alphabet: 128 bits is 32 hex
// digits, 26 base32 (crypto/rand.Text) or 22 base64 characters.
func TestTokenBits(t *testing.T) {
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"0123456789abcdef0123456789abcde", false},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", true}, // rand.Text's alphabet
		{"ABCDEFGHIJKLMNOPQRSTUVWXY", false},
		{"brDkuicR1ZRrV-xQBEqzD1", true},
		{"brDkuicR1ZRrV-xQBEqzD", false},
		{"password123", false},
		{"12345678901234567890123456789012345678", false},
		{"123456789012345678901234567890123456789", true},
	} {
		if got := tokenBits(tc.token) >= MinTokenBits; got != tc.ok {
			t.Errorf("%q: %.1f bits, accepted %v, want %v", tc.token, tokenBits(tc.token), got, tc.ok)
		}
	}
}

// Ensure a proxy in front that is not in trusted_proxies is named once in
// a warning (else every client is quietly one address), and a trusted one
// or a plain client never is.
func TestEdge_UntrustedProxyHint(t *testing.T) {
	var buf bytes.Buffer
	hint := newProxyHint(slog.New(slog.NewTextHandler(&buf, nil)), []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")})
	req := func(peer, xff string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = peer
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return r
	}
	hint.check(req("192.0.2.1:1000", ""))           // a plain client
	hint.check(req("10.0.0.1:1000", "203.0.113.9")) // the trusted proxy
	if buf.Len() != 0 {
		t.Fatalf("warned without cause: %s", buf.String())
	}
	hint.check(req("127.0.0.1:1000", "203.0.113.9"))
	hint.check(req("127.0.0.1:1001", "203.0.113.10"))
	if n := strings.Count(buf.String(), "not in trusted_proxies"); n != 1 || !strings.Contains(buf.String(), "peer=127.0.0.1") {
		t.Fatalf("%d warnings, want one naming the peer:\n%s", n, buf.String())
	}
}

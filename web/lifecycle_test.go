package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// ends records how each job ended, by app name.
type ends struct {
	mu    sync.Mutex
	byApp map[string][]supervisor.Exit
}

func (e *ends) hook(info supervisor.JobInfo, x supervisor.Exit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byApp == nil {
		e.byApp = map[string][]supervisor.Exit{}
	}
	e.byApp[info.App] = append(e.byApp[info.App], x)
}

func (e *ends) wait(t *testing.T, app string, timeout time.Duration) supervisor.Exit {
	t.Helper()
	var x supervisor.Exit
	waitFor(t, timeout, "end of a job of "+app, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if l := e.byApp[app]; len(l) > 0 {
			x = l[0]
			e.byApp[app] = l[1:]
			return true
		}
		return false
	})
	return x
}

// Ensure refusals happen before the upgrade, with a clear body and status,
// and start no process.
func TestRefusals(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{MaxSessions: 1, Apps: []supervisor.App{
		{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}},
	}}
	s := startServer(t, cfg, Options{})
	s.dial("/apps/cat", ProtoV1) // takes the only slot
	started := s.sup.Started()

	tests := []struct {
		name   string
		path   string
		hdr    http.Header
		protos []string
		status int
		body   string
	}{
		{"over max_sessions", "/apps/cat", nil, nil, http.StatusTooManyRequests, "too many sessions"},
		{"bad origin", "/apps/cat", http.Header{"Origin": {"https://evil.example"}}, nil, http.StatusForbidden, "origin"},
		{"unknown app", "/apps/nope", nil, nil, http.StatusNotFound, "unknown app"},
		{"encoded slash", "/apps/..%2f..%2fbin%2fsh", nil, nil, http.StatusNotFound, "unknown app"},
		{"encoded dots", "/apps/%2e%2e", nil, nil, http.StatusNotFound, "unknown app"},
		{"dot segments", "/apps/cat/../x", nil, nil, http.StatusNotFound, "unknown app"},
		{"encoded name", "/apps/%63at", nil, nil, http.StatusNotFound, "unknown app"},
		{"case", "/apps/CAT", nil, nil, http.StatusNotFound, "unknown app"},
		{"nul", "/apps/cat%00", nil, nil, http.StatusNotFound, "unknown app"},
		{"unsupported sub-protocol", "/apps/cat", nil, []string{"mqtt"}, http.StatusBadRequest, "unsupported sub-protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.tryDial(tc.path, tc.hdr, tc.protos...)
			var de *dialError
			if !errors.As(err, &de) || de.status != tc.status {
				t.Fatalf("got %v, want HTTP %d", err, tc.status)
			}
			if tc.status == http.StatusTooManyRequests && de.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	// Bodies are for humans: check them over plain HTTP with upgrade headers.
	for _, tc := range tests {
		if tc.protos != nil || tc.hdr != nil {
			continue
		}
		body, code := upgradeRequest(t, s, tc.path)
		if code != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.name, code, body, tc.status, tc.body)
		}
	}
	if got := s.sup.Started(); got != started {
		t.Fatalf("%d processes were started by refused requests", got-started)
	}
	// A plain GET of an app is told it is a WebSocket endpoint.
	resp, err := http.Get("http" + strings.TrimPrefix(s.URL, "ws") + "/apps/cat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
}

func upgradeRequest(t *testing.T, s *testServer, path string) (string, int) {
	t.Helper()
	req, err := http.NewRequest("GET", "http"+strings.TrimPrefix(s.URL, "ws")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
	}
	return b.String(), resp.StatusCode
}

// Ensure an allow-listed origin is accepted and same-origin is the default.
func TestOrigins(t *testing.T) {
	t.Parallel()
	app := supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}}
	s := startServer(t, app, Options{Origins: []string{"https://ok.example"}})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"https://ok.example", true}, {"https://OK.example", true}, {"https://evil.example", false}, {"null", false}} {
		ws, err := s.tryDial("/apps/cat", http.Header{"Origin": {tc.origin}})
		if (err == nil) != tc.ok {
			t.Errorf("origin %q: err %v, want ok=%v", tc.origin, err, tc.ok)
		}
		if ws != nil {
			ws.Close()
		}
	}
}

func TestOrigins_SameOriginDefault(t *testing.T) {
	t.Parallel()
	app := supervisor.Config{Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}}
	s := startServer(t, app, Options{})
	host := strings.TrimPrefix(s.URL, "ws://")
	ws, err := s.tryDial("/apps/cat", http.Header{"Origin": {"http://" + host}})
	if err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
	ws.Close()
	if _, err := s.tryDial("/apps/cat", http.Header{"Origin": {"http://other:1"}}); err == nil {
		t.Fatal("cross origin accepted")
	}
}

// lifecycleServer runs apps whose first stdout line is their pid.
func lifecycleServer(t *testing.T, e *ends, lim Limits) *testServer {
	ignoreTerm := shApp("ignoreterm", `trap '' TERM; echo $$; while :; do sleep 0.05; done`)
	ignoreTerm.Grace = 300 * time.Millisecond
	polite := shApp("polite", `trap 'echo bye; exit 0' TERM; echo $$; while :; do sleep 0.05; done`)
	cat := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}
	cfg := supervisor.Config{Drain: 300 * time.Millisecond, OnEnd: e.hook, Apps: []supervisor.App{
		ignoreTerm, polite, cat,
		// Long lines: the race detector is slow per frame, and we want the
		// TCP buffers full, not millions of one-byte frames.
		shApp("yes", `exec yes "$(printf '%01000d' 0)"`),
		shApp("endless", `yes | tr -d '\n'`),
		shApp("stdin2file", `: > "$OUT"; echo $$; exec cat >> "$OUT"`),
		shApp("escapee", `setsid sh -c 'echo $$; exec sleep 30' & wait_for=1; sleep 0.1; echo leader-done`),
	}}
	cfg.Apps[5].Env = append(cfg.Apps[5].Env, "OUT="+filepath.Join(t.TempDir(), "stdin"))
	return startServer(t, cfg, Options{Limits: lim})
}

func readPid(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	line := readLine(t, ws)
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q: %v", line, err)
	}
	return pid
}

// Ensure every way a client can vanish ends the job: exit signal, grace, kill,
// and the process is gone with no zombie.
func TestClientGone(t *testing.T) {
	t.Parallel()
	var e ends
	s := lifecycleServer(t, &e, Limits{PingInterval: 100 * time.Millisecond, PongTimeout: 150 * time.Millisecond})
	tests := []struct {
		name   string
		app    string
		leave  func(ws *websocket.Conn)
		detail string
	}{
		{"close frame", "polite", func(ws *websocket.Conn) {
			if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
				t.Fatal(err)
			}
		}, "client closed"},
		{"dropped TCP", "polite", func(ws *websocket.Conn) { ws.UnderlyingConn().Close() }, ""},
		{"missed pong", "polite", func(ws *websocket.Conn) {
			ws.SetPingHandler(func(string) error { return nil }) // never answer
			go func() {                                          // keep reading so pings are seen and dropped
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
				}
			}()
		}, "no pong"},
		{"ignores TERM", "ignoreterm", func(ws *websocket.Conn) { ws.UnderlyingConn().Close() }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := s.dial("/apps/" + tc.app)
			pid := readPid(t, ws)
			left := time.Now()
			tc.leave(ws)
			x := e.wait(t, tc.app, 5*time.Second)
			if x.Reason != supervisor.ReasonClientGone || !strings.Contains(x.Detail, tc.detail) {
				t.Fatalf("end %+v, want client-gone (%q)", x, tc.detail)
			}
			waitFor(t, 2*time.Second, "pid gone", func() bool { return pidGone(pid) })
			if tc.app == "ignoreterm" {
				if x.Status.Signal.String() != "killed" {
					t.Fatalf("TERM-ignoring job ended with %v, want SIGKILL after grace", x.Status)
				}
				if d := time.Since(left); d > 300*time.Millisecond+time.Second+500*time.Millisecond {
					t.Errorf("gone after %v; grace is 300ms", d)
				}
			}
		})
	}
}

// Ensure an oversized client message gets close 1009, ends the job, and none
// of it reaches stdin.
func TestOversizedMessage(t *testing.T) {
	t.Parallel()
	var e ends
	s := lifecycleServer(t, &e, Limits{MaxMessageBytes: 1024})
	ws := s.dial("/apps/stdin2file")
	readPid(t, ws)
	app, _ := s.sup.App("stdin2file")
	var outFile string
	for _, kv := range app.Env {
		if p, ok := strings.CutPrefix(kv, "OUT="); ok {
			outFile = p
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("got %v, want close 1009", err)
	}
	x := e.wait(t, "stdin2file", 5*time.Second)
	if x.Reason != supervisor.ReasonClientGone || !strings.Contains(x.Detail, "too big") {
		t.Fatalf("end %+v", x)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 0 {
		t.Fatalf("stdin received %d bytes of the oversized message", len(b))
	}
}

// Ensure an endless line is split at max_line_bytes and memory stays flat.
func TestEndlessLine(t *testing.T) {
	t.Parallel()
	var e ends
	s := lifecycleServer(t, &e, Limits{MaxLineBytes: 4096})
	ws := s.dial("/apps/endless")
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 8000 // 32 MiB of one line
	for i := 0; i < n; i++ {
		if err := ws.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(m) != 4096 {
			t.Fatalf("message %d has %d bytes, want the 4096 cap", i, len(m))
		}
	}
	// What is held, not garbage yet uncollected: parallel tests make
	// garbage of their own.
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
		t.Fatalf("heap grew %d bytes while streaming one 32 MiB line", grew)
	}
}

// Ensure a client that never reads is dropped at the write timeout, the
// program is held by backpressure, and server memory stays flat.
func TestSlowReader(t *testing.T) {
	var e ends
	s := lifecycleServer(t, &e, Limits{WriteTimeout: 300 * time.Millisecond, PingInterval: -1})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.dial("/apps/yes") // and never read
	x := e.wait(t, "yes", 10*time.Second)
	if x.Reason != supervisor.ReasonClientGone || !strings.Contains(x.Detail, "timeout") {
		t.Fatalf("end %+v, want client-gone by write timeout", x)
	}
	// What is held, not garbage yet uncollected: parallel tests make
	// garbage of their own.
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
		t.Fatalf("heap grew %d bytes for a client that never reads", grew)
	}
}

// Ensure the server pings by default.
func TestKeepalivePings(t *testing.T) {
	var e ends
	s := lifecycleServer(t, &e, Limits{PingInterval: 50 * time.Millisecond})
	ws := s.dial("/apps/cat")
	pings := make(chan struct{}, 10)
	ws.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-pings:
		case <-time.After(3 * time.Second):
			t.Fatalf("ping %d never came", i)
		}
	}
	if DefaultLimits().PingInterval <= 0 {
		t.Fatal("pings are off by default")
	}
}

// Ensure slowloris on the upgrade is cut off by ReadHeaderTimeout and huge
// headers are refused.
func TestHTTPTimeouts(t *testing.T) {
	var e ends
	s := lifecycleServer(t, &e, Limits{ReadHeaderTimeout: 500 * time.Millisecond})
	addr := strings.TrimPrefix(s.URL, "ws://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprint(c, "GET /apps/cat HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	dropped := false
	for i := 0; i < 20 && !dropped; i++ { // trickle one header per 200ms for 4s
		time.Sleep(200 * time.Millisecond)
		if _, err := fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i); err != nil {
			dropped = true
		}
		if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil && !isTimeout(err) {
			dropped = true
		} else if err == nil {
			dropped = true // the server answered (408) and will close
		}
	}
	if !dropped {
		t.Fatal("a client trickling headers was still connected after 4s")
	}

	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %d", resp.StatusCode)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Ensure a session ends after the drain bound when an escaped descendant
// holds the job's stdout open.
func TestDrainBound(t *testing.T) {
	var e ends
	s := lifecycleServer(t, &e, Limits{})
	ws := s.dial("/apps/escapee", ProtoV1)
	got := readSession(t, ws, 5*time.Second)
	if got.exit == nil || got.exit.Code != 0 {
		t.Fatalf("exit %+v", got.exit)
	}
	lines := strings.Fields(string(got.stdout))
	if len(lines) < 2 || lines[len(lines)-1] != "leader-done" {
		t.Fatalf("stdout %q", got.stdout)
	}
	// The escapee left its process group; the sandbox issue kills it by cgroup.
	if pid, err := strconv.Atoi(lines[0]); err == nil {
		if p, err := os.FindProcess(pid); err == nil {
			if err := p.Kill(); err != nil {
				t.Logf("escapee %d: %v", pid, err)
			}
		}
	}
}

// Ensure Shutdown ends live jobs with reason shutdown and close 1001.
func TestShutdownEndsJobs(t *testing.T) {
	t.Parallel()
	var e ends
	s := lifecycleServer(t, &e, Limits{})
	ws := s.dial("/apps/polite", ProtoV1)
	waitForStdout(t, ws, "\n")
	done := make(chan session, 1)
	go func() { done <- readSession(t, ws, 10*time.Second) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.sup.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.exit == nil || got.exit.Reason != "shutdown" || got.closeCode != websocket.CloseGoingAway {
		t.Fatalf("exit %+v close %d", got.exit, got.closeCode)
	}
	if !strings.Contains(string(got.stdout), "bye") {
		t.Fatalf("the job did not get its exit signal: stdout %q", got.stdout)
	}
	if _, err := s.tryDial("/apps/cat", nil); err == nil {
		t.Fatal("a job started after shutdown")
	}
}

// Ensure Cancel ends a job with reason cancelled.
func TestCancel(t *testing.T) {
	t.Parallel()
	var e ends
	s := lifecycleServer(t, &e, Limits{})
	ws := s.dial("/apps/polite", ProtoV1)
	waitForStdout(t, ws, "\n")
	jobs := s.sup.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v", jobs)
	}
	if err := s.sup.Cancel(jobs[0].ID, "test"); err != nil {
		t.Fatal(err)
	}
	got := readSession(t, ws, 5*time.Second)
	if got.exit == nil || got.exit.Reason != "cancelled" {
		t.Fatalf("exit %+v", got.exit)
	}
	if err := s.sup.Cancel("JOB99999999", "test"); !errors.Is(err, supervisor.ErrNoJob) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

// Ensure no goroutine a job starts outlives it.
func TestNoGoroutineLeak(t *testing.T) {
	var e ends
	// The write timeout ends the clients that never read; at 200 ms a
	// loaded CI machine (-race, 30 sessions on two cores) also timed out
	// the exit and close frame of a client that was reading (close 1006).
	s := lifecycleServer(t, &e, Limits{WriteTimeout: time.Second, PingInterval: 50 * time.Millisecond})
	// Warm up the HTTP server's own goroutines.
	s.dial("/apps/cat").Close()
	waitFor(t, 5*time.Second, "idle", func() bool { return s.sup.Running() == 0 })
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(3)
		go func() { // normal exit
			defer wg.Done()
			ws := s.dial("/apps/cat", ProtoV1)
			sendEvent(t, ws, "/stdin/close", nil, 0)
			readSession(t, ws, 5*time.Second)
		}()
		go func() { // client drops
			defer wg.Done()
			ws := s.dial("/apps/polite")
			readPid(t, ws)
			ws.UnderlyingConn().Close()
		}()
		go func() { // never reads
			defer wg.Done()
			s.dial("/apps/yes")
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "all jobs ended", func() bool { return s.sup.Running() == 0 })
	waitFor(t, 5*time.Second, fmt.Sprintf("goroutines back to %d", base), func() bool {
		return runtime.NumGoroutine() <= base+1
	})
}

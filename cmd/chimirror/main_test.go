package main

// Binary-level end-to-end tests for `chimirror serve`. TestMain builds the
// real binary once; every test runs it as a subprocess on 127.0.0.1 and talks
// to it with real WebSocket clients or the real `chimirror connect`.
// The shared harness (processes, servers, clients) is in this file too;
// cli_test.go holds the tests of `chimirror connect` and the command line.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chimirror/chimirror/internal/cli"
	"github.com/gorilla/websocket"
)

// chimirrorBin is the binary under test, built by TestMain (or CHIMIRROR_TEST_BIN).
var chimirrorBin string

// Bounds for every wait. They only decide when a broken binary is declared
// hung; nothing asserts on speed. CHIMIRROR_TEST_SLOW multiplies them on a
// slow machine (make test-cgroup2's VM emulates its CPU in software).
var (
	startTimeout = slow(10 * time.Second) // until serve prints its address
	runTimeout   = slow(10 * time.Second) // a short-lived command, start to exit
	ioTimeout    = slow(5 * time.Second)  // one message, one line of output
)

// slowEnv names the factor slow multiplies by: a whole number, 1 if unset.
const slowEnv = "CHIMIRROR_TEST_SLOW"

// slow is d on this machine: d times CHIMIRROR_TEST_SLOW.
func slow(d time.Duration) time.Duration {
	n, err := strconv.Atoi(os.Getenv(slowEnv))
	if err != nil || n < 1 {
		return d
	}
	return d * time.Duration(n)
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

// testBinEnv names a prebuilt chimirror binary to test instead of building
// one: where there is no Go toolchain (make test-cgroup2's VM) the binary
// is built beside the test binary, with the same flags, and handed over.
const testBinEnv = "CHIMIRROR_TEST_BIN"

func testMain(m *testing.M) int {
	if bin := os.Getenv(testBinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", testBinEnv, err)
			return 1
		}
		chimirrorBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "chimirror-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	chimirrorBin = filepath.Join(dir, "chimirror")
	args := []string{"build", "-o", chimirrorBin}
	if cli.RaceEnabled() {
		args = append(args, "-race") // a data race in the server fails the test that triggers it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build chimirror:", err)
		return 1
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Harness

// syncBuffer collects a subprocess's output and wakes waiters on every write.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }

// Len is how many bytes came, without a copy of them (a test polling a
// 12 MB stream every millisecond would otherwise copy gigabytes a second,
// holding the lock the writer needs).
func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// waitMatch waits until re matches the output and returns the submatches.
// It gives up after timeout, or once stop is closed and the output (final by
// then) still does not match.
func (b *syncBuffer) waitMatch(re *regexp.Regexp, timeout time.Duration, stop <-chan struct{}) ([]string, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.buf.String())
		changed := b.changed
		b.mu.Unlock()
		if m != nil {
			return m, true
		}
		select {
		case <-changed:
		case <-stop:
			stop = nil // one last look: the output is complete now
			if m := re.FindStringSubmatch(b.String()); m != nil {
				return m, true
			}
			return nil, false
		case <-timer.C:
			return nil, false
		}
	}
}

// proc is one chimirror subprocess.
type proc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	waitErr error // from cmd.Wait; the exit status is in cmd.ProcessState
	stdout  *syncBuffer
	stderr  *syncBuffer
	done    chan struct{} // closed once the process has exited and its output is in
}

// startProc runs the chimirror binary in dir with args. stdin may be nil (no
// input). The process is killed, if still running, when the test ends.
func startProc(t *testing.T, dir string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	return startProcBin(t, chimirrorBin, dir, stdin, args...)
}

// startProcBin is startProc of the chimirror binary at bin.
func startProcBin(t *testing.T, bin, dir string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	return startProcWith(t, bin, dir, stdin, nil, args...)
}

// startProcWith is startProcBin with setup, when not nil, given the
// command to change (its environment, its extra files) before it starts.
func startProcWith(t *testing.T, bin, dir string, stdin io.Reader, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: "chimirror " + strings.Join(args, " "), stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	// Quick mode's data dir is under the state dir: the test's own.
	p.cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(dir, ".state"))
	if _, set := os.LookupEnv("GORACE"); !set {
		// A -race binary otherwise sleeps 1s at every exit.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=50")
	}
	p.cmd.Stdin = stdin
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 2 * time.Second // never hang on an inherited pipe
	bornInUnit(t, p.cmd, dir, args)   // on cgroup v2: a cgroup of its own, as systemd gives a service
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait() // an exit status is read from ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		// SIGTERM first: a server ends its jobs and deletes their cgroups.
		if !p.exited() {
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("%s: SIGTERM: %v", p.name, err)
			}
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("%s: SIGKILL: %v", p.name, err)
			}
			select {
			case <-p.done:
			case <-time.After(ioTimeout):
				t.Errorf("%s: still running after SIGKILL", p.name)
			}
		}
		if out := p.stderr.String(); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("%s: data race:\n%s", p.name, out)
		} else if t.Failed() {
			t.Logf("%s: stderr:\n%s", p.name, out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most timeout for the process to exit and returns its exit
// code (-1 when a signal killed it). On timeout the test fails and stops.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s: still running after %v\nstdout:\n%s\nstderr:\n%s", p.name, timeout, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: send %v: %v", p.name, sig, err)
	}
}

// runCLI runs chimirror to completion and returns its output and exit code.
func runCLI(t *testing.T, dir string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var in io.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	p := startProc(t, dir, in, args...)
	code = p.wait(runTimeout)
	return p.stdout.String(), p.stderr.String(), code
}

// startInteractive starts chimirror with a stdin the test writes and closes.
func startInteractive(t *testing.T, dir string, args ...string) (*proc, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	p := startProc(t, dir, r, args...)
	r.Close() // the child has its copy
	return p, w
}

// server is a running `chimirror serve`.
type server struct {
	*proc
	addr  string // host:port, parsed from the startup line
	admin string // the admin listener's host:port
}

var adminRe = regexp.MustCompile(`chimirror: operator console at http://([^/\s]+)/`)

var addrRe = regexp.MustCompile(`chimirror: test page at http://([^/\s]+)/\S*; apps at ws://\S+?/apps/\{([^}]*)\}`)

// startServer runs `chimirror serve --listen 127.0.0.1:0 --admin-listen
// 127.0.0.1:0 ARGS...` in dir and waits for the addresses it prints.
func startServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	p := startProc(t, dir, nil, append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
	m, ok := p.stderr.waitMatch(addrRe, startTimeout, p.done)
	if !ok {
		t.Fatalf("%s: no address line (exited: %v)\nstderr:\n%s", p.name, p.exited(), p.stderr)
	}
	am, ok := p.stderr.waitMatch(adminRe, startTimeout, p.done)
	if !ok {
		t.Fatalf("%s: no admin address line\nstderr:\n%s", p.name, p.stderr)
	}
	return &server{proc: p, addr: m[1], admin: am[1]}
}

// apps is the app list of the startup line.
func (s *server) apps() string {
	m := addrRe.FindStringSubmatch(s.stderr.String())
	return m[2]
}

func (s *server) url(scheme, path string) string { return scheme + "://" + s.addr + path }

// stop sends sig and returns serve's exit code.
func (s *server) stop(sig syscall.Signal, timeout time.Duration) int {
	s.t.Helper()
	s.signal(sig)
	return s.wait(timeout)
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func httpGet(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: ioTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func dialWS(t *testing.T, url string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: ioTimeout, Subprotocols: subprotocols}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readWS reads one message, failing the test after ioTimeout.
func readWS(t *testing.T, c *websocket.Conn) (int, []byte) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	mt, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read from %s: %v", c.RemoteAddr(), err)
	}
	return mt, p
}

// readCloseCode reads until the server's close frame and returns its code.
func readCloseCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		t.Fatalf("read from %s: want a close frame, got %v", c.RemoteAddr(), err)
	}
}

// linesEcho checks a text-lines round trip through a cat-like app.
func linesEcho(t *testing.T, url string) {
	t.Helper()
	c := dialWS(t, url)
	for _, line := range []string{"hello", "héllo wörld €😀"} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(line)); err != nil {
			t.Fatalf("write to %s: %v", url, err)
		}
		mt, p := readWS(t, c)
		if mt != websocket.TextMessage || string(p) != line {
			t.Errorf("%s: sent %q, got message type %d %q", url, line, mt, p)
		}
	}
}

// groupMembers lists the processes that are pid itself or in process group
// pid, with their state letter (Z: a zombie, dead but not yet reaped).
func groupMembers(pid int) map[int]string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		panic("cannot list processes: " + err.Error())
	}
	out := make(map[int]string)
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 {
			continue
		}
		if pgrp, _ := strconv.Atoi(f[2]); n == pid || pgrp == pid {
			out[n] = f[0]
		}
	}
	return out
}

// waitJobGone waits (bounded) until the job whose leader is pid has left no
// process running in its process group (the leader's pid is the pgid), and
// /proc/PID itself is gone. With zombieOK, an unreaped leader passes too: it
// is dead, and reaping it is up to whoever inherited it.
func waitJobGone(t *testing.T, pid int, zombieOK bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		left := groupMembers(pid)
		for n, state := range left {
			// A zombie group member is dead; once the server is gone
			// it is init's to reap, not chimirror's.
			if state == "Z" && (n != pid || zombieOK) {
				delete(left, n)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("job %d: left behind (pid: state) %v", pid, left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Configuration

// TestServeConfigErrors: every invalid configuration makes serve exit 1 at
// once, naming each problem as FILE:LINE: KEY: message.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	const app = "\n[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n"
	tests := []struct {
		name  string
		toml  string
		setup func(t *testing.T, dir string)
		// want are regexps, each matching one whole problem line after
		// "FILE:"; exactly these problem lines must be printed.
		want     []string
		knownBug string
	}{
		{
			name: "unknown top-level key",
			toml: "listen = \"127.0.0.1:0\"\nbogus = 1\n" + app,
			want: []string{`2: bogus: unknown key`},
		},
		{
			name: "unknown app key",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\nfrobnicate = true\n",
			want: []string{`4: app\.frobnicate: unknown key`},
		},
		{
			name: "unknown table reported once, not per key",
			toml: "[extra]\nfoo = 1\nbar = 2\n" + app,
			want: []string{`1: extra: unknown key`},
		},
		{
			name: "unknown key after a multi-line command string",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"sh\", \"-c\", '''\nbogus = \"inside the script\"\necho hi\n''']\nbogus = 1\n",
			want: []string{`7: app\.bogus: unknown key`},
		},
		{
			name: "unknown key in two apps reported once each",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\nfrob = 1\n\n[[app]]\nname = \"b\"\ncommand = [\"cat\"]\nfrob = 2\n",
			want: []string{`4: app\.frob: unknown key`, `9: app\.frob: unknown key`},
		},
		{
			name: "unknown key after a multi-line array holding a multi-line string",
			toml: "[[app]]\nname = \"a\"\ncommand = [\n  \"sh\", \"-c\", '''\ntimeout=3\necho $timeout\n''',\n]\ntimeout = \"5s\"\n",
			want: []string{`9: app\.timeout: unknown key`},
		},
		{
			name: "bad duration in the second app",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\ngrace = \"5s\"\n\n[[app]]\nname = \"b\"\ncommand = [\"cat\"]\ngrace = \"5x\"\n",
			want: []string{`9: app(\[1\])?\.grace: bad duration "5x": use a number with a unit.*`},
		},
		{
			name: "bad top-level duration",
			toml: "listen = \"127.0.0.1:0\"\ndrain = \"1y\"\n" + app,
			want: []string{`2: drain: bad duration "1y".*`},
		},
		{
			name: "negative duration",
			toml: "ping_interval = \"-1s\"\n" + app,
			want: []string{`1: ping_interval: duration "-1s" must not be negative`},
		},
		{
			name: "missing command falls back to the app's header line",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n\n[[app]]\nname = \"b\"\nenv = [\"LANG\"]\n",
			want: []string{`5: app\[1\]\.command: missing: .*`},
		},
		{
			name: "empty command",
			toml: "[[app]]\nname = \"a\"\ncommand = []\n",
			want: []string{`3: app\[0\]\.command: missing: .*`},
		},
		{
			name: "duplicate app names",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n\n[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n",
			want: []string{`6: app\[1\]\.name: duplicate app name "a" \(first at line 2\)`},
		},
		{
			name: "command not in PATH",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"chimirror-no-such-program\"]\n",
			want: []string{`3: app\[0\]\.command: "chimirror-no-such-program" not found in PATH`},
		},
		{
			name: "relative command missing or not executable",
			toml: "[[app]]\nname = \"a\"\ncommand = [\"./notexec.sh\"]\n\n[[app]]\nname = \"b\"\ncommand = [\"./missing.sh\"]\n",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "notexec.sh"), "#!/bin/sh\n")
			},
			want: []string{
				`3: app\[0\]\.command: "\./notexec\.sh" is not an executable file`,
				`7: app\[1\]\.command: "\./missing\.sh": stat .*missing\.sh: no such file or directory`,
			},
		},
		{
			name: "every semantic problem of an app at once",
			toml: "[[app]]\nname = \"Bad Name\"\ncommand = [\"cat\"]\nexit_signal = \"FOO\"\ndir = \"nowhere\"\nenv = [\"1BAD\"]\n",
			want: []string{
				`2: app\[0\]\.name: "Bad Name" is not a valid app name .*`,
				`4: app\[0\]\.exit_signal: unknown signal "FOO" \(use one of HUP INT .* XFSZ\)`,
				`5: app\[0\]\.dir: "nowhere" is not a directory`,
				`6: app\[0\]\.env: "1BAD" is not a variable name`,
			},
		},
		{
			name: "top-level semantic problems",
			toml: "max_sessions = -1\norigins = [\"example.com\"]\n" + app,
			want: []string{
				`1: max_sessions: must not be negative`,
				`2: origins: "example.com" must be an origin like "https://example.com"`,
			},
		},
		{
			name: "wrong type",
			toml: "listen = \"127.0.0.1:0\"\nmax_sessions = \"ten\"\n" + app,
			want: []string{`2: max_sessions: must be an integer, not a string`},
		},
		{
			name: "malformed TOML: missing value",
			toml: "listen = \"127.0.0.1:0\"\nmax_sessions = = 3\n" + app,
			want: []string{`2: max_sessions: unexpected character U\+003D '=' at start of value`},
		},
		{
			name: "malformed TOML: unterminated string",
			toml: "[[app]]\nname = \"a\ncommand = [\"cat\"]\n",
			want: []string{`2: app\.name: basic strings cannot have new lines`},
		},
		{
			name: "malformed TOML: unclosed array-of-tables header",
			toml: "listen = \"127.0.0.1:0\"\n[[app]\nname = \"a\"\n",
			want: []string{`2: expected ']]' to close array table name`},
		},
		{
			name: "duplicate app names in inline tables",
			toml: "app = [\n  { name = \"a\", command = [\"cat\"] },\n  { name = \"a\", command = [\"cat\"] },\n]\n",
			want: []string{`3: app\[1\]\.name: duplicate app name "a" \(first at line 2\)`},
		},
		{
			name: "no app",
			toml: "listen = \"127.0.0.1:0\"\n",
			want: []string{` no \[\[app\]\] configured: add at least one`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.knownBug != "" {
				t.Skip("KNOWN BUG: " + tc.knownBug)
			}
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			cfg := writeFile(t, filepath.Join(dir, "bad.toml"), tc.toml)
			_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", cfg)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if strings.Contains(stderr, "test page at") {
				t.Errorf("serve started despite the bad config:\n%s", stderr)
			}
			if !strings.HasPrefix(stderr, "chimirror: invalid configuration:\n") {
				t.Errorf("stderr does not start with the error header:\n%s", stderr)
			}
			var problems []string
			for _, l := range strings.Split(stderr, "\n") {
				if rest, ok := strings.CutPrefix(l, cfg+":"); ok {
					problems = append(problems, rest)
				}
			}
			unmatched := append([]string(nil), problems...)
		want:
			for _, w := range tc.want {
				re := regexp.MustCompile("^" + w + "$")
				for i, p := range unmatched {
					if re.MatchString(p) {
						unmatched = append(unmatched[:i], unmatched[i+1:]...)
						continue want
					}
				}
				t.Errorf("no problem line %s:%s", cfg, w)
			}
			if len(unmatched) > 0 {
				t.Errorf("unexpected problem lines (%d printed, %d wanted): %q", len(problems), len(tc.want), unmatched)
			}
		})
	}
}

func TestServeMissingConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.toml")
	_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", missing)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := "read config: open " + missing + ": no such file or directory"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}

// TestEmbeddedDefaultIsRepoConfig: the binary's built-in config is the
// repository's example chimirror.toml, byte for byte.
func TestEmbeddedDefaultIsRepoConfig(t *testing.T) {
	t.Parallel()
	repo, err := os.ReadFile("../../chimirror.toml")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := os.ReadFile("default.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(embedded, repo) {
		t.Errorf("cmd/chimirror/default.toml differs from chimirror.toml: copy the repository's file over it")
	}
	if !bytes.Equal(defaultConfig, repo) {
		t.Errorf("the embedded defaultConfig differs from chimirror.toml")
	}
}

// TestServeEmbeddedDefault: with no --config and no ./chimirror.toml, serve
// runs the embedded apps.
func TestServeEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir)
	if got := srv.apps(); got != "demo,echo" {
		t.Errorf("startup line lists apps {%s}, want {demo,echo}", got)
	}
	if !strings.Contains(srv.stderr.String(), `config="(embedded default)"`) {
		t.Errorf("log does not name the embedded default as the config source")
	}
	linesEcho(t, srv.url("ws", "/apps/echo"))

	stdout, stderr, code := runCLI(t, dir, []byte("ping\n"), "connect", srv.url("ws", "/apps/demo?code=4"))
	if code != 4 || !strings.Contains(stdout, "out: ping\n") || !strings.Contains(stderr, "err: ping\n") {
		t.Errorf("demo: exit %d, stdout %q, stderr %q; want exit 4 with out: ping / err: ping", code, stdout, stderr)
	}

	status, _, body := httpGet(t, srv.url("http", "/apps/nope"))
	if status != http.StatusNotFound || !strings.Contains(body, `unknown app "nope"`) {
		t.Errorf("GET /apps/nope: %d %q, want 404 unknown app", status, body)
	}
	status, _, body = httpGet(t, srv.url("http", "/apps/echo"))
	if status != http.StatusUpgradeRequired {
		t.Errorf("GET /apps/echo without upgrade: %d %q, want 426", status, body)
	}
}

// TestServeConfigSource: ./chimirror.toml is used when --config is absent;
// --config wins over it; relative commands are found next to the config file.
func TestServeConfigSource(t *testing.T) {
	t.Parallel()
	const mine = "[[app]]\nname = \"mine\"\ncommand = [\"sh\", \"-c\", \"echo from-mine\"]\nenv = [\"PATH\"]\n"
	// sandbox off: a sandboxed job has a private /tmp, where the script lives.
	const other = "sandbox = \"off\"\n[[app]]\nname = \"other\"\ncommand = [\"./hello.sh\"]\n"
	tests := []struct {
		name       string
		useFlag    bool   // pass --config conf/other.toml
		wantApps   string // startup line
		wantSource string // config= in the log
		app, out   string // this app prints out
		notServed  []string
	}{
		{name: "./chimirror.toml without --config", wantApps: "mine", wantSource: `config=chimirror.toml`,
			app: "mine", out: "from-mine\n", notServed: []string{"echo", "demo", "other"}},
		{name: "--config wins over ./chimirror.toml", useFlag: true, wantApps: "other", wantSource: `config=.*other.toml`,
			app: "other", out: "from-other\n", notServed: []string{"mine", "echo", "demo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "chimirror.toml"), mine)
			confDir := filepath.Join(dir, "conf")
			if err := os.Mkdir(confDir, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := writeFile(t, filepath.Join(confDir, "other.toml"), other)
			script := writeFile(t, filepath.Join(confDir, "hello.sh"), "#!/bin/sh\necho from-other\n")
			if err := os.Chmod(script, 0o755); err != nil {
				t.Fatal(err)
			}
			var args []string
			if tc.useFlag {
				args = []string{"--config", cfg}
			}
			srv := startServer(t, dir, args...)
			if got := srv.apps(); got != tc.wantApps {
				t.Errorf("startup line lists apps {%s}, want {%s}", got, tc.wantApps)
			}
			if !regexp.MustCompile(tc.wantSource).MatchString(srv.stderr.String()) {
				t.Errorf("log does not match %s", tc.wantSource)
			}
			stdout, stderr, code := runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/"+tc.app))
			if code != 0 || stdout != tc.out {
				t.Errorf("connect %s: exit %d, stdout %q, stderr %q; want exit 0, %q", tc.app, code, stdout, stderr, tc.out)
			}
			for _, name := range tc.notServed {
				if status, _, _ := httpGet(t, srv.url("http", "/apps/"+name)); status != http.StatusNotFound {
					t.Errorf("GET /apps/%s: %d, want 404 (not configured)", name, status)
				}
			}
		})
	}
}

// TestServeQuickMode: `serve -- cat` serves cat at / and /apps/cat, and
// only cat; a plain GET / is still the test page.
func TestServeQuickMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, "--", "cat")
	if got := srv.apps(); got != "cat" {
		t.Errorf("startup line lists apps {%s}, want {cat}", got)
	}

	status, hdr, body := httpGet(t, srv.url("http", "/"))
	if status != http.StatusOK || !strings.Contains(body, "chimirror test page") {
		t.Errorf("GET /: %d, body has test page title: %v", status, strings.Contains(body, "chimirror test page"))
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}

	for _, path := range []string{"/", "/apps/cat"} {
		t.Run("lines at "+path, func(t *testing.T) { linesEcho(t, srv.url("ws", path)) })
	}
	t.Run("connect at /", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, dir, []byte("x\ny\n"), "connect", srv.url("ws", "/"))
		if code != 0 || stdout != "x\ny\n" || stderr != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0, \"x\\ny\\n\", \"\"", code, stdout, stderr)
		}
	})
	for _, name := range []string{"echo", "demo"} {
		if status, _, _ := httpGet(t, srv.url("http", "/apps/"+name)); status != http.StatusNotFound {
			t.Errorf("GET /apps/%s in quick mode: %d, want 404", name, status)
		}
	}
}

// ---------------------------------------------------------------------------
// Shutdown

// shutdownConfig runs plain processes: the tests find them by host pid
// ($$), which a sandboxed job's pid namespace would hide. The sandboxed
// equivalents are in sandbox_test.go.
const shutdownConfig = `
sandbox = "off"
[[app]]
name = "trap"
command = ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo $$; while :; do sleep 0.1; done"]
env = ["PATH"]

[[app]]
name = "stubborn"
command = ["sh", "-c", "trap '' TERM; echo $$; while :; do sleep 0.1; done"]
env = ["PATH"]
grace = "1s"

[[app]]
name = "sleep"
command = ["sh", "-c", "echo $$; exec sleep 1000"]
env = ["PATH"]

[[app]]
name = "cat"
command = ["sh", "-c", "echo $$; exec cat"]
env = ["PATH"]
`

var pidLineRe = regexp.MustCompile(`^(\d+)\n`)

// TestServeShutdown: SIGTERM or SIGINT ends every job through its exit
// signal (and the kill after grace), tells each client, and exits 0 with no
// job process left.
func TestServeShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sig      syscall.Signal
		app      string
		wantCode int    // connect's exit code: the job's
		wantOut  string // in connect's stdout
	}{
		{name: "SIGTERM, job exits on TERM", sig: syscall.SIGTERM, app: "trap", wantCode: 0, wantOut: "got TERM\n"},
		{name: "SIGINT, job exits on TERM", sig: syscall.SIGINT, app: "trap", wantCode: 0, wantOut: "got TERM\n"},
		{name: "SIGTERM, job dies of TERM", sig: syscall.SIGTERM, app: "sleep", wantCode: 128 + 15},
		{name: "SIGINT, job dies of TERM", sig: syscall.SIGINT, app: "sleep", wantCode: 128 + 15},
		{name: "SIGTERM, job ignores TERM: killed after grace", sig: syscall.SIGTERM, app: "stubborn", wantCode: 128 + 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := writeFile(t, filepath.Join(dir, "shutdown.toml"), shutdownConfig)
			srv := startServer(t, dir, "--config", cfg)

			// A chimirror.v1 client (connect) with stdin left open...
			conn, _ := startInteractive(t, dir, "connect", srv.url("ws", "/apps/"+tc.app))
			m, ok := conn.stdout.waitMatch(pidLineRe, ioTimeout, conn.done)
			if !ok {
				t.Fatalf("connect: no pid line; stdout %q, stderr %q", conn.stdout, conn.stderr)
			}
			pid, err := strconv.Atoi(m[1])
			if err != nil {
				t.Fatalf("pid line %q: %v", m[1], err)
			}
			// ...and a text-lines client on another job. (cat's own status is
			// not asserted: shutdown closes a job's stdin before it signals, so
			// cat may end by EOF, exit 0, or by TERM.)
			ws := dialWS(t, srv.url("ws", "/apps/cat"))
			_, line := readWS(t, ws)
			wsPid, err := strconv.Atoi(string(line))
			if err != nil {
				t.Fatalf("lines client: first message %q is not a pid", line)
			}

			// The longest grace is 1s; the rest is slack for a loaded machine.
			deadline := time.Now().Add(5 * time.Second)
			srv.signal(tc.sig)
			// Reading the close frame also answers it, as a client should.
			if code := readCloseCode(t, ws); code != websocket.CloseGoingAway {
				t.Errorf("lines client: close code %d, want %d (going away)", code, websocket.CloseGoingAway)
			}
			if code := conn.wait(ioTimeout); code != tc.wantCode {
				t.Errorf("connect exit code %d, want %d; stderr %q", code, tc.wantCode, conn.stderr)
			}
			if out := conn.stdout.String(); !strings.Contains(out, tc.wantOut) {
				t.Errorf("connect stdout %q lacks %q", out, tc.wantOut)
			}
			if code := srv.wait(time.Until(deadline)); code != 0 {
				t.Errorf("serve exit code %d after %v, want 0", code, tc.sig)
			}
			if !strings.Contains(srv.stderr.String(), "chimirror: stopped") {
				t.Errorf("serve did not report a clean stop")
			}
			// The server reaps its job leaders before it exits.
			waitJobGone(t, pid, false)
			waitJobGone(t, wsPid, false)
		})
	}
}

// TestServeKilledJobsDie: even a SIGKILLed server takes its jobs along, and
// connect reports the lost connection with 255 rather than hanging.
func TestServeKilledJobsDie(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "shutdown.toml"), shutdownConfig)
	srv := startServer(t, dir, "--config", cfg)
	conn, _ := startInteractive(t, dir, "connect", srv.url("ws", "/apps/cat"))
	m, ok := conn.stdout.waitMatch(pidLineRe, ioTimeout, conn.done)
	if !ok {
		t.Fatalf("connect: no pid line; stdout %q, stderr %q", conn.stdout, conn.stderr)
	}
	pid, _ := strconv.Atoi(m[1])
	if code := srv.stop(syscall.SIGKILL, ioTimeout); code != -1 {
		t.Errorf("serve exit code %d, want -1 (killed)", code)
	}
	if code := conn.wait(ioTimeout); code != 255 {
		t.Errorf("connect exit code %d, want 255; stderr %q", code, conn.stderr)
	}
	if !strings.HasPrefix(conn.stderr.String(), "chimirror connect: ") {
		t.Errorf("connect stderr %q does not explain the failure", conn.stderr)
	}
	waitJobGone(t, pid, true)
}

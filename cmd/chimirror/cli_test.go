package main

// End-to-end tests of `chimirror connect` and of the command line itself,
// against real `chimirror serve` subprocesses (harness in main_test.go).

import (
	"bytes"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-v"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, t.TempDir(), nil, arg)
			if code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			if !strings.HasPrefix(stdout, "chimirror "+version) || !strings.HasSuffix(stdout, "\n") {
				t.Errorf("stdout %q, want a line starting %q", stdout, "chimirror "+version)
			}
			if stderr != "" {
				t.Errorf("stderr %q, want none", stderr)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []cliCase{
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `chimirror: unknown command "frobnicate"`},
		{name: "unknown command prints usage", args: []string{"frobnicate"}, wantCode: 2, wantStderr: "Usage:\n  chimirror serve"},
		{name: "no command", args: nil, wantCode: 2, wantStderr: "Usage:\n  chimirror serve"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantStdout: "Usage:\n  chimirror serve"},
		{name: "serve --help", args: []string{"serve", "--help"}, wantCode: 0, wantStderr: "Usage: chimirror serve"},
		{name: "connect without URL", args: []string{"connect"}, wantCode: 2, wantStderr: "Usage: chimirror connect"},
		{name: "connect with a bad scheme", args: []string{"connect", "ftp://127.0.0.1/apps/x"}, wantCode: 1, wantStderr: "want ws://, wss://, http:// or https://"},
		{name: "jobs with a bad --since", args: []string{"jobs", "--since", "yesterday"}, wantCode: 2, wantStderr: `invalid value "yesterday" for flag -since: "yesterday": use a time`},
		{name: "acct with a bad --until", args: []string{"acct", "--until", "soon"}, wantCode: 2, wantStderr: `invalid value "soon" for flag -until`},
	}
	runCLICases(t, tests)
}

// defaultServer serves the embedded default config (apps echo and demo).
func defaultServer(t *testing.T) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	return startServer(t, dir), dir
}

// TestConnectExitCode: connect exits with the job's exit code.
func TestConnectExitCode(t *testing.T) {
	t.Parallel()
	srv, dir := defaultServer(t)
	tests := []struct {
		name     string
		scheme   string // default ws
		path     string
		stdin    string
		wantCode int
		wantOut  string
		notOut   string
	}{
		{name: "?code=0", path: "/apps/demo?code=0", stdin: "a\n", wantCode: 0, wantOut: "out: a\n"},
		{name: "?code=3", path: "/apps/demo?code=3", stdin: "a\n", wantCode: 3, wantOut: "out: a\n"},
		{name: "?code=7", path: "/apps/demo?code=7", stdin: "a\n", wantCode: 7, wantOut: "out: a\n"},
		{name: "no code", path: "/apps/demo", stdin: "", wantCode: 0, wantOut: "hello from stdout"},
		{name: "exit 7 line", path: "/apps/demo", stdin: "a\nexit 7\nb\n", wantCode: 7, wantOut: "out: a\n", notOut: "out: b"},
		{name: "exit 0 line beats ?code=3", path: "/apps/demo?code=3", stdin: "exit 0\n", wantCode: 0, wantOut: "hello from stdout"},
		{name: "http:// URL", scheme: "http", path: "/apps/demo?code=5", stdin: "a\n", wantCode: 5, wantOut: "out: a\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scheme := tc.scheme
			if scheme == "" {
				scheme = "ws"
			}
			stdout, stderr, code := runCLI(t, dir, []byte(tc.stdin), "connect", srv.url(scheme, tc.path))
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantOut)
			}
			if tc.notOut != "" && strings.Contains(stdout, tc.notOut) {
				t.Errorf("stdout %q has %q: input after exit reached the job", stdout, tc.notOut)
			}
		})
	}
}

// TestConnectStreams: stdin reaches the job; job stdout and stderr come out
// of connect's stdout and stderr, each complete and unmixed.
func TestConnectStreams(t *testing.T) {
	t.Parallel()
	srv, dir := defaultServer(t)
	stdout, stderr, code := runCLI(t, dir, []byte("one\ntwo words\n"), "connect", srv.url("ws", "/apps/demo?code=5"))
	if code != 5 {
		t.Errorf("exit code %d, want 5", code)
	}
	if !regexp.MustCompile(`^hello from stdout \(job JOB\d+\)\nout: one\nout: two words\n$`).MatchString(stdout) {
		t.Errorf("stdout %q, want the hello line, then out: one, out: two words", stdout)
	}
	if want := "hello from stderr\nerr: one\nerr: two words\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

// TestConnectStdinEOF: the job reads until connect's stdin ends; EOF then
// closes the job's stdin, and demo exits with its ?code=.
func TestConnectStdinEOF(t *testing.T) {
	t.Parallel()
	srv, dir := defaultServer(t)
	conn, stdin := startInteractive(t, dir, "connect", srv.url("ws", "/apps/demo?code=6"))
	if _, err := stdin.WriteString("first\n"); err != nil {
		t.Fatal(err)
	}
	if _, ok := conn.stdout.waitMatch(regexp.MustCompile(`out: first\n`), ioTimeout, conn.done); !ok {
		t.Fatalf("job did not echo its input; stdout %q, stderr %q", conn.stdout, conn.stderr)
	}
	if conn.exited() {
		t.Fatalf("connect exited (code %d) while its stdin was still open", conn.cmd.ProcessState.ExitCode())
	}
	if _, err := stdin.WriteString("second\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if code := conn.wait(ioTimeout); code != 6 {
		t.Errorf("exit code %d after EOF, want 6 (?code=6); stderr %q", code, conn.stderr)
	}
	if out := conn.stdout.String(); !strings.HasSuffix(out, "out: first\nout: second\n") {
		t.Errorf("stdout %q, want it to end with both echoed lines", out)
	}
}

// TestConnectKilledJob: a job killed by a signal gives 128+signal.
func TestConnectKilledJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "kill.toml"), `
[[app]]
name = "kill"
command = ["sh", "-c", "kill -KILL $$"]

[[app]]
name = "term"
command = ["sh", "-c", "echo before; kill -TERM $$; echo after"]
`)
	srv := startServer(t, dir, "--config", cfg)
	tests := []struct {
		app      string
		wantCode int
		wantOut  string
	}{
		{app: "kill", wantCode: 128 + 9},
		{app: "term", wantCode: 128 + 15, wantOut: "before\n"},
	}
	for _, tc := range tests {
		t.Run(tc.app, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/"+tc.app))
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.wantCode, stderr)
			}
			if stdout != tc.wantOut {
				t.Errorf("stdout %q, want %q", stdout, tc.wantOut)
			}
		})
	}
}

// TestConnectForwardsSignals: SIGINT, SIGTERM and SIGHUP sent to connect
// reach the job, whose exit code connect then returns.
func TestConnectForwardsSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "signals.toml"), `
[[app]]
name = "traps"
command = ["sh", "-c", """
trap 'echo got INT; exit 2' INT
trap 'echo got TERM; exit 3' TERM
trap 'echo got HUP; exit 4' HUP
echo ready
while :; do sleep 0.1; done
"""]
env = ["PATH"]
`)
	srv := startServer(t, dir, "--config", cfg)
	tests := []struct {
		name     string
		sig      syscall.Signal
		wantCode int
		wantOut  string
	}{
		{"SIGINT", syscall.SIGINT, 2, "got INT\n"},
		{"SIGTERM", syscall.SIGTERM, 3, "got TERM\n"},
		{"SIGHUP", syscall.SIGHUP, 4, "got HUP\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, _ := startInteractive(t, dir, "connect", srv.url("ws", "/apps/traps"))
			if _, ok := conn.stdout.waitMatch(regexp.MustCompile(`^ready\n`), ioTimeout, conn.done); !ok {
				t.Fatalf("job not ready; stdout %q, stderr %q", conn.stdout, conn.stderr)
			}
			conn.signal(tc.sig)
			if code := conn.wait(ioTimeout); code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.wantCode, conn.stderr)
			}
			if out := conn.stdout.String(); out != "ready\n"+tc.wantOut {
				t.Errorf("stdout %q, want %q", out, "ready\n"+tc.wantOut)
			}
		})
	}
}

// TestConnectFailure: no job status means exit 255 and a reason on stderr.
func TestConnectFailure(t *testing.T) {
	t.Parallel()
	srv, dir := defaultServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name       string
		url        string
		wantStderr []string
	}{
		{name: "unknown app", url: srv.url("ws", "/apps/nope"), wantStderr: []string{"404 Not Found", `unknown app "nope"`}},
		{name: "not a WebSocket path", url: srv.url("ws", "/nothing"), wantStderr: []string{"404 Not Found", "not found: /nothing"}},
		{name: "connection refused", url: "ws://" + closedAddr + "/apps/echo", wantStderr: []string{"connection refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, dir, nil, "connect", tc.url)
			if code != 255 {
				t.Errorf("exit code %d, want 255", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want none", stdout)
			}
			if !strings.HasPrefix(stderr, "chimirror connect: ") {
				t.Errorf("stderr %q does not start with %q", stderr, "chimirror connect: ")
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

// TestConnectBytesExact: whatever goes into connect comes back out of the
// echo app (cat) unchanged: invalid UTF-8, NUL, multi-byte characters split
// across reads, and a trailing partial character.
func TestConnectBytesExact(t *testing.T) {
	t.Parallel()
	srv, dir := defaultServer(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 200<<10)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "invalid UTF-8, NUL and multi-byte", in: []byte("\xff\xfe\x00a€😀\nb\x00\xc3\xa9\n")},
		{name: "no trailing newline", in: []byte("é€")},
		{name: "trailing partial character", in: []byte("ok\xe2\x82")},
		{name: "multi-byte text across chunk boundaries", in: bytes.Repeat([]byte("aé€😀\n"), 30000)},
		{name: "random binary", in: random},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, dir, tc.in, "connect", srv.url("ws", "/apps/echo"))
			if code != 0 {
				t.Errorf("exit code %d, want 0; stderr %q", code, stderr)
			}
			if stdout != string(tc.in) {
				t.Errorf("output differs from input: %d bytes in, %d out; first difference at %d",
					len(tc.in), len(stdout), firstDiff(tc.in, []byte(stdout)))
			}
			if stderr != "" {
				t.Errorf("stderr %q, want none", stderr)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// cliCase is one run of the binary: its exit code and what its output holds.
type cliCase struct {
	name       string
	args       []string
	wantCode   int
	wantStdout string // substring
	wantStderr string // substring
}

// runCLICases runs each case in parallel in its own temp dir.
func runCLICases(t *testing.T, tests []cliCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, t.TempDir(), nil, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantStderr)
			}
		})
	}
}

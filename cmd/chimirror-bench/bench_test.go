package main

// The bench is tested as a user runs it: TestMain builds chimirror and
// chimirror-bench side by side, and the tests run the bench binary, which
// finds the server binary beside itself and re-executes itself for its
// floors.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/sandbox"
)

var (
	benchBin  string // chimirror-bench, built by TestMain beside a chimirror
	noBinsWhy string // why TestMain built no binaries; the tests that run them skip
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if _, err := exec.LookPath("go"); err != nil {
		noBinsWhy = "go is not on PATH: cannot build chimirror and chimirror-bench to run"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "chimirror-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, b := range []struct{ out, pkg string }{{"chimirror", "../chimirror"}, {"chimirror-bench", "."}} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if cli.RaceEnabled() {
			args = append(args, "-race") // a data race in the server fails the test that triggers it
		}
		build := exec.CommandContext(ctx, "go", append(args, b.pkg)...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n", b.out, err)
			return 1
		}
	}
	benchBin = filepath.Join(dir, "chimirror-bench")
	return m.Run()
}

// runBench runs the built chimirror-bench with args in a temporary
// directory, at most timeout, and returns its output and exit code.
func runBench(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if benchBin == "" {
		t.Skip(noBinsWhy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, benchBin, args...)
	cmd.Dir = t.TempDir()
	// SIGTERM on timeout: the bench's servers (Pdeathsig) end their jobs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if _, set := os.LookupEnv("GORACE"); !set {
		// A -race binary otherwise sleeps 1s at every exit.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=50")
	}
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chimirror-bench %s: still running after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, &out, &errOut)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("chimirror-bench %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// Ensure every benchmark figure can be measured: bench --quick runs each one
// with tiny counts against a real server and prints the table.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("bench --quick starts a server and ~100 jobs; skipped in -short")
	}
	if cli.RaceEnabled() {
		t.Skip("bench --quick under -race: each sandboxed job starts a race-built helper; run without -race")
	}
	stdout, stderr, code := runBench(t, 2*time.Minute, "--quick")
	if code != 0 {
		t.Fatalf("bench --quick exited %d:\n%s", code, stderr)
	}
	for _, fig := range []string{
		"session setup, 1 at a time", "session setup, 16 at a time", "echo round trip",
		"  minimal WebSocket server, 16 at a time", "  minimal WebSocket server echo",
		"  bare TCP echo, two processes",
		"text-line output", "binary output", "client to stdin", "held sessions",
		"fds per session", "server RSS per session",
		"reattach: dial to first replayed byte", "20 detached jobs, full rings: server RSS",
		"SSE output (100-byte lines, a batch job)", "long-poll round trip, events waiting",
	} {
		if !strings.Contains(stdout, "| "+fig) {
			t.Errorf("figure %q missing from:\n%s", fig, stdout)
		}
	}
	if !strings.Contains(stdout, "| held sessions | 50 |") {
		t.Errorf("held sessions not 50:\n%s", stdout)
	}
	if sandbox.Available() == nil {
		for _, fig := range []string{"sandboxed session setup, 1 at a time", "sandboxed session setup, with the default seccomp filter",
			"getppid(2) in a job, the default seccomp filter", "sandboxed held sessions"} {
			if !strings.Contains(stdout, "| "+fig) {
				t.Errorf("figure %q missing from:\n%s", fig, stdout)
			}
		}
		if !regexp.MustCompile(`\| getppid\(2\) in a job, the default seccomp filter \| [0-9.]+ ns per call \([0-9.]+ ns without the filter\) \| [0-9.]+ ns per call outside any job \|`).MatchString(stdout) {
			t.Errorf("the getppid row has no figures:\n%s", stdout)
		}
	}
}

// Ensure --only measures just the groups asked for, and names the groups when
// given one it does not know.
func TestBenchOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("bench starts a server; skipped in -short")
	}
	stdout, stderr, code := runBench(t, time.Minute, "--quick", "--only", "binary")
	if code != 0 {
		t.Fatalf("bench --only binary exited %d:\n%s", code, stderr)
	}
	if rows := strings.Count(stdout, "\n") - 2; !strings.Contains(stdout, "| binary output |") || rows != 1 {
		t.Fatalf("want the header and the binary row only (%d rows):\n%s", rows, stdout)
	}
	_, stderr, code = runBench(t, time.Minute, "--only", "binary,speed")
	if code == 0 || !strings.Contains(stderr, `unknown group "speed"`) || !strings.Contains(stderr, "setup,echo") {
		t.Fatalf("bench --only speed: exit %d, stderr %q", code, stderr)
	}
}

// Ensure each issue's groups measure their figures, and only them,
// against a real server (the detached jobs' leaves no job behind: the
// bench fails otherwise).
func TestBenchOnlyGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("bench starts servers and jobs; skipped in -short")
	}
	for _, tc := range []struct {
		name, only string
		rows       []string
	}{
		{"reattach and detached", "reattach,detached", []string{
			`\| reattach: dial to first replayed byte \| p50 [0-9.]+ ms, p99 [0-9.]+ ms \| p50 [0-9.]+ ms`,
			`\| 20 detached jobs, full rings: server RSS \| [0-9]+ MB .*; rings hold [0-9]+ MB, [0-9]+ of 20 programs blocked writing \| [0-9]+ MB the same server idle before \|`,
		}},
		{"SSE and long-poll", "sse,longpoll", []string{
			`\| SSE output \(100-byte lines, a batch job\) \| [0-9]+ lines/s, [0-9]+ MB/s of payload \([0-9.]+× floor\) \| [0-9]+ lines/s the same job spooled over chimirror.v1 \([0-9]+ lines/s unspooled\)`,
			`\| long-poll round trip, events waiting \| p50 [0-9.]+ ms, p99 [0-9.]+ ms \| p50 [0-9.]+ ms, p99 [0-9.]+ ms GET`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runBench(t, time.Minute, "--quick", "--only", tc.only)
			if code != 0 {
				t.Fatalf("bench --only %s exited %d:\n%s", tc.only, code, stderr)
			}
			if rows := strings.Count(stdout, "\n") - 2; rows != len(tc.rows) {
				t.Fatalf("want the header and %d rows (%d rows):\n%s", len(tc.rows), rows, stdout)
			}
			for _, re := range tc.rows {
				if !regexp.MustCompile(re).MatchString(stdout) {
					t.Errorf("no row matching %s in:\n%s", re, stdout)
				}
			}
		})
	}
}

// Ensure the server binary is the flagged one, else the one beside the
// bench, else the one on PATH, and that finding none names --chimirror.
func TestFindChimirror(t *testing.T) {
	const self = "/opt/lab/chimirror-bench"
	tests := []struct {
		name    string
		flagged string
		exist   []string // what lookPath finds; a bare name is found on PATH in /usr/bin
		want    string
		wantErr string
	}{
		{name: "flagged", flagged: "/srv/chimirror", exist: []string{"/srv/chimirror", "/opt/lab/chimirror", "chimirror"}, want: "/srv/chimirror"},
		{name: "flagged bare name is looked up on PATH", flagged: "chimirror", exist: []string{"chimirror", "/opt/lab/chimirror"}, want: "/usr/bin/chimirror"},
		{name: "flagged but missing: no fallback", flagged: "/srv/chimirror", exist: []string{"/opt/lab/chimirror"}, wantErr: "--chimirror: "},
		{name: "beside the bench", exist: []string{"/opt/lab/chimirror", "chimirror"}, want: "/opt/lab/chimirror"},
		{name: "on PATH", exist: []string{"chimirror"}, want: "/usr/bin/chimirror"},
		{name: "none", wantErr: "no chimirror binary beside /opt/lab/chimirror-bench or on PATH: build one (go build ./cmd/chimirror) and give its path with --chimirror PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookPath := func(p string) (string, error) {
				for _, e := range tt.exist {
					if e != p {
						continue
					}
					if !strings.Contains(p, "/") {
						return "/usr/bin/" + p, nil
					}
					return p, nil
				}
				return "", fmt.Errorf("exec: %q: %w", p, exec.ErrNotFound)
			}
			got, err := findChimirror(tt.flagged, self, lookPath)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("findChimirror = %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("findChimirror = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// Ensure a bench with no chimirror to run says so and names --chimirror,
// before it measures anything.
func TestBenchNoChimirror(t *testing.T) {
	if benchBin == "" {
		t.Skip(noBinsWhy)
	}
	dir := t.TempDir()
	alone := filepath.Join(dir, "chimirror-bench")
	if err := copyFile(benchBin, alone, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(alone, "--quick", "--only", "binary")
	cmd.Env = append(os.Environ(), "PATH="+dir) // no chimirror on it
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "give its path with --chimirror PATH") || strings.Contains(string(out), "| binary output") {
		t.Fatalf("chimirror-bench alone: %v, want exit 1 naming --chimirror:\n%s", err, out)
	}
}

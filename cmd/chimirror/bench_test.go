package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/sandbox"
)

// Ensure every benchmark figure can be measured: bench --quick runs each one
// with tiny counts against a real server and prints the table.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("bench --quick starts a server and ~100 jobs; skipped in -short")
	}
	if raceEnabled() {
		t.Skip("bench --quick under -race: each sandboxed job starts a race-built helper; run without -race")
	}
	p := startProc(t, t.TempDir(), nil, "bench", "--quick")
	code := p.wait(2 * time.Minute)
	stdout, stderr := p.stdout.String(), p.stderr.String()
	if code != 0 {
		t.Fatalf("bench --quick exited %d:\n%s", code, stderr)
	}
	for _, fig := range []string{
		"session setup, 1 at a time", "session setup, 16 at a time", "echo round trip",
		"  minimal WebSocket server, 16 at a time", "  minimal WebSocket server echo",
		"  bare TCP echo, two processes",
		"text-line output", "binary output", "client to stdin", "held sessions",
		"fds per session", "server RSS per session",
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
	stdout, stderr, code := runCLI(t, t.TempDir(), nil, "bench", "--quick", "--only", "binary")
	if code != 0 {
		t.Fatalf("bench --only binary exited %d:\n%s", code, stderr)
	}
	if rows := strings.Count(stdout, "\n") - 2; !strings.Contains(stdout, "| binary output |") || rows != 1 {
		t.Fatalf("want the header and the binary row only (%d rows):\n%s", rows, stdout)
	}
	_, stderr, code = runCLI(t, t.TempDir(), nil, "bench", "--only", "binary,speed")
	if code == 0 || !strings.Contains(stderr, `unknown group "speed"`) || !strings.Contains(stderr, "setup,echo") {
		t.Fatalf("bench --only speed: exit %d, stderr %q", code, stderr)
	}
}

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/sandbox"
)

// jobProcs lists host pids whose command line contains marker.
func jobProcs(t *testing.T, marker string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// Ensure a server killed with SIGKILL leaves no job process behind, a setsid
// escapee included: the helper dies by Pdeathsig and takes its pid
// namespace with it.
func TestServeKill9_SandboxedJobsDie(t *testing.T) {
	if err := sandbox.Available(); err != nil {
		t.Skipf("sandboxed jobs need root and cgroups: %v", err)
	}
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "k.toml"), `sandbox = "on"
[[app]]
name = "sleeper"
command = ["sh", "-c", "setsid sleep 987654 & echo ready; exec sleep 987653"]
env = ["PATH"]
`)
	srv := startServer(t, dir, "--config", cfg)
	var conns []*websocket.Conn
	for i := 0; i < 3; i++ {
		ws, _, err := websocket.DefaultDialer.Dial(srv.url("ws", "/apps/sleeper"), nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
		if err := ws.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "ready" {
			t.Fatalf("job %d: %q %v", i, m, err)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// "ready" may come before the background setsid has exec'd sleep.
	for wait := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := len(jobProcs(t, "sleep 98765"))
		if n == 6 {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("%d job processes running, want 6", n)
		}
	}
	srv.signal(syscall.SIGKILL)
	srv.wait(5 * time.Second)
	// The dead server leaves its jobs' empty cgroups: the next server on
	// the same data dir sweeps them (TestCrashLoop checks that in depth).
	t.Cleanup(func() { recoverAndStop(t, dir, "--config", cfg) })
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := jobProcs(t, "sleep 98765")
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job processes survived the server's SIGKILL: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recoverAndStop starts a server on dir's data dir, which recovers what a
// killed one left, and stops it again.
func recoverAndStop(t *testing.T, dir string, args ...string) {
	t.Helper()
	srv := startServer(t, dir, args...)
	srv.waitRecovered(30 * time.Second)
	if code := srv.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Errorf("recovering server exited %d:\n%s", code, srv.stderr)
	}
}

// waitRecovered waits until a server that began a recovery sweep (it says
// so before its address line) has logged the sweep's end, and fails the
// test if it does not within timeout.
func (s *server) waitRecovered(timeout time.Duration) {
	s.t.Helper()
	if !strings.Contains(s.stderr.String(), recoveringMsg) {
		return
	}
	if _, ok := s.stderr.waitMatch(regexp.MustCompile(regexp.QuoteMeta(recoveredMsg)), timeout, s.done); !ok {
		s.t.Fatalf("recovery did not end within %v:\n%s", timeout, s.stderr)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strconv"
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
	if n := len(jobProcs(t, "sleep 98765")); n != 6 {
		t.Fatalf("%d job processes running, want 6", n)
	}
	serverPid := srv.cmd.Process.Pid
	srv.signal(syscall.SIGKILL)
	srv.wait(5 * time.Second)
	// The dead server leaves its jobs' empty cgroups (the ledger's recovery
	// sweep will remove them); remove ours.
	t.Cleanup(func() { removeJobCgroups(t, serverPid) })
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

// removeJobCgroups waits until every cgroup the killed server left (jobs
// and prepared initiators alike) is empty, then removes it: an orphaned
// init's zombie waits for the host's init, which can take a second or two.
func removeJobCgroups(t *testing.T, serverPid int) {
	suffix := "." + strconv.Itoa(serverPid)
	var dirs []string
	err := filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(p, "/") > 8 {
			return filepath.SkipDir
		}
		if filepath.Base(filepath.Dir(p)) == "chimirror" && strings.HasSuffix(p, suffix) {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range dirs {
		for {
			err := os.Remove(d)
			if err == nil || os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				procs, rerr := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				t.Errorf("%s still busy after the server's death: %v (procs %q %v)", d, err, procs, rerr)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ensure jobs, asked right after a job was killed for its output, shows
// that job's final counters, never the zeros of a record not yet ended.
func TestJobsRightAfterOutputLimit(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir := t.TempDir()
	// A small max_output: a -race client reads a flood slowly.
	if err := os.Mkdir(filepath.Join(dir, "pol"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pol", "tiny.toml"), "max_output = \"256KiB\"\n")
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "data_dir = \"data\"\npolicy_dir = \"pol\"\n[[app]]\nname = \"flood\"\ncommand = [\"yes\"]\npolicy = \"tiny\"\n")
	srv := startServer(t, dir, "--config", cfg)
	for i := range 3 {
		_, stderr, code := runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/flood"))
		if code != 128+15 {
			t.Fatalf("connect %d: exit %d, want 143 (TERM for max_output)\n%s", i, code, stderr)
		}
		out, stderr, code := runCLI(t, dir, nil, "jobs", "--json", "--all", "--config", cfg, "--admin", srv.admin)
		if code != 0 {
			t.Fatalf("jobs: exit %d\n%s", code, stderr)
		}
		var got struct {
			Jobs []struct {
				ID, State, Reason string
				Usage             struct {
					CPUUserNs       int64 `json:"cpu_user_ns"`
					CPUSystemNs     int64 `json:"cpu_system_ns"`
					MemoryPeakBytes int64 `json:"memory_peak_bytes"`
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Jobs) != i+1 {
			t.Fatalf("jobs --json: %v, %d jobs\n%s", err, len(got.Jobs), out)
		}
		j := got.Jobs[0] // newest first
		if j.State != "finished" || j.Reason != "output-limit" || j.Usage.CPUUserNs+j.Usage.CPUSystemNs == 0 || j.Usage.MemoryPeakBytes <= 0 {
			t.Fatalf("%s right after its end: %+v; want finished, output-limit, its CPU and memory peak", j.ID, j)
		}
	}
}

// Ensure config load names what a sandboxed job would meet at exec, at
// the key's line: a dir its user may not enter, a program it may not run,
// and a script argument its view does not show (a private /tmp).
func TestConfigReach(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir := t.TempDir()
	for d := dir; d != "/tmp"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	private := filepath.Join(dir, "private") // root's own, 0700
	open := filepath.Join(dir, "open")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{private, 0o700}, {open, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\necho hi\n"
	writeExec := func(path string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(script), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	writeExec(filepath.Join(private, "run.sh"), 0o755)
	writeExec(filepath.Join(open, "mine.sh"), 0o700)
	writeExec(filepath.Join(open, "ok.sh"), 0o755)
	tmpScript := filepath.Join(t.TempDir(), "script.sh") // under /tmp, outside every view
	writeExec(tmpScript, 0o644)
	file := func(name, app string) string {
		return writeFile(t, filepath.Join(dir, name), "sandbox = \"on\"\n[[app]]\nname = \"a\"\n"+app)
	}
	privateDir := file("private.toml", "command = [\"private/run.sh\"]\ndir = \"private\"\n")
	notMine := file("notmine.toml", "command = [\"open/mine.sh\"]\ndir = \"open\"\n")
	tmpArg := file("tmparg.toml", fmt.Sprintf("command = [\"sh\", %q]\n", tmpScript))
	good := file("good.toml", "command = [\"open/ok.sh\"]\ndir = \"open\"\n")
	runCLICases(t, []cliCase{
		{name: "a dir the job may not enter", args: []string{"config", "check", privateDir}, wantCode: 1,
			wantStderr: privateDir + ":5: app[0].dir: the dir " + private + " (mode 0700, owner 0:0) is not one a job's own uid (which owns nothing here) may execute under policy \"default\""},
		{name: "a program only root may run", args: []string{"config", "check", notMine}, wantCode: 1,
			wantStderr: notMine + ":4: app[0].command: the program " + filepath.Join(open, "mine.sh") + " (mode 0700, owner 0:0) is not one a job's own uid (which owns nothing here) may read and execute under policy \"default\""},
		{name: "a script in the host's /tmp", args: []string{"config", "check", tmpArg}, wantCode: 1,
			wantStderr: tmpArg + ":4: app[0].command: argument " + tmpScript + " is a file on this host, but jobs under policy \"default\" do not see it"},
		{name: "all reachable", args: []string{"config", "check", good}, wantCode: 0, wantStdout: good + ": ok\n"},
	})
}

// Ensure connect says why a job ended when it was no plain exit: a job
// killed for memory names the OOM kill, not just exit code 137.
func TestConnectSaysWhy(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "data_dir = \"data\"\n"+
		"[[app]]\nname = \"hog\"\ncommand = [\"sh\", \"-c\", \"head -c 200M /dev/zero | tail\"]\nenv = [\"PATH\"]\npolicy = \"strict\"\n"+
		"[[app]]\nname = \"fine\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\npolicy = \"strict\"\n")
	srv := startServer(t, dir, "--config", cfg)
	_, stderr, code := runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/hog"))
	if code != 128+9 || !regexp.MustCompile(`(?m)^chimirror: JOB\d{8} ended: oom \(\d+ OOM kill(\(s\)|s)? in the job's cgroup.*\)(, signal KILL)?$`).MatchString(stderr) {
		t.Fatalf("connect to a memory hog: exit %d, stderr %q; want 137 and the reason in one line", code, stderr)
	}
	_, stderr, code = runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/fine"))
	if code != 3 || stderr != "" {
		t.Fatalf("a plain exit 3: exit %d, stderr %q; want 3 and nothing said", code, stderr)
	}
}

// Ensure the CLI finds a server by itself: one started with
// --admin-listen on a port of its own records where it listens in its
// data dir, jobs uses it without --admin, and a clean stop removes it.
func TestCLIFindsServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"data\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	srv := startServer(t, dir, "--config", cfg) // --admin-listen 127.0.0.1:0: not the config's admin_listen
	if _, stderr, code := runCLI(t, dir, []byte("hi\n"), "connect", srv.url("ws", "/apps/cat")); code != 0 {
		t.Fatalf("connect: exit %d %s", code, stderr)
	}
	out, stderr, code := runCLI(t, dir, nil, "jobs", "--all", "--config", cfg)
	if code != 0 || !strings.Contains(out, "JOB00000001") {
		t.Fatalf("jobs without --admin: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	info, ok := readServerFile(filepath.Join(dir, "data"))
	if !ok || info.Admin != srv.admin || info.TokenFile != filepath.Join(dir, "data", "admin.token") {
		t.Fatalf("%s: %+v, want admin %s", serverFile, info, srv.admin)
	}
	if code := srv.stop(syscall.SIGTERM, startTimeout); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", serverFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after a clean stop: %v", serverFile, err)
	}
}

// Ensure quick mode just works beside a server started from the same
// directory (the README's quick start): it takes a data dir and an admin
// port of its own, says where, and a second quick server beside both gets
// a data dir of its own too. A busy address names the flag that moves it.
func TestQuickModeBesideServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	main := startServer(t, dir) // the embedded default, data dir ./var
	quickRe := regexp.MustCompile(`chimirror: quick mode: ledger and admin token in (\S+) \(--data-dir DIR to choose\)`)
	var dirs []string
	for i := range 2 {
		p := startProc(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--", "cat")
		m, ok := p.stderr.waitMatch(quickRe, startTimeout, p.done)
		if !ok {
			t.Fatalf("quick server %d beside a server: no quick-mode line (exited: %v)\n%s", i, p.exited(), p.stderr)
		}
		if !adminRe.MatchString(p.stderr.String()) || strings.Contains(p.stderr.String(), main.admin) {
			t.Fatalf("quick server %d: want an admin listener of its own:\n%s", i, p.stderr)
		}
		dirs = append(dirs, m[1])
		if strings.HasPrefix(m[1], os.TempDir()) {
			t.Cleanup(func() {
				if err := os.RemoveAll(m[1]); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if dirs[0] != filepath.Join(dir, ".state", "chimirror", "quick") || dirs[1] == dirs[0] {
		t.Fatalf("data dirs %q: want the state dir, then one of its own", dirs)
	}
	_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", main.addr, "--", "cat")
	if code != 1 || !strings.Contains(stderr, "address already in use; another server has it: give this one another address with --listen") {
		t.Fatalf("quick mode on a busy address: exit %d, stderr:\n%s", code, stderr)
	}
}

// Ensure a stale server.json (its server died) never sends the admin token
// to whoever holds the port now: the CLI trusts it only while a server
// holds the ledger, and otherwise reads the ledger file.
func TestCLIStaleServerFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"data\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	srv := startServer(t, dir, "--config", cfg)
	if code := srv.stop(syscall.SIGTERM, startTimeout); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	// Someone takes a port and a server.json points there.
	thief, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	stolen := make(chan string, 1)
	go func() {
		c, err := thief.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 4096)
		n, err := c.Read(b) // whatever arrives is the proof
		stolen <- fmt.Sprintf("%s (read: %v)", b[:n], err)
	}()
	if err := writeServerFile(filepath.Join(dir, "data"), serverInfo{Admin: thief.Addr().String(), PID: 1}); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, dir, nil, "jobs", "--all", "--config", cfg)
	if code != 0 {
		t.Fatalf("jobs: exit %d, stdout %q, stderr %q; want the ledger file read", code, out, stderr)
	}
	select {
	case got := <-stolen:
		t.Fatalf("the CLI called the stale address:\n%s", got)
	case <-time.After(300 * time.Millisecond): // the CLI has exited: anything it sent is in
	}
}

// Ensure the server refuses a generated admin token file it did not
// write: another user's, whose owner may know the token.
func TestAdminTokenFileNotOurs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	tok := writeFile(t, filepath.Join(data, "admin.token"), "planted-0123456789abcdef0123456789abcdef\n")
	if err := os.Chmod(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tok, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"data\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "belongs to uid 65534, not to this server: someone else may know it; delete it to get a new token") {
		t.Fatalf("serve with another user's token file: exit %d, stderr:\n%s", code, stderr)
	}
}

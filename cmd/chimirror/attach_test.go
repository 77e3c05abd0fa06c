package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/cutproxy"
)

// numberedOut is what the "count" app writes: lines numbered 1…n.
func numberedOut(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%010d the quick brown fox\n", i)
	}
	return b.Bytes()
}

// resumeServer runs a server whose "count" app writes n numbered lines,
// waits for a line on stdin, then exits 3, under a policy that detaches.
func resumeServer(t *testing.T, n int) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pol"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pol", "resume.toml"), "detach_timeout = \"1m\"\n")
	script := fmt.Sprintf(`awk 'BEGIN { for (i = 1; i <= %d; i++) printf "%%010d the quick brown fox\n", i }'; read x; exit 3`, n)
	cfg := fmt.Sprintf("sandbox = \"off\"\npolicy_dir = \"pol\"\n[[app]]\nname = \"count\"\ncommand = [\"/bin/sh\", \"-c\", %q]\npolicy = \"resume\"\n", script)
	writeFile(t, filepath.Join(dir, "c.toml"), cfg)
	return startServer(t, dir, "--config", filepath.Join(dir, "c.toml")), dir
}

// Ensure connect reattaches by itself after its connection is cut twice
// mid-stream with no close frame: its stdout is the job's output exactly,
// no gap and no duplicate, and it still exits with the job's code.
func TestConnectReattaches(t *testing.T) {
	t.Parallel()
	const n = 400_000 // 12 MB
	want := numberedOut(n)
	srv, dir := resumeServer(t, n)
	p := cutproxy.New(t, srv.addr)
	conn, stdin := startInteractive(t, dir, "connect", "ws://"+p.Addr()+"/apps/count")
	for _, at := range []int{len(want) / 4, len(want) * 2 / 3} {
		deadline := time.Now().Add(30 * time.Second)
		for conn.stdout.Len() < at {
			if time.Now().After(deadline) {
				t.Fatalf("connect wrote %d bytes, waiting for %d; stderr %s", conn.stdout.Len(), at, conn.stderr)
			}
			time.Sleep(time.Millisecond)
		}
		p.Cut()
	}
	deadline := time.Now().Add(30 * time.Second)
	for conn.stdout.Len() < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("connect wrote %d bytes of %d; stderr %s", conn.stdout.Len(), len(want), conn.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := stdin.Write([]byte("done\n")); err != nil {
		t.Fatal(err)
	}
	if code := conn.wait(runTimeout); code != 3 {
		t.Fatalf("connect exited %d, want the job's 3; stderr %s", code, conn.stderr)
	}
	if got := conn.stdout.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("stdout: %d bytes, want exactly the job's %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	// The way back, said at the start: connect itself may be what dies.
	if !regexp.MustCompile(`survives a lost connection for .*chimirror attach --server ws://\S+ --resume [A-Z2-7]{52} JOB\d+`).MatchString(conn.stderr.String()) {
		t.Errorf("connect's stderr lacks the attach line:\n%s", conn.stderr)
	}
}

// catServer runs a server whose "cat" app is cat, under a policy that
// detaches, and returns it and its directory.
func catServer(t *testing.T) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pol"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pol", "resume.toml"), "detach_timeout = \"1m\"\n")
	writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\npolicy_dir = \"pol\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\npolicy = \"resume\"\n")
	return startServer(t, dir, "--config", filepath.Join(dir, "c.toml")), dir
}

// resumeLine reads the attach line connect c printed at the start: the
// resume token (m[1]) and the job ID (m[2]).
func resumeLine(t *testing.T, c *proc) []string {
	t.Helper()
	m := regexp.MustCompile(`--resume ([A-Z2-7]{52}) (JOB\d+)`).FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("connect's stderr lacks the attach line:\n%s", c.stderr)
	}
	return m
}

// waitStdout waits up to 30 s for c's stdout to be want.
func waitStdout(t *testing.T, c *proc, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); string(c.stdout.Bytes()) != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stdout %q, want %q; stderr %s", c.name, c.stdout.Bytes(), want, c.stderr)
		}
	}
}

// Ensure input connect sent into a connection that died under it is not
// lost: the bytes (and the end of stdin) that a dropping network ate are
// sent again after the reattach, and the job takes each byte once.
func TestConnectResendsStdinAtACut(t *testing.T) {
	t.Parallel()
	srv, dir := catServer(t)
	p := cutproxy.New(t, srv.addr)
	conn, stdin := startInteractive(t, dir, "connect", "ws://"+p.Addr()+"/apps/cat")
	if _, err := stdin.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	waitStdout(t, conn, "one\n")
	p.Drop()
	if _, err := stdin.Write([]byte("two\nthree é\n")); err != nil {
		t.Fatal(err)
	}
	if err := stdin.Close(); err != nil { // and the end of stdin, lost too
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // connect has sent them into the void
	p.Cut()
	if code := conn.wait(runTimeout); code != 0 {
		t.Fatalf("connect exited %d, want cat's 0; stderr %s", code, conn.stderr)
	}
	waitStdout(t, conn, "one\ntwo\nthree é\n")
}

// Ensure two terminals taking turns at a job lose none of each other's
// input: connect's network dies, attach takes over and types, then
// connect reattaches and sends what it typed into the dead connection.
func TestStdinWhenTerminalsTakeTurns(t *testing.T) {
	t.Parallel()
	srv, dir := catServer(t)
	p := cutproxy.New(t, srv.addr)
	a, aIn := startInteractive(t, dir, "connect", "ws://"+p.Addr()+"/apps/cat")
	if _, err := aIn.Write([]byte("a1\n")); err != nil {
		t.Fatal(err)
	}
	waitStdout(t, a, "a1\n")
	m := resumeLine(t, a)
	p.Drop() // connect's network dies under it
	b, bIn := startInteractive(t, dir, "attach", "--server", "ws://"+srv.addr, "--resume", m[1], "--after", "0", m[2])
	if _, err := bIn.Write([]byte("b1\n")); err != nil {
		t.Fatal(err)
	}
	waitStdout(t, b, "a1\nb1\n")
	b.signal(syscall.SIGKILL)
	b.wait(runTimeout)
	if _, err := aIn.Write([]byte("a2\n")); err != nil { // into the dead connection
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	p.Cut()
	waitStdout(t, a, "a1\nb1\na2\n")
	if err := aIn.Close(); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(runTimeout); code != 0 {
		t.Fatalf("connect exited %d, want cat's 0; stderr %s", code, a.stderr)
	}
}

// Ensure chimirror attach's stdin is numbered in a stream of its own, not
// counted against what the job took from the connect before it: its input
// reaches the job, not skipped as sent again.
func TestAttachStdinIsItsOwnStream(t *testing.T) {
	t.Parallel()
	srv, dir := catServer(t)
	conn, stdin := startInteractive(t, dir, "connect", "ws://"+srv.addr+"/apps/cat")
	if _, err := stdin.Write([]byte("one two three\n")); err != nil {
		t.Fatal(err)
	}
	waitStdout(t, conn, "one two three\n")
	m := resumeLine(t, conn)
	conn.signal(syscall.SIGKILL) // the job runs on, detached
	conn.wait(runTimeout)
	stdout, stderr, code := runCLI(t, dir, []byte("four\n"), "attach", "--server", "ws://"+srv.addr, "--resume", m[1], "--after", "0", m[2])
	if code != 0 || stdout != "one two three\nfour\n" {
		t.Fatalf("attach: exit %d, stdout %q (want the first line replayed, then its own); stderr %s", code, stdout, stderr)
	}
}

// Ensure chimirror attach reconnects a terminal to a job whose client is
// gone: it gets the output the job kept, sends stdin, and exits with the
// job's code; without a resume token it does not start.
func TestAttachCommand(t *testing.T) {
	t.Parallel()
	const n = 1000
	want := numberedOut(n)
	srv, dir := resumeServer(t, n)
	// A client takes the /job, acknowledges nothing, and drops.
	d := websocket.Dialer{Subprotocols: []string{"chimirror.v1"}}
	ws, _, err := d.Dial("ws://"+srv.addr+"/apps/count", map[string][]string{"X-Chimirror-Ack": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var job struct{ Data struct{ ID, Resume string } }
	if err := json.Unmarshal(msg, &job); err != nil {
		t.Fatal(err)
	}
	ws.UnderlyingConn().Close()
	if _, stderr, code := runCLI(t, dir, nil, "attach", "--server", "ws://"+srv.addr, job.Data.ID); code != 2 {
		t.Fatalf("attach without a token: exit %d, stderr %q", code, stderr)
	}
	time.Sleep(100 * time.Millisecond)
	stdout, stderr, code := runCLI(t, dir, []byte("go\n"), "attach", "--server", "ws://"+srv.addr, "--resume", job.Data.Resume, "--after", "0", job.Data.ID)
	if code != 3 {
		t.Fatalf("attach exited %d, want 3; stderr %q", code, stderr)
	}
	if !bytes.Equal([]byte(stdout), want) {
		t.Fatalf("stdout %d bytes, want the job's %d", len(stdout), len(want))
	}
	_, stderr, code = runCLI(t, dir, nil, "attach", "--server", "ws://"+srv.addr, "--resume", job.Data.Resume, job.Data.ID)
	if code != int(connectFailed) || !bytes.Contains([]byte(stderr), []byte("404")) {
		t.Fatalf("attach to an ended job: exit %d, stderr %q", code, stderr)
	}
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// crashJobs is how many sandboxed jobs TestCrashRestart holds when the
// server dies: CHIMIRROR_CRASH_JOBS sets it (the README's figures for
// 3,000 come from there).
func crashJobs(t *testing.T) int {
	n := 1000
	if s := os.Getenv("CHIMIRROR_CRASH_JOBS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("CHIMIRROR_CRASH_JOBS=%q: want a positive count", s)
		}
		n = v
	}
	return n
}

const crashConfig = `sandbox = "on"
data_dir = "data"
max_sessions = 4000
ping_interval = "10m"
[[app]]
name = "hold"
command = ["sh", "-c", "echo up; exec sleep 765432"]
env = ["PATH"]
grace = "2s"
`

// holdJobs opens n sessions of app hold on srv, 16 at a time, and returns
// their IDs once each job has said it is up. Each session is read until it
// ends; closeAll closes them.
func holdJobs(t *testing.T, srv *server, n int) (ids []string, closeAll func()) {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
		wg    sync.WaitGroup
		errs  []error
	)
	sem := make(chan struct{}, 16)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{"chimirror.v1"}}
			ws, _, err := d.Dial(srv.url("ws", "/apps/hold"), nil)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			var id string
			// The first event names the job; the next is its "up".
			for want := range 2 {
				if err = ws.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
					break
				}
				var ev struct {
					Event string
					Data  json.RawMessage
				}
				if err = ws.ReadJSON(&ev); err != nil {
					break
				}
				if want == 0 {
					var job struct{ ID string }
					if err = json.Unmarshal(ev.Data, &job); err == nil && (ev.Event != "/job" || job.ID == "") {
						err = fmt.Errorf("first event %s %s", ev.Event, ev.Data)
					}
					id = job.ID
				} else if ev.Event != "/stdout" || !strings.Contains(string(ev.Data), "up") {
					err = fmt.Errorf("job %s said %s %s, want up", id, ev.Event, ev.Data)
				}
				if err != nil {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				ws.Close()
				return
			}
			conns = append(conns, ws)
			ids = append(ids, id)
		}()
	}
	wg.Wait()
	closeAll = func() {
		for _, c := range conns {
			c.Close()
		}
	}
	if len(errs) > 0 {
		closeAll()
		t.Fatalf("%d of %d sessions failed; first: %v", len(errs), n, errs[0])
	}
	for _, c := range conns { // a job's end closes its socket: drain until then
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	return ids, closeAll
}

// jobCgroupDirs lists the job cgroups of the server with pid serverPid, in
// the freezer hierarchy (v1) or the unified one (v2): every directory
// named NAME.serverPid, wherever the server put its parent.
func jobCgroupDirs(t *testing.T, serverPid int) []string {
	t.Helper()
	root := "/sys/fs/cgroup"
	if sandbox.CgroupVersion() == 1 {
		root = "/sys/fs/cgroup/freezer"
	}
	name := regexp.MustCompile(`^[A-Za-z0-9-]+\.` + strconv.Itoa(serverPid) + `$`)
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walked
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name.MatchString(d.Name()) {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// freeze freezes a job cgroup found by jobCgroupDirs, as a server that
// died halfway through killing it leaves it.
func freeze(t *testing.T, dir string) {
	t.Helper()
	file, state := filepath.Join(dir, "freezer.state"), "FROZEN"
	if sandbox.CgroupVersion() == 2 {
		file, state = filepath.Join(dir, "cgroup.freeze"), "1"
	}
	if err := os.WriteFile(file, []byte(state), 0); err != nil {
		t.Fatal(err)
	}
}

var recoveredRe = regexp.MustCompile(regexp.QuoteMeta(recoveredMsg) + `.*jobs_lost=(\d+).*cgroups_removed=(\d+).*took=(\S+)`)

// Ensure that a server killed with thousands of sandboxed jobs running,
// a third of them frozen as a server killed mid-shutdown leaves them,
// restarts listening within 5 s, kills and records every orphan lost
// within 30 s, and leaves no cgroup or process behind; then that a
// graceful stop of as many jobs ends them all, in parallel, in a few
// seconds (the figures are logged).
func TestCrashRestart(t *testing.T) {
	if err := sandbox.Available(); err != nil {
		t.Skipf("sandboxed jobs need root and cgroups: %v", err)
	}
	n := crashJobs(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "crash.toml"), crashConfig)
	args := []string{"--config", cfg, "--log-level", "warn"}
	srv := startServer(t, dir, args...)
	t0 := time.Now()
	acked, closeFirst := holdJobs(t, srv, n)
	defer closeFirst()
	t.Logf("%d sandboxed jobs up in %v", n, time.Since(t0).Round(time.Millisecond))
	oldPid := srv.cmd.Process.Pid
	dirs := jobCgroupDirs(t, oldPid)
	if len(dirs) < n {
		t.Fatalf("found %d job cgroups of server %d, want at least %d", len(dirs), oldPid, n)
	}
	frozen := 0
	for i, d := range dirs {
		if i%3 == 0 {
			freeze(t, d)
			frozen++
		}
	}
	srv.signal(syscall.SIGKILL)
	srv.wait(10 * time.Second)

	start := time.Now()
	srv = startServer(t, dir, args...)
	listening := time.Since(start)
	if listening > 5*time.Second {
		t.Errorf("the restarted server listened after %v, want within 5s", listening)
	}
	if !strings.Contains(srv.stderr.String(), recoveringMsg) {
		t.Fatalf("the restarted server did not say it is recovering:\n%s", srv.stderr)
	}
	m, ok := srv.stderr.waitMatch(recoveredRe, 30*time.Second-time.Since(start), srv.done)
	swept := time.Since(start)
	if !ok {
		t.Fatalf("recovery did not end within 30s of the restart:\n%s", tail(srv.stderr.String(), 3000))
	}
	if lost, _ := strconv.Atoi(m[1]); lost < n {
		t.Errorf("recovery closed %d jobs as lost, want at least %d", lost, n)
	}
	if removed, _ := strconv.Atoi(m[2]); removed < n {
		t.Errorf("recovery removed %d cgroups, want at least %d", removed, n)
	}
	t.Logf("restart after SIGKILL with %d sandboxed jobs (%d frozen): listening after %v, recovery done after %v (its own figure: %s)",
		n, frozen, listening.Round(time.Millisecond), swept.Round(time.Millisecond), m[3])
	if left := jobCgroupDirs(t, oldPid); len(left) > 0 {
		t.Errorf("%d cgroups of the killed server left, e.g. %s", len(left), left[0])
	}
	waitNoProcs(t, "sleep 765432", 10*time.Second)

	// The restarted server holds as many jobs, and stops gracefully.
	t0 = time.Now()
	second, closeSecond := holdJobs(t, srv, n)
	defer closeSecond()
	t.Logf("%d sandboxed jobs up again in %v", n, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if code := srv.stop(syscall.SIGTERM, 120*time.Second); code != 0 {
		t.Fatalf("graceful stop with %d jobs exited %d:\n%s", n, code, tail(srv.stderr.String(), 3000))
	}
	t.Logf("graceful stop of %d sandboxed jobs took %v", n, time.Since(t0).Round(time.Millisecond))
	if left := jobCgroupDirs(t, srv.cmd.Process.Pid); len(left) > 0 {
		t.Errorf("%d job cgroups left after a graceful stop, e.g. %s", len(left), left[0])
	}
	waitNoProcs(t, "sleep 765432", 10*time.Second)

	l, err := accounting.Open(filepath.Join(dir, "data", "ledger.db"), accounting.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Check(); err != nil {
		t.Fatalf("ledger check: %v", err)
	}
	for _, c := range []struct {
		ids  []string
		want accounting.State
	}{{acked, accounting.StateLost}, {second, ""}} {
		for _, id := range c.ids {
			r, err := l.Record(id)
			if err != nil {
				t.Fatalf("job %s: %v", id, err)
			}
			if r.State.Open() || (c.want != "" && r.State != c.want) {
				t.Fatalf("job %s: %s (%s), want closed %s", id, r.State, r.Reason, c.want)
			}
		}
	}
	if open, err := l.OpenRecords(); err != nil || len(open) != 0 {
		t.Fatalf("records left open: %d %v", len(open), err)
	}
}

// waitNoProcs waits until no process's command line contains marker.
func waitNoProcs(t *testing.T, marker string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		left := jobProcs(t, marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d job processes left after %v, e.g. pid %s", len(left), timeout, left[0])
		}
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

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

// crashMarker is in every crash-test job's command line, and names this
// test process: another test run on the same machine (a second checkout's)
// has jobs of its own that this one must not count.
var crashMarker = fmt.Sprintf("sleep %d", 10_000_000+os.Getpid())

// crashConfig is the crash test's configuration; its job runs crashMarker.
var crashConfig = `sandbox = "on"
data_dir = "data"
max_sessions = 4000
ping_interval = "10m"
[[app]]
name = "hold"
command = ["sh", "-c", "echo up; exec ` + crashMarker + `"]
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
// within 30 s, and leaves no cgroup or process behind; that a graceful
// stop of as many jobs ends them all, in parallel, in a few seconds; and
// that SIGTERM during a recovery stops the server cleanly, the next start
// finishing the sweep. The figures are logged.
func TestCrashRestart(t *testing.T) {
	if err := sandbox.Available(); err != nil {
		t.Skipf("sandboxed jobs need root and cgroups: %v", err)
	}
	n := crashJobs(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "crash.toml"), crashConfig)
	args := []string{"--config", cfg, "--log-level", "warn"}
	var stoppedIDs []string
	lostBy := make(map[string]time.Time) // a lost job's server died at

	// 1. n jobs, a third frozen, then SIGKILL; the restart sweeps them.
	srv := startServer(t, dir, args...)
	t0 := time.Now()
	ids, closeConns := holdJobs(t, srv, n)
	defer closeConns()
	t.Logf("%d sandboxed jobs up in %v", n, time.Since(t0).Round(time.Millisecond))
	dirs := jobCgroupDirs(t, srv.cmd.Process.Pid)
	if len(dirs) < n {
		t.Fatalf("found %d job cgroups of server %d, want at least %d", len(dirs), srv.cmd.Process.Pid, n)
	}
	frozen := 0
	for i, d := range dirs {
		if i%3 == 0 {
			freeze(t, d)
			frozen++
		}
	}
	r := crashAndRestart(t, srv, dir, args)
	lost(lostBy, ids, r.killedAt)
	srv = r.server
	start := time.Now()
	listening := r.startedIn
	m, ok := srv.stderr.waitMatch(recoveredRe, 30*time.Second-listening, srv.done)
	swept := time.Since(start) + listening
	if !ok {
		t.Fatalf("recovery did not end within 30s of the restart:\n%s", tail(srv.stderr.String(), 3000))
	}
	t.Logf("restart after SIGKILL with %d sandboxed jobs (%d frozen): listening after %v, recovery done after %v (its own figure: %s; %s jobs lost, %s cgroups removed)",
		n, frozen, listening.Round(time.Millisecond), swept.Round(time.Millisecond), m[3], m[1], m[2])
	if lost, _ := strconv.Atoi(m[1]); lost < n {
		t.Errorf("recovery closed %d jobs as lost, want at least %d", lost, n)
	}
	waitNoJobsOf(t, r.oldPid)

	// 2. n jobs again, and a graceful stop.
	t0 = time.Now()
	ids, closeConns = holdJobs(t, srv, n)
	defer closeConns()
	stoppedIDs = append(stoppedIDs, ids...)
	t.Logf("%d sandboxed jobs up again in %v", n, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if code := srv.stop(syscall.SIGTERM, 120*time.Second); code != 0 {
		t.Fatalf("graceful stop with %d jobs exited %d:\n%s", n, code, tail(srv.stderr.String(), 3000))
	}
	t.Logf("graceful stop of %d sandboxed jobs took %v", n, time.Since(t0).Round(time.Millisecond))
	waitNoJobsOf(t, srv.cmd.Process.Pid)

	// 3. A smaller crash, and SIGTERM as soon as the restart listens: the
	// sweep is most likely halfway. It stops cleanly; the next start
	// finishes it.
	srv = startServer(t, dir, args...)
	ids, closeConns = holdJobs(t, srv, max(n/4, 50))
	defer closeConns()
	r = crashAndRestart(t, srv, dir, args)
	lost(lostBy, ids, r.killedAt)
	srv = r.server
	if code := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("SIGTERM during recovery: exit %d, want 0:\n%s", code, tail(srv.stderr.String(), 3000))
	}
	t.Logf("SIGTERM as the restart listened: %s", recoveryOutcome(srv.stderr.String()))
	last := startServer(t, dir, args...)
	last.waitRecovered(30 * time.Second)
	if code := last.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("final stop: exit %d:\n%s", code, tail(last.stderr.String(), 3000))
	}
	waitNoJobsOf(t, r.oldPid)

	l, err := accounting.Open(filepath.Join(dir, "data", "ledger.db"), accounting.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Check(); err != nil {
		t.Fatalf("ledger check: %v", err)
	}
	// A lost job ends when its server last saw it: before that server died,
	// never at a later server's heartbeat.
	for id, died := range lostBy {
		r, err := l.Record(id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		if r.State != accounting.StateLost || r.EndedAt.Before(r.StartedAt) || r.EndedAt.After(died) {
			t.Fatalf("job %s: %s (%s), started %v, ended %v; want lost, ended by %v, when its server died",
				id, r.State, r.Reason, r.StartedAt, r.EndedAt, died)
		}
	}
	for _, id := range stoppedIDs {
		r, err := l.Record(id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		if r.State.Open() || r.State == accounting.StateLost {
			t.Fatalf("job %s: %s (%s), want ended by the graceful stop", id, r.State, r.Reason)
		}
	}
	if open, err := l.OpenRecords(); err != nil || len(open) != 0 {
		t.Fatalf("records left open: %d %v", len(open), err)
	}
}

// lost notes that the jobs ids were lost: their server was dead at.
func lost(by map[string]time.Time, ids []string, at time.Time) {
	for _, id := range ids {
		by[id] = at
	}
}

// restarted is a server started on a dead one's data dir.
type restarted struct {
	*server
	oldPid    int           // the dead server's
	killedAt  time.Time     // the dead server was gone by then
	startedIn time.Duration // from its start until it listened
}

// crashAndRestart kills srv with SIGKILL and starts a server on its data
// dir, which must listen within 5 s and say it is recovering.
func crashAndRestart(t *testing.T, srv *server, dir string, args []string) restarted {
	t.Helper()
	old := srv.cmd.Process.Pid
	srv.signal(syscall.SIGKILL)
	srv.wait(10 * time.Second)
	start := time.Now()
	next := startServer(t, dir, args...)
	r := restarted{server: next, oldPid: old, killedAt: start, startedIn: time.Since(start)}
	if r.startedIn > 5*time.Second {
		t.Errorf("the restarted server listened after %v, want within 5s", r.startedIn)
	}
	if !strings.Contains(next.stderr.String(), recoveringMsg) {
		t.Fatalf("the restarted server did not say it is recovering:\n%s", next.stderr)
	}
	return r
}

// waitNoJobsOf waits until no cgroup of the server with pid serverPid, and
// no job process, is left.
func waitNoJobsOf(t *testing.T, serverPid int) {
	t.Helper()
	if left := jobCgroupDirs(t, serverPid); len(left) > 0 {
		t.Errorf("%d job cgroups of server %d left, e.g. %s", len(left), serverPid, left[0])
	}
	waitNoProcs(t, crashMarker, 10*time.Second)
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

// recoveryOutcome says how a server's recovery sweep ended, from its log.
func recoveryOutcome(stderr string) string {
	switch {
	case strings.Contains(stderr, "recovery incomplete"):
		return "the sweep stopped part way (" + lineWith(stderr, "recovery incomplete") + ")"
	case strings.Contains(stderr, recoveredMsg):
		return "the sweep had already ended (" + lineWith(stderr, recoveredMsg) + ")"
	}
	return "no sweep logged"
}

// lineWith is the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

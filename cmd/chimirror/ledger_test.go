package main

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// ledgerConfig serves demo-like apps with the ledger in dir/data.
const ledgerConfig = `data_dir = "data"
sample_interval = "100ms"
[chargeback]
cpu_second = 2.0
[[app]]
name = "demo"
command = ["sh", "-c", "echo hello; read line; exit 3"]
env = ["PATH"]
[[app]]
name = "echo"
command = ["cat"]
`

// runJob runs one job on app over chimirror.v1, writing input and closing
// stdin, waits for its final record, and returns its job ID as
// acknowledged to the client by /job.
func runJob(t *testing.T, srv *server, app string, input string) string {
	t.Helper()
	id := runJobUnrecorded(t, srv, app, input)
	waitRecorded(t, srv, id)
	return id
}

// runJobUnrecorded is runJob without waiting for the record (which a full
// disk may hold back).
func runJobUnrecorded(t *testing.T, srv *server, app string, input string) string {
	t.Helper()
	ws := dialWS(t, srv.url("ws", "/apps/"+app), "chimirror.v1")
	_, m := readWS(t, ws)
	var ev struct {
		Event string `json:"event"`
		Data  struct{ ID string }
	}
	if err := json.Unmarshal(m, &ev); err != nil || ev.Event != "/job" {
		t.Fatalf("first event %s: %v", m, err)
	}
	for _, ev := range []map[string]any{{"event": "/stdin", "data": input}, {"event": "/stdin/close"}} {
		msg, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	readCloseCode(t, ws)
	return ev.Data.ID
}

// waitRecorded waits until job id's final record is on disk: the client
// hears of a job's end while that commit runs.
func waitRecorded(t *testing.T, srv *server, id string) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(srv.cmd.Dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, err := http.NewRequest("GET", "http://"+srv.admin+"/api/v1/jobs/"+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Job accounting.Record }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err == nil && !out.Job.State.Open() && out.Job.State != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not recorded as ended: %+v %v", id, out.Job, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure that jobs, job and acct read the ledger through a running
// server's admin API and, once it has stopped, from the file; and that
// the records say what happened.
func TestLedgerCommands_RunningAndStopped(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), ledgerConfig)
	srv := startServer(t, dir, "--config", cfg)
	var ids []string
	for range 3 {
		ids = append(ids, runJob(t, srv, "demo", "bye\n"))
	}
	ids = append(ids, runJob(t, srv, "echo", ""))
	if ids[0] != "JOB00000001" || ids[3] != "JOB00000004" {
		t.Fatalf("job IDs %v", ids)
	}
	client := []string{"--config", cfg, "--admin", srv.admin}

	check := func(t *testing.T, args []string, source string) {
		out, stderr, code := runCLI(t, dir, nil, append([]string{"jobs", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("jobs --json: exit %d: %s", code, stderr)
		}
		var list struct{ Jobs []accounting.Record }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("jobs --json: %v\n%s", err, out)
		}
		if len(list.Jobs) != 4 || list.Jobs[0].ID != ids[3] || list.Jobs[3].ID != ids[0] {
			t.Fatalf("%s: jobs %+v", source, list.Jobs)
		}
		demo := list.Jobs[1]
		if demo.State != accounting.StateFinished || demo.Reason != "exit" || *demo.ExitCode != 3 ||
			demo.Traffic.StdoutBytes != 6 || demo.Traffic.StdinBytes != 4 || demo.Protocol != "chimirror.v1" {
			t.Fatalf("%s: demo record %+v", source, demo)
		}
		out, stderr, code = runCLI(t, dir, nil, append([]string{"jobs", "--app", "echo"}, args...)...)
		if code != 0 || !strings.Contains(out, "JOBID") || !strings.Contains(out, ids[3]) || strings.Contains(out, ids[0]) {
			t.Fatalf("%s: jobs --app echo: exit %d\n%s%s", source, code, out, stderr)
		}
		out, stderr, code = runCLI(t, dir, nil, append([]string{"job", ids[1], "--json"}, args...)...)
		if code != 0 || !strings.Contains(out, `"exit_code": 3`) || !strings.Contains(out, `"id": "`+ids[1]+`"`) {
			t.Fatalf("%s: job --json: exit %d\n%s%s", source, code, out, stderr)
		}
		out, stderr, code = runCLI(t, dir, nil, append([]string{"acct", "--by", "app", "--format", "csv"}, args...)...)
		if code != 0 || !strings.Contains(out, "app,jobs,cpu_seconds") || !strings.Contains(out, "demo,3,") || !strings.Contains(out, "exit=3") {
			t.Fatalf("%s: acct csv: exit %d\n%s%s", source, code, out, stderr)
		}
		out, stderr, code = runCLI(t, dir, nil, append([]string{"acct", "--since", "1h"}, args...)...)
		if code != 0 || !strings.Contains(out, "COST") || !strings.Contains(out, "public") {
			t.Fatalf("%s: acct table: exit %d\n%s%s", source, code, out, stderr)
		}
	}
	t.Run("through the admin API", func(t *testing.T) { check(t, client, "api") })
	if code := srv.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	t.Run("from the stopped ledger", func(t *testing.T) { check(t, []string{"--config", cfg}, "file") })
	t.Run("unknown job", func(t *testing.T) {
		_, stderr, code := runCLI(t, dir, nil, "job", "JOB00000099", "--config", cfg)
		if code != 1 || !strings.Contains(stderr, "no such job") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("IDs continue after a restart", func(t *testing.T) {
		srv := startServer(t, dir, "--config", cfg)
		if id := runJob(t, srv, "echo", ""); id != "JOB00000005" {
			t.Fatalf("first job after restart: %s", id)
		}
	})
}

// Ensure that a second server on the same data dir fails at once, naming
// the ledger file, and that an unusable data dir is a clear error.
func TestLedger_StartErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), ledgerConfig)
	startServer(t, dir, "--config", cfg)
	_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, filepath.Join(dir, "data", "ledger.db")) || !strings.Contains(stderr, "another chimirror") {
		t.Fatalf("second server: exit %d\n%s", code, stderr)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount read-only and full file systems for the data dir")
	}
	for _, tc := range []struct {
		name, opts string
		fill       bool
		want       string
	}{
		{"read-only", "ro", false, "read-only file system"},
		{"full", "size=64k", true, "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			data := tmpfsDataDir(t, d, tc.opts)
			if tc.fill {
				fillDisk(t, data)
			}
			c := writeFile(t, filepath.Join(d, "c.toml"), ledgerConfig)
			_, stderr, code := runCLI(t, d, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", c)
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "panic") {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
		})
	}
}

// Ensure the ledger survives crashes: 10 times, 50 jobs are started and
// the server is SIGKILLed at a random moment, then restarted. Afterwards
// the file passes bbolt's check, every job whose start a client saw is in
// it, none is left running, and no job process or cgroup remains.
func TestCrashLoop(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `data_dir = "data"
sample_interval = "50ms"
[[app]]
name = "crash"
command = ["sh", "-c", "echo up; exec sleep 876543"]
env = ["PATH"]
`)
	boxed := sandbox.Available() == nil
	var acked []string
	for round := range 10 {
		srv := startServer(t, dir, "--config", cfg)
		var (
			mu        sync.Mutex
			wg        sync.WaitGroup
			firstOnce sync.Once
		)
		// The kill lands at a random moment after the round's first start
		// is acknowledged, while the rest are still arriving: on a slow
		// machine (the v2 VM emulates its CPU) a kill timed from the
		// server's start could land before any job had started.
		first := make(chan struct{})
		killAt := time.Duration(rand.IntN(400)) * time.Millisecond
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 8 * time.Millisecond)
				d := websocket.Dialer{HandshakeTimeout: ioTimeout, Subprotocols: []string{"chimirror.v1"}}
				ws, _, err := d.Dial(srv.url("ws", "/apps/crash"), nil)
				if err != nil {
					return // the server is gone: no start was acknowledged
				}
				defer ws.Close()
				if err := ws.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
					return
				}
				_, m, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var ev struct{ Data struct{ ID string } }
				if json.Unmarshal(m, &ev) == nil && ev.Data.ID != "" {
					mu.Lock()
					acked = append(acked, ev.Data.ID)
					mu.Unlock()
					firstOnce.Do(func() { close(first) })
				}
				for { // hold the job until the server dies
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
				}
			}()
		}
		acknowledged := true
		select {
		case <-first:
			time.Sleep(killAt)
		case <-time.After(startTimeout):
			acknowledged = false
		}
		srv.signal(syscall.SIGKILL)
		srv.wait(10 * time.Second)
		wg.Wait()
		if !acknowledged {
			t.Fatalf("round %d: no start acknowledged within %v:\n%s", round, startTimeout, srv.stderr)
		}
		t.Logf("round %d: killed %v after the first start; %d starts acknowledged so far", round, killAt, len(acked))
	}
	// The last restart recovers the tenth crash; then a clean stop.
	srv := startServer(t, dir, "--config", cfg)
	srv.waitRecovered(30 * time.Second)
	if code := srv.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("final serve exited %d:\n%s", code, srv.stderr)
	}
	l, err := accounting.Open(filepath.Join(dir, "data", "ledger.db"), accounting.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Check(); err != nil {
		t.Fatalf("ledger check: %v", err)
	}
	if len(acked) == 0 {
		t.Fatal("no start was acknowledged in 10 rounds")
	}
	lost := 0
	for _, id := range acked {
		r, _, err := l.Get(id)
		if err != nil {
			t.Fatalf("acknowledged job %s: %v", id, err)
		}
		if r.State.Open() {
			t.Errorf("%s left %s", id, r.State)
		}
		if r.State == accounting.StateLost {
			lost++
			if r.EndedAt.Before(r.StartedAt) {
				t.Errorf("%s: lost, ended %v before it started %v", id, r.EndedAt, r.StartedAt)
			}
		}
	}
	open, err := l.OpenRecords()
	if err != nil || len(open) != 0 {
		t.Fatalf("records left open: %d %v", len(open), err)
	}
	if lost == 0 {
		t.Error("no job was recorded lost, yet every round killed the server mid-job")
	}
	if left := jobProcs(t, "sleep 876543"); len(left) != 0 {
		t.Errorf("job processes survived: %v", left)
	}
	if boxed {
		var cgroups []string
		for _, glob := range jobCgroupGlobs(dir, l.Instance()) {
			m, _ := filepath.Glob(glob)
			for _, p := range m {
				if st, err := os.Stat(p); err == nil && st.IsDir() {
					cgroups = append(cgroups, p)
				}
			}
		}
		if len(cgroups) > 0 {
			t.Errorf("cgroups left: %v", cgroups)
		}
	}
	t.Logf("%d starts acknowledged, %d recorded lost", len(acked), lost)
}

// Ensure that when ledger writes fail during a run (the disk fills up),
// jobs still run and end cleanly, the failures are counted in the
// metrics, the server keeps serving, and the records are written once
// there is space again.
func TestLedger_DiskFullDuringRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the data dir")
	}
	dir := t.TempDir()
	data := tmpfsDataDir(t, dir, "size=2m")
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), ledgerConfig)
	srv := startServer(t, dir, "--config", cfg)
	filler := fillDisk(t, data)
	var ids []string
	for range 20 {
		ids = append(ids, runJobUnrecorded(t, srv, "demo", strings.Repeat("x", 3000)+"\n")) // ends with exit 3, close 4003
	}
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	metric := func() string {
		req, _ := http.NewRequest("GET", "http://"+srv.admin+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "chimirror_ledger_write_errors_total ") {
				return strings.TrimPrefix(l, "chimirror_ledger_write_errors_total ")
			}
		}
		t.Fatalf("no ledger error metric in:\n%s", b)
		return ""
	}
	if m := metric(); m == "0" {
		t.Fatal("a full disk caused no counted ledger write error")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a few sample ticks write the records again
	out, stderr, code := runCLI(t, dir, nil, "jobs", "--json", "--all", "--config", cfg, "--admin", srv.admin)
	if code != 0 {
		t.Fatalf("jobs: exit %d %s", code, stderr)
	}
	for _, id := range ids {
		if !strings.Contains(out, `"id": "`+id+`"`) {
			t.Fatalf("%s missing from the ledger after space came back", id)
		}
	}
	if code := srv.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// tmpfsDataDir mounts a tmpfs with opts at dir/data (ledgerConfig's data
// dir) until the test ends, and returns its path. Needs root.
func tmpfsDataDir(t *testing.T, dir, opts string) string {
	t.Helper()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, opts); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(data, syscall.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	return data
}

// fillDisk writes a file in dir until its file system is full, and
// returns the file's path (removing it frees the space).
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for err == nil {
		_, err = f.Write(chunk)
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return filler
}

package web

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
)

func requireSandbox(t *testing.T) {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		t.Skipf("sandboxed jobs need root and cgroups: %v", err)
	}
}

func mustPolicy(t *testing.T, name, body string) *policies.Policy {
	t.Helper()
	p, ps := policies.Parse(name+".toml", []byte(body))
	if len(ps) > 0 {
		t.Fatalf("policy %s: %v", name, ps)
	}
	return p
}

func sandboxedServer(t *testing.T, e *ends, apps ...supervisor.App) *testServer {
	requireSandbox(t)
	return startServer(t, supervisor.Config{Sandbox: true, OnEnd: e.hook, SampleEvery: 50 * time.Millisecond,
		Drain: 300 * time.Millisecond, Apps: apps}, Options{})
}

func boxed(app supervisor.App, pol *policies.Policy) supervisor.App {
	app.Policy = pol
	app.Grace = 500 * time.Millisecond
	return app
}

// Ensure a sandboxed job's view over a real WebSocket: hostname = job ID,
// only lo, no privileges, fds 0-2, nobody, env = allow-list + CGI.
func TestSandboxed_InsideView(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, initiators string }{{"prepared on demand", "0"}, {"from the pool", "2"}} {
		t.Run(tc.name, func(t *testing.T) {
			insideView(t, tc.initiators)
		})
	}
}

func insideView(t *testing.T, initiators string) {
	var e ends
	pol := mustPolicy(t, "t", `memory = "64MiB"`+"\n"+`pids = 32`+"\n"+`initiators = `+initiators+"\n")
	s := sandboxedServer(t, &e, boxed(shApp("view", `echo "host $(hostname)"; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status;
		echo "nics $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"; ls /proc/self/fd > /tmp/fds; printf 'fds '; tr '\n' , < /tmp/fds; echo;
		echo "uid $(id -u)"; echo "procs $(ls /proc | grep -c '^[0-9]')"; env | cut -d= -f1 | sort | tr '\n' ,`), pol))
	for i := 0; i < 3; i++ { // the pool hands out, and refills
		viewOnce(t, s, &e)
	}
}

func viewOnce(t *testing.T, s *testServer, e *ends) {
	ws := s.dial("/apps/view", ProtoV1)
	got := readSession(t, ws, 10*time.Second)
	out := string(got.stdout)
	var job struct{ ID string }
	jsonUnmarshal(t, got.events[0].Data, &job)
	for _, want := range []string{"host " + job.ID + "\n", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "nics lo,",
		"fds 0,1,2,3,\n", "CHIMIRROR_JOB_ID,", "PATH,", "QUERY_STRING,"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside view lacks %q:\n%s", want, out)
		}
	}
	var uid uint32
	if m := regexp.MustCompile(`uid (\d+)\n`).FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &uid)
	}
	if !sandbox.DefaultDynamicIDs.Contains(uid) {
		t.Errorf("the job is uid %d, want a dynamic uid (%s)", uid, sandbox.DefaultDynamicIDs)
	}
	if got.exit == nil || got.exit.Code != 0 {
		t.Fatalf("exit %+v (stderr %q)", got.exit, got.stderr)
	}
	x := e.wait(t, "view", 5*time.Second)
	if !x.Sandboxed || x.Usage.MemoryPeakBytes <= 0 {
		t.Fatalf("no cgroup usage at the end: %+v", x)
	}
}

// Ensure every policy limit ends the job with its reason, which reaches the
// client in /exit and the close frame.
func TestSandboxed_Limits(t *testing.T) {
	t.Parallel()
	requireSandbox(t)
	var e ends
	apps := []supervisor.App{
		boxed(shApp("oom", `head -c 300M /dev/zero | tail > /dev/null`), mustPolicy(t, "m", `memory = "64MiB"`)),
		// The OOM killer takes a child; the job's shell would live on.
		boxed(shApp("oomchild", `(head -c 300M /dev/zero | tail > /dev/null); echo survived; exec sleep 30`), mustPolicy(t, "m2", `memory = "64MiB"`)),
		boxed(shApp("wall", `sleep 30`), mustPolicy(t, "w", `wall_time = "300ms"`)),
		boxed(shApp("idle", `sleep 30`), mustPolicy(t, "i", `idle_timeout = "300ms"`)),
		boxed(shApp("output", `yes`), mustPolicy(t, "o", `max_output = 100000`)),
		boxed(shApp("cputime", `while :; do :; done`), mustPolicy(t, "c", `cpu_time = "200ms"`)),
		boxed(shApp("forkbomb", `sh -c 'while :; do sleep 30 & done' 2>/dev/null; echo capped; exit 9`), mustPolicy(t, "f", `pids = 16`)),
	}
	s := sandboxedServer(t, &e, apps...)
	tests := []struct {
		app, reason string
		check       func(t *testing.T, got session, x supervisor.Exit)
	}{
		{"oom", "oom", func(t *testing.T, got session, x supervisor.Exit) {
			if x.Usage.OOMKills < 1 || x.Usage.MemoryPeakBytes < 60<<20 {
				t.Errorf("usage %+v: want an OOM kill and the peak near 64 MiB", x.Usage)
			}
		}},
		{"oomchild", "oom", nil},
		{"wall", "wall-time", nil},
		{"idle", "idle", nil},
		{"output", "output-limit", func(t *testing.T, got session, x supervisor.Exit) {
			if len(got.stdout) != 100000 {
				t.Errorf("client got %d bytes of output, want exactly max_output 100000", len(got.stdout))
			}
		}},
		{"cputime", "cpu-time", nil},
		{"forkbomb", "exit", func(t *testing.T, got session, x supervisor.Exit) {
			if x.Usage.PidsLimitHits == 0 || !strings.Contains(string(got.stdout), "capped") {
				t.Errorf("pids hits %d, stdout %q", x.Usage.PidsLimitHits, got.stdout)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.app, func(t *testing.T) {
			ws := s.dial("/apps/"+tc.app, ProtoV1)
			got := readSession(t, ws, 20*time.Second)
			if got.exit == nil || got.exit.Reason != tc.reason {
				t.Fatalf("exit %+v, want reason %s", got.exit, tc.reason)
			}
			if tc.reason != "exit" && !strings.HasPrefix(got.closeText, tc.reason+": ") {
				t.Errorf("close text %q lacks the reason", got.closeText)
			}
			x := e.wait(t, tc.app, 5*time.Second)
			if tc.check != nil {
				tc.check(t, got, x)
			}
		})
	}
}

// Ensure a setsid escapee and a TERM-ignorer are gone when the client
// leaves: the job's cgroup is emptied and deleted.
func TestSandboxed_ClientGoneKillsAll(t *testing.T) {
	t.Parallel()
	var e ends
	pol := mustPolicy(t, "k", `pids = 32`)
	s := sandboxedServer(t, &e, boxed(shApp("stubborn", `setsid sh -c 'trap "" TERM; sleep 30' & trap '' TERM; echo ready; while :; do sleep 0.05; done`), pol))
	ws := s.dial("/apps/stubborn")
	readLine(t, ws)
	jobs := s.sup.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v", jobs)
	}
	// v1: the pids hierarchy's directory (the test runs in its root
	// cgroup there); v2: the path is the whole one, below the delegated
	// cgroup.
	cgDir := filepath.Join("/sys/fs/cgroup/pids", jobs[0].Cgroup)
	if sandbox.CgroupVersion() == 2 {
		cgDir = filepath.Join("/sys/fs/cgroup", jobs[0].Cgroup)
	}
	if _, err := os.Stat(cgDir); err != nil {
		t.Fatalf("job cgroup: %v", err)
	}
	left := time.Now()
	ws.UnderlyingConn().Close()
	x := e.wait(t, "stubborn", 5*time.Second)
	if x.Reason != supervisor.ReasonClientGone {
		t.Fatalf("end %+v", x)
	}
	waitFor(t, 3*time.Second, "the job's cgroup to be emptied and deleted", func() bool {
		_, err := os.Stat(cgDir)
		return os.IsNotExist(err)
	})
	if d := time.Since(left); d > 500*time.Millisecond+time.Second+time.Second {
		t.Errorf("took %v; grace is 500ms", d)
	}
}

func readLine(t *testing.T, ws interface {
	SetReadDeadline(time.Time) error
	ReadMessage() (int, []byte, error)
}) string {
	t.Helper()
	if err := ws.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, m, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(m)
}

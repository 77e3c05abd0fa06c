package web

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
)

// runners is the conformance matrix (Nomad's executorFactories): every
// behaviour below must hold for plain processes and for sandboxed jobs.
var runners = []struct {
	name    string
	sandbox bool
	userns  bool
}{{"plain", false, false}, {"sandboxed", true, false}, {"sandboxed in a user namespace", true, true}}

// conformanceServer serves the conformance apps with one runner.
func conformanceServer(t *testing.T, sandboxed, userns bool, e *ends) *testServer {
	t.Helper()
	if sandboxed {
		if err := sandbox.Available(); err != nil {
			t.Skipf("sandboxed runner needs root and cgroups: %v", err)
		}
	}
	body := "memory = \"128MiB\"\npids = 64\ninitiators = 2\n"
	if userns {
		body += "user_namespace = true\n"
	}
	pol, ps := policies.Parse("conf.toml", []byte(body))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	apps := []supervisor.App{
		{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}},
		shApp("demo", `echo hello; echo oops >&2; read x; echo "got $x"; exit 3`),
		shApp("bytes", `printf 'a\377\376b\303'; sleep 0.05; printf '\251\n'`),
		shApp("polite", `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`),
		shApp("leaver", `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`),
		shApp("stubborn", `trap '' TERM; echo ready; while :; do sleep 0.05; done`),
		shApp("fds", `exec ls /proc/self/fd`),
		shApp("env", `env`),
	}
	for i := range apps {
		apps[i].Policy = pol
		apps[i].Grace = 300 * time.Millisecond
	}
	return startServer(t, supervisor.Config{Sandbox: sandboxed, OnEnd: e.hook, Drain: 300 * time.Millisecond, Apps: apps}, Options{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			var e ends
			s := conformanceServer(t, r.sandbox, r.userns, &e)
			t.Run("text lines echo", func(t *testing.T) {
				ws := s.dial("/apps/cat")
				if err := ws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
					t.Fatal(err)
				}
				if got := readLine(t, ws); got != "hello" {
					t.Fatalf("echo %q", got)
				}
				ws.Close()
			})
			t.Run("streams and exit status", func(t *testing.T) {
				ws := s.dial("/apps/demo", ProtoV1)
				sendEvent(t, ws, "/stdin", "x\n", 0)
				got := readSession(t, ws, 10*time.Second)
				if string(got.stdout) != "hello\ngot x\n" || string(got.stderr) != "oops\n" {
					t.Fatalf("stdout %q stderr %q", got.stdout, got.stderr)
				}
				if got.exit == nil || got.exit.Code != 3 || got.closeCode != 4003 {
					t.Fatalf("exit %+v close %d", got.exit, got.closeCode)
				}
			})
			t.Run("bytes exact", func(t *testing.T) {
				got := readSession(t, s.dial("/apps/bytes", ProtoV1), 10*time.Second)
				if want := []byte("a\xff\xfeb\xc3\xa9\n"); !bytes.Equal(got.stdout, want) {
					t.Fatalf("stdout %q want %q", got.stdout, want)
				}
			})
			t.Run("signal from the client", func(t *testing.T) {
				ws := s.dial("/apps/polite", ProtoV1)
				waitForStdout(t, ws, "ready")
				sendEvent(t, ws, "/signal", "KILL", 0)
				got := readSession(t, ws, 10*time.Second)
				if got.exit == nil || got.exit.Code != 137 || got.exit.Signal == nil || *got.exit.Signal != "KILL" {
					t.Fatalf("exit %+v", got.exit)
				}
			})
			t.Run("client gone: exit signal", func(t *testing.T) {
				ws := s.dial("/apps/leaver")
				readLine(t, ws)
				ws.UnderlyingConn().Close()
				x := e.wait(t, "leaver", 5*time.Second)
				if x.Reason != supervisor.ReasonClientGone || x.Status.Code != 0 {
					t.Fatalf("end %+v: want client-gone, exit 0 from its TERM trap", x)
				}
			})
			t.Run("client gone: kill after grace", func(t *testing.T) {
				ws := s.dial("/apps/stubborn")
				readLine(t, ws)
				left := time.Now()
				ws.UnderlyingConn().Close()
				x := e.wait(t, "stubborn", 5*time.Second)
				if x.Reason != supervisor.ReasonClientGone || x.Status.Code != 137 {
					t.Fatalf("end %+v: want client-gone, SIGKILL", x)
				}
				if d := time.Since(left); d > 300*time.Millisecond+time.Second {
					t.Errorf("gone after %v; grace is 300ms", d)
				}
			})
			t.Run("fds 0-2 only", func(t *testing.T) {
				got := readSession(t, s.dial("/apps/fds", ProtoV1), 10*time.Second)
				// 3 is ls's own directory; an inherited fd would push it to 4.
				if f := strings.Join(strings.Fields(string(got.stdout)), " "); f != "0 1 2 3" {
					t.Fatalf("fds %q", f)
				}
			})
			t.Run("environment", func(t *testing.T) {
				got := readSession(t, s.dial("/apps/env?q=1", ProtoV1), 10*time.Second)
				out := string(got.stdout)
				for _, want := range []string{"GATEWAY_INTERFACE=CGI/1.1\n", "QUERY_STRING=q=1\n", "CHIMIRROR_APP=env\n", "CHIMIRROR_JOB_ID=JOB"} {
					if !strings.Contains(out, want) {
						t.Errorf("env lacks %q", want)
					}
				}
			})
			waitFor(t, 5*time.Second, "every job ended", func() bool { return s.sup.Running() == 0 })
		})
	}
}

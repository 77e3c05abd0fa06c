package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func isolatedSpec(t *testing.T, script string) Spec {
	id := fmt.Sprintf("JOBT%d", time.Now().UnixNano()%1e9)
	return Spec{
		Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Isolation: &Isolation{
			ID: id, Resources: limits(0, 64<<20, 32), TmpSizeBytes: 8 << 20, UID: 65534, GID: 65534,
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 64}}, View: testView(),
		},
	}
}

// testView is the view of the tests' jobs: the host's userland and the
// /etc files perl and the shell need.
func testView() View {
	var ro []string
	for _, p := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/alternatives", "/etc/ld.so.cache", "/etc/protocols", "/etc/services"} {
		if _, err := os.Lstat(p); err == nil {
			ro = append(ro, p)
		}
	}
	return View{RO: ro}
}

// Ensure a running job's PID 1 is the C init: one thread, so a job costs
// the host two pids (init and target), not a Go runtime's worth, holding
// CAP_KILL and nothing else.
func TestIsolated_CInitIsOneThread(t *testing.T) {
	requireSandbox(t)
	if !haveCInit {
		t.Skip("built without cgo: the Go init stays PID 1")
	}
	r := newTestRunner(t)
	p, err := r.Start(isolatedSpec(t, `echo ready; exec sleep 30`))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := p.Stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Threads:\t1\n", "CapEff:\t0000000000000020\n", "CapPrm:\t0000000000000020\n", "NoNewPrivs:\t1\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("PID 1 of the job: status lacks %q:\n%s", want, b)
		}
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// forEachInit runs a test once per init (the conformance suite): the C one
// where cgo built it in, and the Go one always.
func forEachInit(t *testing.T, test func(t *testing.T, r *Runner)) {
	inits := []struct {
		name   string
		goInit bool
	}{{"go", true}}
	if haveCInit {
		inits = append([]struct {
			name   string
			goInit bool
		}{{"c", false}}, inits...)
	}
	for _, in := range inits {
		t.Run(in.name+" init", func(t *testing.T) {
			r := newTestRunner(t)
			r.goInit = in.goInit
			test(t, r)
		})
	}
}

// Ensure a job that cannot start reports why, from either init, and leaves
// nothing behind.
func TestIsolated_StartErrors(t *testing.T) {
	requireSandbox(t)
	forEachInit(t, func(t *testing.T, r *Runner) {
		for _, tc := range []struct {
			name string
			edit func(*Spec)
			want string
		}{
			{"missing program", func(s *Spec) { s.Path, s.Args = "/nonexistent/prog", []string{"prog"} }, "no such file or directory"},
			{"missing dir", func(s *Spec) { s.Dir = "/nonexistent" }, "no such file or directory"},
			{"NUL in an argument", func(s *Spec) { s.Args = []string{"sh", "a\x00b"} }, "contains a nul byte"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				spec := isolatedSpec(t, "exit 0")
				tc.edit(&spec)
				p, err := r.Start(spec)
				if err == nil {
					p.Close()
					t.Fatal("started")
				}
				// The C init also names the step (exec, chdir); strerror
				// capitalises where Go does not.
				if !strings.Contains(strings.ToLower(err.Error()), tc.want) {
					t.Fatalf("error %q, want it to contain %q", err, tc.want)
				}
				if n := r.Running(); n != 0 {
					t.Fatalf("%d processes left", n)
				}
			})
		}
	})
}

// Ensure an init's failure names its errno across the wire, so the server
// can tell a failure no retry fixes (ENOENT) from one that may pass.
func TestSetupErrorErrno(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      syscall.Errno
		text      string
	}{
		{"an exec that failed", "start /x: exec: No such file or directory [errno 2]", syscall.ENOENT, "sandbox setup: start /x: exec: No such file or directory"},
		{"no errno named", "build root: step 3: bind /y: gone", 0, "sandbox setup: build root: step 3: bind /y: gone"},
		{"not a number", "odd [errno x]", 0, "sandbox setup: odd [errno x]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := setupError(tc.msg)
			if err.Error() != tc.text {
				t.Fatalf("text %q, want %q", err.Error(), tc.text)
			}
			if errno, ok := errors.AsType[syscall.Errno](err); (tc.want != 0) != ok || errno != tc.want {
				t.Fatalf("errno %v (%v), want %v", errno, ok, tc.want)
			}
		})
	}
	if got := withErrno("exec", fmt.Errorf("wrapped: %w", syscall.ENOEXEC)); got != "exec [errno 8]" {
		t.Fatalf("withErrno: %q", got)
	}
}

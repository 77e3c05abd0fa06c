package sandbox

import (
	"fmt"
	"io"
	"os"
	"strconv"
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

func runIsolated(t *testing.T, r *Runner, spec Spec) (string, ExitStatus) {
	t.Helper()
	p, err := r.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, p)
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return string(out), st
}

// Ensure the inside view of a sandboxed job: low pids, few processes, its
// job ID as hostname, only lo, no privileges, fds 0–2, the policy's user,
// rlimits and a private tmpfs.
func TestIsolated_InsideView(t *testing.T) {
	requireV1(t)
	forEachInit(t, insideView)
}

func insideView(t *testing.T, r *Runner) {
	spec := isolatedSpec(t, `echo "pid $$"; echo "procs $(ls /proc | grep -c '^[0-9]')"; echo "host $(hostname)";
		echo "nics $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status;
		ls /proc/self/fd > /tmp/fds; printf 'fds '; tr '\n' , < /tmp/fds; echo; echo "uid $(id -u)"; echo "nofile $(ulimit -n)";
		perl -MIO::Socket::INET -e '$l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:4000", Listen => 1) or die "listen: $!"; IO::Socket::INET->new("127.0.0.1:4000") or die "connect: $!"; print "lo works\n"'; echo "tmp $(df -k /tmp | tail -1 | awk '{print $2}')"`)
	out, st := runIsolated(t, r, spec)
	if st.Code != 0 {
		t.Fatalf("status %s, output:\n%s", st, out)
	}
	var pid int
	if _, err := fmt.Sscanf(out, "pid %d", &pid); err != nil || pid > 32 { // the helper's Go threads take pids too
		t.Errorf("job pid %d (%v), want a low pid in its own namespace", pid, err)
	}
	for _, want := range []string{"host " + spec.Isolation.ID + "\n", "nics lo,\n", "NoNewPrivs:\t1\n",
		"CapEff:\t0000000000000000\n", "fds 0,1,2,3,\n", "uid 65534\n", "nofile 64\n", "tmp 8192\n", "lo works\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside view lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "procs ") {
		var n int
		fmt.Sscanf(out[strings.Index(out, "procs ")+6:], "%d", &n)
		if n > 5 {
			t.Errorf("%d processes visible in /proc, want a handful", n)
		}
	}
}

// Ensure the target's exit status crosses the helper exactly, signals
// included, with no extra descriptor.
func TestIsolated_ExitStatus(t *testing.T) {
	requireV1(t)
	forEachInit(t, exitStatus)
}

func exitStatus(t *testing.T, r *Runner) {
	for _, tc := range []struct {
		script string
		code   int
		sig    syscall.Signal
	}{{"exit 0", 0, 0}, {"exit 3", 3, 0}, {"exit 137", 137, 0}, {"kill -KILL $$", 137, syscall.SIGKILL}, {"kill -TERM $$", 143, syscall.SIGTERM}} {
		t.Run(tc.script, func(t *testing.T) {
			_, st := runIsolated(t, r, isolatedSpec(t, tc.script))
			if st.Code != tc.code || st.Signal != tc.sig {
				t.Fatalf("status %+v, want code %d signal %v", st, tc.code, tc.sig)
			}
		})
	}
}

// Ensure a signal to the job reaches its processes through the helper, and
// a setsid escapee dies with the job.
func TestIsolated_SignalAndEscapee(t *testing.T) {
	requireV1(t)
	forEachInit(t, func(t *testing.T, r *Runner) {
		for _, userns := range []bool{false, true} {
			t.Run(fmt.Sprintf("user namespace %v", userns), func(t *testing.T) { signalAndEscapee(t, r, userns) })
		}
	})
}

func signalAndEscapee(t *testing.T, r *Runner, userns bool) {
	spec := isolatedSpec(t, `setsid sleep 30 & trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`)
	spec.Isolation.UserNamespace = userns
	p, err := r.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := p.Stdout.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	time.Sleep(100 * time.Millisecond) // let dash settle into its loop (it exits 2 if hit mid-echo)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p); st.Code != 7 {
		t.Fatalf("status %s", st)
	}
	if err := p.Close(); err != nil { // kills and deletes the cgroup: fails if the escapee lives
		t.Fatal(err)
	}
}

// Ensure a running job's PID 1 is the C init: one thread, so a job costs
// the host two pids (init and target), not a Go runtime's worth, holding
// CAP_KILL and nothing else.
func TestIsolated_CInitIsOneThread(t *testing.T) {
	requireV1(t)
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

// Ensure a user-namespaced job: root inside maps to an unused host uid, the
// policy's user runs the target, and the sandbox otherwise behaves the same.
func TestIsolated_UserNamespace(t *testing.T) {
	requireV1(t)
	forEachInit(t, userNamespace)
}

func userNamespace(t *testing.T, r *Runner) {
	spec := isolatedSpec(t, `cat /proc/self/uid_map; echo "uid $(id -u)"; echo "host $(hostname)"; touch /tmp/x && echo "tmp ok"; exit 5`)
	spec.Isolation.UserNamespace = true
	out, st := runIsolated(t, r, spec)
	fields := strings.Fields(out)
	if len(fields) < 3 || fields[0] != "0" || fields[2] != "65536" {
		t.Fatalf("uid_map: %q", out)
	}
	if base, err := strconv.ParseUint(fields[1], 10, 32); err != nil || !DefaultUserNamespaceIDs.Contains(uint32(base)) ||
		(uint32(base)-DefaultUserNamespaceIDs.First)%UserNamespaceBlock != 0 {
		t.Errorf("uid_map %q: want a block of %s", out, DefaultUserNamespaceIDs)
	}
	for _, want := range []string{"uid 65534\n", "host " + spec.Isolation.ID + "\n", "tmp ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if st.Code != 5 {
		t.Fatalf("status %s", st)
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
	requireV1(t)
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

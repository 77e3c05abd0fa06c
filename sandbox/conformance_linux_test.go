package sandbox

// The conformance suite, in the manner of Nomad's executor tests: one list
// of cases, each a real job whose output is asserted, run on every backend
// a job can have. A case that only means something in a sandbox says so,
// and is skipped, named, on the plain backend.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// backend is one way a job runs.
type backend struct {
	name      string
	sandboxed bool
	goInit    bool // the Go init even where the C one is built in
	userNS    bool
}

func backends() []backend {
	bs := []backend{{name: "plain"}}
	if haveCInit {
		bs = append(bs, backend{name: "c init", sandboxed: true})
	}
	bs = append(bs, backend{name: "go init", sandboxed: true, goInit: true})
	bs = append(bs, backend{name: "user namespace", sandboxed: true, userNS: true, goInit: !haveCInit})
	return bs
}

// job is what a case asks of its backend: a shell script's spec, with the
// sandbox the backend gives, and the runner to start it with.
type conformanceEnv struct {
	b      backend
	r      *Runner
	filter *SeccompFilter // the default profile's
}

// spec is script as a job of this backend: dynamic ids, the default
// seccomp profile and the tests' view when sandboxed.
func (e *conformanceEnv) spec(t *testing.T, script string) Spec {
	t.Helper()
	s := Spec{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin", "CONFORMANCE=1"}}
	if !e.b.sandboxed {
		return s
	}
	s.Isolation = &Isolation{
		ID: fmt.Sprintf("JOBC%d", time.Now().UnixNano()%1e9), Resources: limits(0, 64<<20, 32), TmpSizeBytes: 8 << 20,
		Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 64}},
		DynamicUser: true, UserNamespace: e.b.userNS, View: testView(), Seccomp: e.filter,
	}
	return s
}

func (e *conformanceEnv) needSandbox(t *testing.T) {
	t.Helper()
	if !e.b.sandboxed {
		t.Skip("a sandbox's property: a plain job has none")
	}
}

// run starts spec, writes stdin (then EOF) and returns its stdout, stderr
// and status once it is over and released.
func (e *conformanceEnv) run(t *testing.T, spec Spec, stdin string) (stdout, stderr string, st ExitStatus) {
	t.Helper()
	p, err := e.r.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if stdin != "" {
		// A job that has ended without reading leaves a broken pipe: fine.
		if _, err := io.WriteString(p.Stdio, stdin); err != nil && !errors.Is(err, syscall.EPIPE) {
			t.Fatal(err)
		}
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(p.Stdio) // until the job's fd 2 closes
		errc <- b
	}()
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	st = waitDone(t, p)
	var errOut []byte
	select {
	case errOut = <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("stderr did not end")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return string(out), string(errOut), st
}

// readUntilReady reads a running job's stdout up to its line "ready"; the
// job goes on.
func readUntilReady(t *testing.T, p *Process) string {
	t.Helper()
	var out strings.Builder
	br := bufio.NewReader(p.Stdout)
	for !strings.HasSuffix(out.String(), "ready\n") {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (%q)", err, out.String())
		}
		out.WriteString(l)
	}
	return out.String()
}

// field is the rest of stdout's line that starts with prefix.
func field(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

var conformanceCases = []struct {
	name string
	run  func(t *testing.T, e *conformanceEnv)
}{
	{"exit status crosses exactly", func(t *testing.T, e *conformanceEnv) {
		for _, tc := range []struct {
			script string
			code   int
			sig    syscall.Signal
		}{{"exit 0", 0, 0}, {"exit 3", 3, 0}, {"exit 137", 137, 0}, {"kill -KILL $$", 137, syscall.SIGKILL}, {"kill -TERM $$", 143, syscall.SIGTERM}} {
			if _, _, st := e.run(t, e.spec(t, tc.script), ""); st.Code != tc.code || st.Signal != tc.sig {
				t.Errorf("%q: status %+v, want code %d signal %v", tc.script, st, tc.code, tc.sig)
			}
		}
	}},
	{"stdin, stdout and stderr are three streams", func(t *testing.T, e *conformanceEnv) {
		out, errOut, st := e.run(t, e.spec(t, `read line; echo "out $line"; echo "err $line" >&2; cat`), "hello\nrest\n")
		if out != "out hello\nrest\n" || errOut != "err hello\n" || st.Code != 0 {
			t.Errorf("stdout %q, stderr %q, status %s", out, errOut, st)
		}
	}},
	{"the environment is the spec's, nothing inherited", func(t *testing.T, e *conformanceEnv) {
		out, _, _ := e.run(t, e.spec(t, `env | cut -d= -f1 | sort | tr '\n' ,`), "")
		for _, v := range strings.Split(strings.TrimSuffix(out, ","), ",") {
			switch v {
			case "PATH", "CONFORMANCE", "PWD", "SHLVL", "_": // the spec's, and what sh adds
			default:
				t.Errorf("the job has %s: %s", v, out)
			}
		}
	}},
	{"a signal reaches the job's processes", func(t *testing.T, e *conformanceEnv) {
		p, err := e.r.Start(e.spec(t, `trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(p.Stdout)
		if l, err := br.ReadString('\n'); err != nil || l != "ready\n" {
			t.Fatalf("read %q %v", l, err)
		}
		time.Sleep(100 * time.Millisecond) // dash exits 2 if hit mid-echo
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st := waitDone(t, p); st.Code != 7 {
			t.Errorf("status %s, want exit 7 from the trap", st)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}},
	{"a bound path swapped for a symlink shows nothing more of the host", func(t *testing.T, e *conformanceEnv) {
		// Whoever can write where a view's path lies (a job of another
		// policy, a host user) swaps it for a symlink: to another
		// tenant's files, the server's hidden ones, the host's /proc or
		// the build area's /oldroot. The next job must fail to start or
		// see only what the view gives, whether its plan was cached
		// before the swap or made after it.
		e.needSandbox(t)
		base := openDir(t)
		site, other, hidden := filepath.Join(base, "shared/site"), filepath.Join(base, "other"), filepath.Join(base, "hidden")
		for f, body := range map[string]string{"shared/site/index": "site\n", "other/secret.txt": "SECRET\n", "hidden/conf": "HIDDEN\n"} {
			writeOpen(t, filepath.Join(base, f), body)
		}
		// shared is a job's to write (nobody's, as a job's files would be).
		if err := os.Chown(filepath.Join(base, "shared"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		spec := e.spec(t, `cd `+site+` 2>/dev/null; cat index secret.txt conf .`+base+`/other/secret.txt .`+base+`/hidden/conf oldroot`+base+`/other/secret.txt 2>/dev/null
			if [ -e 1/cmdline ]; then [ "$(tr '\0' ' ' <1/cmdline)" = "$(tr '\0' ' ' </proc/1/cmdline)" ] && echo own-proc || echo HOST-PROC; fi`)
		spec.Isolation.View.RO = append(spec.Isolation.View.RO, site)
		spec.Isolation.View.Hide = []string{hidden}
		for _, target := range []string{other, hidden, "/proc", "/", "/oldroot", "/oldroot" + other} {
			for _, cached := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s cached %v", target, cached), func(t *testing.T) {
					restoreSwap(t, site)
					flushPlans(e.r)
					if out, _, _ := e.run(t, spec, ""); out != "site\n" { // and its plan is cached
						t.Fatalf("before the swap: %q", out)
					}
					if err := os.Rename(site, site+".old"); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(target, site); err != nil {
						t.Fatal(err)
					}
					if !cached {
						flushPlans(e.r)
					}
					p, err := e.r.Start(spec)
					if err != nil {
						t.Logf("refused: %v", err)
						return
					}
					out, _ := io.ReadAll(p.Stdout)
					waitDone(t, p)
					if err := p.Close(); err != nil {
						t.Fatal(err)
					}
					for _, leak := range []string{"SECRET", "HIDDEN", "HOST-PROC"} {
						if strings.Contains(string(out), leak) {
							t.Errorf("the swap showed the job %s: %q", leak, out)
						}
					}
				})
			}
		}
		restoreSwap(t, site)
	}},
	{"the init keeps only CAP_KILL once the job runs", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		if e.b.goInit && haveCInit {
			t.Skip("the Go init drops its capabilities on every thread only without cgo (AllThreadsSyscall); a cgo binary runs the C init")
		}
		// The init drops them right after the job's exec, which it waits
		// for: the job's first instructions may run before that.
		out, _, _ := e.run(t, e.spec(t, `i=0
while [ $i -lt 200 ] && ! grep -q '^CapEff:.0000000000000020$' /proc/1/status; do sleep 0.01; i=$((i+1)); done
grep -E '^(CapEff|CapPrm)' /proc/1/status`), "")
		if out != "CapPrm:\t0000000000000020\nCapEff:\t0000000000000020\n" {
			t.Errorf("the init's capabilities:\n%s\nwant CAP_KILL (0x20) alone", out)
		}
	}},
	{"a profile may deny fork and id changes: only the exec runs under it", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		eperm := uint(1)
		for _, tc := range []struct {
			name   string
			action specs.LinuxSeccompAction
		}{{"errno", specs.ActErrno}, {"kill", specs.ActKillThread}} {
			prof := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"clone", "clone3", "fork", "vfork"}, Action: tc.action, ErrnoRet: &eperm},
				{Names: []string{"setuid", "setgid", "setgroups", "setresuid", "setresgid", "setreuid", "setregid", "setfsuid", "setfsgid"}, Action: tc.action, ErrnoRet: &eperm},
			}}
			if tc.action != specs.ActErrno {
				for i := range prof.Syscalls {
					prof.Syscalls[i].ErrnoRet = nil
				}
			}
			f, err := CompileSeccomp(prof)
			if err != nil {
				t.Fatal(err)
			}
			spec := e.spec(t, `echo ran`) // a builtin: the shell forks nothing
			spec.Isolation.Seccomp = f
			if out, _, st := e.run(t, spec, ""); out != "ran\n" || st.Code != 0 {
				t.Errorf("%s: the job under a profile denying fork and id changes: %q, %s; want it run", tc.name, out, st)
			}
		}
	}},
	{"every exit signal reaches the job, even one the server ignores", func(t *testing.T, e *conformanceEnv) {
		// As under nohup: the server ignores HUP, and a job must not
		// inherit that. (NewRunner takes care of it for plain jobs at the
		// server's start, which this ignoring comes after.)
		signal.Ignore(syscall.SIGHUP)
		defer signal.Reset(syscall.SIGHUP)
		if !e.b.sandboxed {
			unignoreSignals()
		}
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGPIPE, syscall.SIGXCPU, syscall.SIGABRT, syscall.SIGSEGV} {
			name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
			p, err := e.r.Start(e.spec(t, `trap 'echo got `+name+`; exit 7' `+name+`; echo ready; while :; do sleep 0.05; done`))
			if err != nil {
				t.Fatal(err)
			}
			readUntilReady(t, p)
			time.Sleep(100 * time.Millisecond) // dash exits 2 if hit mid-echo
			if err := p.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if st := waitDone(t, p); st.Code != 7 {
				t.Errorf("%s: status %s, want exit 7 from the job's trap", name, st)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"a setsid escapee dies with the job", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t) // a plain job's kill is its process group, which setsid leaves
		p, err := e.r.Start(e.spec(t, `setsid sleep 30 & echo ready; exit 0`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(p.Stdout).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		waitDone(t, p)
		if err := p.Close(); err != nil { // kills what is left and deletes the cgroup: fails if the escapee lives
			t.Fatal(err)
		}
	}},
	{"the working directory", func(t *testing.T, e *conformanceEnv) {
		spec := e.spec(t, `pwd`)
		out, _, _ := e.run(t, spec, "")
		want, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		if e.b.sandboxed {
			want = "/" // never the server's, which is not even in the view
		}
		if out != want+"\n" {
			t.Errorf("a job without Dir starts in %q, want %q", out, want)
		}
		spec = e.spec(t, `pwd`)
		spec.Dir = "/usr/bin"
		if out, _, _ := e.run(t, spec, ""); out != "/usr/bin\n" {
			t.Errorf("a job with Dir /usr/bin starts in %q", out)
		}
	}},
	{"a root of its own, read-only", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		out, _, _ := e.run(t, e.spec(t, `echo "fs $(stat -f -c %T /)"; touch /x 2>/dev/null && echo "wrote /"; echo "top $(ls / | tr '\n' ' ')";
			echo "dev $(ls /dev | tr '\n' ' ')"; echo "cmdline $(wc -c < /proc/cmdline)"; test -e /sys && echo "has /sys"; echo "cwd $(pwd)"`), "")
		if field(out, "fs ") != "tmpfs" || strings.Contains(out, "wrote /") || strings.Contains(out, "has /sys") {
			t.Errorf("the root is not a read-only tmpfs without /sys:\n%s", out)
		}
		for _, d := range strings.Fields(field(out, "top ")) {
			switch d {
			case "bin", "dev", "etc", "lib", "lib64", "proc", "run", "sbin", "tmp", "usr", "var":
			default:
				t.Errorf("/ holds %q", d)
			}
		}
		if got := field(out, "dev "); got != "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero " {
			t.Errorf("/dev holds %q", got)
		}
		if field(out, "cmdline ") != "0" {
			t.Errorf("/proc/cmdline is not masked:\n%s", out)
		}
	}},
	{"private tmpfs, one size, charged to the job", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		out, _, st := e.run(t, e.spec(t, `for d in /tmp /var/tmp /dev/shm /run; do echo x > $d/f && echo "writes $d"; done;
			head -c 6M /dev/zero > /tmp/a && head -c 4M /dev/zero > /dev/shm/b 2>/dev/null || echo "full at 8M";
			echo "size $(df -k /tmp | tail -1 | awk '{print $2}')"`), "")
		for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm", "/run"} {
			if !strings.Contains(out, "writes "+d+"\n") {
				t.Errorf("%s is not writable:\n%s", d, out)
			}
		}
		if !strings.Contains(out, "full at 8M\n") || field(out, "size ") != "8192" || st.Code != 0 {
			t.Errorf("the job's tmpfs do not share one 8 MiB:\n%s (%s)", out, st)
		}
	}},
	{"a uid of its own; a user namespace block of its own", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		script := `echo "uid $(id -u) $(id -un)"; echo "map $(cat /proc/self/uid_map)"; echo ready; exec sleep 30`
		var ps []*Process
		var uids, maps []string
		for i := 0; i < 2; i++ { // both running at once
			p, err := e.r.Start(e.spec(t, script))
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
			out := readUntilReady(t, p)
			uids, maps = append(uids, field(out, "uid ")), append(maps, strings.Join(strings.Fields(field(out, "map ")), " "))
		}
		for _, p := range ps {
			if err := p.Kill(); err != nil {
				t.Fatal(err)
			}
			waitDone(t, p)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if e.b.userNS {
			if uids[0] != fmt.Sprintf("%d job", DynamicNamespaceID) || maps[0] == maps[1] {
				t.Errorf("user-namespaced jobs: uids %q, maps %q: want uid %d inside and two different blocks", uids, maps, DynamicNamespaceID)
			}
			return
		}
		var ids [2]uint32
		for i, u := range uids {
			var name string
			fmt.Sscanf(u, "%d %s", &ids[i], &name)
			if !DefaultDynamicIDs.Contains(ids[i]) || name != "job" {
				t.Errorf("job %d is %q: want a dynamic uid named job", i, u)
			}
		}
		if ids[0] == ids[1] {
			t.Errorf("two running jobs share uid %d", ids[0])
		}
	}},
	{"the default seccomp profile refuses", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		// perl's syscall(): unshare(CLONE_NEWUSER), keyctl(GET_KEYRING_ID),
		// io_uring_setup, perf_event_open, bpf, userfaultfd, mount, setns,
		// clone3, an x32 getpid; getppid must work.
		out, errOut, _ := e.run(t, e.spec(t, `perl -e 'sub r { my ($n, $v) = @_; print "$n=", ($v < 0 ? ($!+0) : "ok"), "\n" }
			my $p = "\0" x 128; my ($a, $b, $c) = ("none", "/tmp", "tmpfs");
			r("unshare", syscall(272, 0x10000000)); r("keyctl", syscall(250, 0, -3, 0)); r("io_uring", syscall(425, 8, $p));
			r("perf", syscall(298, $p, 0, -1, -1, 0)); r("bpf", syscall(321, 0, $p, 16)); r("userfaultfd", syscall(323, 0));
			r("mount", syscall(165, $a, $b, $c, 0, 0)); r("setns", syscall(308, 0, 0)); r("clone3", syscall(435, $p, 88));
			r("x32", syscall(0x40000000 | 39)); r("getppid", syscall(110));'; grep Seccomp: /proc/self/status`), "")
		for _, tc := range []struct{ call, want string }{
			{"unshare", "1"}, {"keyctl", "1"}, {"io_uring", "1"}, {"perf", "1"}, {"bpf", "1"}, {"userfaultfd", "1"},
			{"mount", "1"}, {"setns", "1"}, {"clone3", "38"}, {"x32", "38"}, {"getppid", "ok"},
		} {
			if got := field(out, tc.call+"="); got != tc.want {
				t.Errorf("%s: %q, want %q\n%s%s", tc.call, got, tc.want, out, errOut)
			}
		}
		if !strings.Contains(out, "Seccomp:\t2\n") {
			t.Errorf("no filter in the job:\n%s", out)
		}
	}},
	{"the job's session keyring is its own", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		// With the filter off, so that keyctl works: each job's session
		// keyring is a new one, none of the server's.
		spec := e.spec(t, `perl -e 'print "session ", syscall(250, 0, -3, 0), "\n"'`)
		spec.Isolation.Seccomp = nil
		a, _, _ := e.run(t, spec, "")
		spec = e.spec(t, `perl -e 'print "session ", syscall(250, 0, -3, 0), "\n"'`)
		spec.Isolation.Seccomp = nil
		b, _, _ := e.run(t, spec, "")
		own, err := keyctlGetKeyringID(-3)
		if err != nil {
			t.Skipf("the kernel has no keyrings: %v", err)
		}
		sa, sb := field(a, "session "), field(b, "session ")
		if sa == "" || sa == "-1" || sa == sb || sa == strconv.Itoa(own) {
			t.Errorf("session keyrings: job %q, next job %q, the server's %d: want two new ones", sa, sb, own)
		}
	}},
	{"no privileges; its own pids, network and descriptors; its rlimits", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		out, _, st := e.run(t, e.spec(t, `echo "pid $$"; echo "procs $(ls /proc | grep -c '^[0-9]')";
			echo "nics $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"; grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status;
			ls /proc/self/fd > /tmp/fds; printf 'fds '; tr '\n' , < /tmp/fds; echo; echo "nofile $(ulimit -n)"; echo "cgroup $(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ,)";
			perl -MIO::Socket::INET -e '$l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:4000", Listen => 1) or die "listen: $!"; IO::Socket::INET->new("127.0.0.1:4000") or die "connect: $!"; print "lo works\n"'`), "")
		if st.Code != 0 {
			t.Fatalf("status %s, output:\n%s", st, out)
		}
		if pid, err := strconv.Atoi(field(out, "pid ")); err != nil || pid > 32 { // the Go init's threads take pids too
			t.Errorf("job pid %q, want a low pid in its own namespace", field(out, "pid "))
		}
		if n, err := strconv.Atoi(field(out, "procs ")); err != nil || n > 5 {
			t.Errorf("%q processes visible in /proc, want a handful", field(out, "procs "))
		}
		for _, want := range []string{"nics lo,\n", "NoNewPrivs:\t1\n", "CapEff:\t0000000000000000\n", "fds 0,1,2,3,\n",
			"nofile 64\n", "cgroup /,\n", "lo works\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("the job's view lacks %q:\n%s", want, out)
			}
		}
	}},
	{"a /sys of its own, read-only, on request", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		spec := e.spec(t, `echo "nets $(ls /sys/class/net | tr '\n' ' ')"; touch /sys/x 2>/dev/null && echo "wrote /sys"; echo done`)
		spec.Isolation.View.Sys = true
		out, errOut, _ := e.run(t, spec, "")
		if field(out, "nets ") != "lo " || strings.Contains(out, "wrote /sys") || !strings.Contains(out, "done\n") {
			t.Errorf("/sys is not the job's own network's, read-only:\n%s%s", out, errOut)
		}
	}},
	{"the hostname is the job's ID", func(t *testing.T, e *conformanceEnv) {
		e.needSandbox(t)
		spec := e.spec(t, `hostname`)
		if out, _, _ := e.run(t, spec, ""); out != spec.Isolation.ID+"\n" {
			t.Errorf("hostname %q, want %q", out, spec.Isolation.ID)
		}
	}},
}

// openDir is a new directory, open to every uid (a job's too), its
// symlinks resolved.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeOpen writes path, and the directories it needs, readable by all.
func writeOpen(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// flushPlans drops r's cached plans: the next job's is made anew.
func flushPlans(r *Runner) {
	r.plans.mu.Lock()
	r.plans.m = nil
	r.plans.mu.Unlock()
}

// restoreSwap undoes a swap of dir for a symlink: dir is a directory
// again, the one it was.
func restoreSwap(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Lstat(dir + ".old"); err != nil {
		return
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".old", dir); err != nil {
		t.Fatal(err)
	}
}

// keyctlGetKeyringID is keyctl(KEYCTL_GET_KEYRING_ID, id, 0) for this process.
func keyctlGetKeyringID(id int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_KEYCTL, 0, uintptr(id), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// Ensure every backend runs every case alike.
func TestConformance(t *testing.T) {
	requireSandbox(t)
	filter, err := CompileSeccomp(DefaultSeccomp())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("the conformance suite's probes need perl")
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			r := newTestRunner(t)
			r.goInit = b.goInit
			e := &conformanceEnv{b: b, r: r, filter: filter}
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) { c.run(t, e) })
			}
			if n := r.Running(); n != 0 {
				t.Errorf("%d processes left", n)
			}
		})
	}
}

// Ensure a dynamic uid comes back only once its job is gone, and that the
// next job with it finds nothing of the last one's in the uid's user
// keyring, which the kernel keeps while the host runs (the filter off, as
// it would have to be for a job to fill it).
func TestDynamicUIDReuse(t *testing.T) {
	requireSandbox(t)
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("the probes need perl")
	}
	r, err := NewRunner(slog.New(slog.NewTextHandler(io.Discard, nil)), RunnerOptions{DynamicIDs: IDRange{First: 61190, Count: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &conformanceEnv{b: backend{name: "c init", sandboxed: true, goInit: !haveCInit}, r: r}
	// 248 add_key, 250 keyctl: 22 GET_PERSISTENT (into -2, the process
	// keyring), 10 SEARCH; -4 is the user keyring.
	hold := e.spec(t, `perl -e 'my ($t, $d, $p) = ("user", "reuse-probe", "secret"); print "added ", syscall(248, $t, $d, $p, 6, -4), "\n";
		my $pk = syscall(250, 22, -1, -2); print "persistent ", ($pk < 0 ? -1 : syscall(248, $t, $d, $p, 6, $pk)), "\n"'; echo "uid $(id -u)"; echo ready; exec sleep 30`)
	p, err := r.Start(hold)
	if err != nil {
		t.Fatal(err)
	}
	out := readUntilReady(t, p)
	if added := field(out, "added "); added == "" || added == "-1" {
		t.Fatalf("the first job could not add a key: %q", out)
	}
	if added := field(out, "persistent "); added == "" || added == "-1" {
		t.Fatalf("the first job could not add a key to its persistent keyring: %q", out)
	}
	// The only uid is held: the next job must wait for it, not share it.
	if _, err := r.Start(e.spec(t, "exit 0")); !errors.Is(err, ErrNoIDs) {
		t.Fatalf("a second job while the only dynamic uid is held: %v, want ErrNoIDs", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	next, _, _ := e.run(t, e.spec(t, `echo "uid $(id -u)"; perl -e 'my ($t, $d) = ("user", "reuse-probe"); my $k = syscall(250, 10, -4, $t, $d, 0); print "found ", ($k < 0 ? "none" : $k), "\n";
		my $pk = syscall(250, 22, -1, -2); $k = syscall(250, 10, $pk, $t, $d, 0); print "persistent ", ($pk < 0 ? "unreachable" : $k < 0 ? "none" : $k), "\n"'`), "")
	if field(next, "uid ") != field(out, "uid ") {
		t.Fatalf("the next job is uid %q, the first was %q: want the same, reused", field(next, "uid "), field(out, "uid "))
	}
	if got := field(next, "found "); got != "none" {
		t.Errorf("the next job with uid %s found the last one's key: %s", field(next, "uid "), got)
	}
	if got := field(next, "persistent "); got != "none" {
		t.Errorf("the next job with uid %s, in its persistent keyring: %s, want none (the last one's key cleared)", field(next, "uid "), got)
	}
}

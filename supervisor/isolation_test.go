package supervisor

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
)

// recordingRunner stands in for the sandbox where the kernel is not under
// test: it keeps what the supervisor asks for and runs each job as a plain
// process on the shared runner.
type recordingRunner struct {
	mu    sync.Mutex
	specs []sandbox.Spec
	pools []sandbox.Isolation
}

func (f *recordingRunner) Start(spec sandbox.Spec) (*sandbox.Process, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	spec.Isolation = nil
	return testRunner.Start(spec)
}

func (f *recordingRunner) NewPool(_ *slog.Logger, tmpl sandbox.Isolation, _ int) *sandbox.Pool {
	f.mu.Lock()
	f.pools = append(f.pools, tmpl)
	f.mu.Unlock()
	return nil // no prepared sandboxes: every job starts through Start
}

func mustPolicy(t *testing.T, name, body string) *policies.Policy {
	t.Helper()
	p, ps := policies.Parse(name+".toml", []byte(body))
	if len(ps) > 0 {
		t.Fatalf("policy %s: %v", name, ps)
	}
	return p
}

// Ensure the sandbox the supervisor asks for each job: its policy's view
// plus the app's dir, the server's files hidden, a dynamic or named user,
// the policy's seccomp filter compiled once, and a pool per policy and
// app dir in use.
func TestSupervisor_IsolationOfEachJob(t *testing.T) {
	t.Parallel()
	def := mustPolicy(t, "def", "initiators = 2\n")
	off := mustPolicy(t, "off", "seccomp = \"off\"\nuser = \"nobody\"\nuser_namespace = true\n")
	dir := t.TempDir()
	f := &recordingRunner{}
	hide := []string{"/etc/chimirror.toml", "/var/lib/chimirror"}
	s, err := New(slog.New(slog.DiscardHandler), Config{Runner: f, Sandbox: true, Hide: hide, Ledger: openLedger(t),
		Apps: []App{
			{Name: "a", Path: "/bin/true", Args: []string{"true"}, Policy: def, Dir: dir},
			{Name: "b", Path: "/bin/true", Args: []string{"true"}, Policy: def},
			{Name: "c", Path: "/bin/true", Args: []string{"true"}, Policy: off, ReadOnly: []string{"/opt/c"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	for _, app := range []string{"a", "b", "c"} {
		j, err := s.Start(Request{App: app})
		if err != nil {
			t.Fatal(err)
		}
		j.Abort()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.specs) != 3 {
		t.Fatalf("%d jobs started, want 3", len(f.specs))
	}
	byApp := map[string]*sandbox.Isolation{}
	for _, sp := range f.specs {
		if sp.Isolation == nil {
			t.Fatalf("job %v started without a sandbox", sp.Args)
		}
		byApp[strings.TrimPrefix(sp.Env[len(sp.Env)-2], "CHIMIRROR_APP=")] = sp.Isolation
	}
	a, b, c := byApp["a"], byApp["b"], byApp["c"]
	if a == nil || b == nil || c == nil {
		t.Fatalf("jobs by app: %v", byApp)
	}
	if !slices.Contains(a.View.RO, dir) || slices.Contains(b.View.RO, dir) {
		t.Errorf("the app's dir is bound for a (%v) and only for it (b: %v)", a.View.RO, b.View.RO)
	}
	for _, iso := range []*sandbox.Isolation{a, b, c} {
		if !slices.Equal(iso.View.Hide, hide) {
			t.Errorf("the server's files are not hidden: %v", iso.View.Hide)
		}
		if !slices.Contains(iso.View.RO, "/usr") {
			t.Errorf("the policy's default view is missing: %v", iso.View.RO)
		}
	}
	if !a.DynamicUser || a.Seccomp == nil || a.Seccomp != b.Seccomp {
		t.Errorf("policy def: dynamic %v, filter %p and %p: want a dynamic user and one filter compiled for the policy", a.DynamicUser, a.Seccomp, b.Seccomp)
	}
	if c.DynamicUser || c.UserName != "nobody" || c.Seccomp != nil || !c.UserNamespace || !slices.Contains(c.View.RO, "/opt/c") {
		t.Errorf("policy off for app c: %+v", *c)
	}
	// One pool per policy (with initiators) and app dir in use: a's and b's.
	if len(f.pools) != 2 {
		t.Errorf("%d pools, want 2 (policy def with a's dir, and without)", len(f.pools))
	}
}

// Ensure a policy whose seccomp profile does not compile starts no job,
// and says why.
func TestSupervisor_UncompilableProfileRefusesJobs(t *testing.T) {
	t.Parallel()
	bad := mustPolicy(t, "bad", "")
	bad.Seccomp, bad.SeccompProfile = "/x.json", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"opne"}, Action: specs.ActAllow}}}
	f := &recordingRunner{}
	s, err := New(slog.New(slog.DiscardHandler), Config{Runner: f, Sandbox: true, Ledger: openLedger(t),
		Apps: []App{{Name: "a", Path: "/bin/true", Args: []string{"true"}, Policy: bad}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if _, err := s.Start(Request{App: "a"}); err == nil || !strings.Contains(err.Error(), `unknown syscall "opne"`) {
		t.Fatalf("start: %v, want the profile's error", err)
	}
	if len(f.specs) != 0 {
		t.Errorf("%d processes started", len(f.specs))
	}
}

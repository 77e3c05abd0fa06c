package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// requireTemplates skips where no job is cloned from a template: a build
// without cgo, or no cgroups to run sandboxed jobs in.
func requireTemplates(t *testing.T) {
	t.Helper()
	requireSandbox(t)
	if !haveCInit {
		t.Skip("built without cgo: every init builds its job's root")
	}
}

// templateView is a view with every kind of step: host paths, a masked
// directory and file inside one, a tmpfs path inside one, and /sys.
func templateView(t *testing.T) View {
	t.Helper()
	for _, p := range []string{"/usr/local", "/usr/share/doc", "/usr/bin/env"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
	}
	v := testView()
	v.Hide = []string{"/usr/share/doc", "/usr/bin/env"}
	v.Tmpfs = []string{"/usr/local"}
	v.Sys = true
	return v
}

// templateSpec runs script as a job of view, with fixed ids (so that two
// jobs' /etc/passwd agree) and the default seccomp filter.
func templateSpec(t *testing.T, view View, script string) Spec {
	t.Helper()
	filter, err := CompileSeccomp(DefaultSeccomp())
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Isolation: &Isolation{
			ID: "tmpl", Resources: limits(0, 64<<20, 32), TmpSizeBytes: 8 << 20, UID: 61999, GID: 61999,
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 64}}, View: view, Seccomp: filter,
		},
	}
}

// runJob runs spec to its end and returns its stdout; stderr or a failure
// fails the test.
func runJob(t *testing.T, r *Runner, spec Spec) string {
	t.Helper()
	e := &conformanceEnv{r: r}
	out, errOut, st := e.run(t, spec, "")
	if st.Code != 0 || errOut != "" {
		t.Fatalf("job: exit %d, stderr %q, stdout %q", st.Code, errOut, out)
	}
	return out
}

// holderOf is the live holder of view's template (of templateSpec's
// isolation), or nil.
func holderOf(r *Runner, spec Spec) *holder {
	r.tmpls.mu.Lock()
	t := r.tmpls.m[viewKey(spec.Isolation)]
	r.tmpls.mu.Unlock()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == nil || t.h.exited() {
		return nil
	}
	return t.h
}

// viewScript prints what a job sees of its filesystem, in an order that
// does not depend on how the root was built: its mount table as mount
// point, root, type and options (no ids), sorted; the paths of its root
// with their type, mode and owner; the files made for it; and whether it
// can write where it must not.
const viewScript = `
while read -r id parent dev root point opts rest; do
	fs=${rest#*- }
	echo "mount $point $root $opts ${fs%% *} $(echo "$fs" | cut -d' ' -f3)"
done </proc/self/mountinfo | sort
echo "propagating mounts: $(grep -c -e ' shared:' -e ' master:' -e ' propagate_from:' /proc/self/mountinfo)"
for p in / /etc /etc/* /dev /dev/* /tmp /var /var/tmp /run /usr/local /usr/share/doc /usr/bin/env /proc/kcore /proc/sys /sys/class/net/lo; do
	[ -e "$p" ] || [ -L "$p" ] && echo "path $p $(stat -c '%F %a %u %g' "$p")"
done
cat /etc/passwd /etc/group /etc/hosts
ls -A /tmp /var/tmp /run /dev/shm /usr/local
for p in /etc/x /x /usr/x /dev/x; do
	(echo x >"$p") 2>/dev/null && echo "wrote $p"
done
id; hostname
`

// Ensure a job started from a template sees exactly the view a job whose
// init builds its root sees: the same mounts, with the same options, the
// same paths and files.
func TestTemplate_SameView(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	spec := templateSpec(t, templateView(t), viewScript)

	templated := runJob(t, r, spec)
	h := holderOf(r, spec)
	if h == nil {
		t.Fatal("the job's view has no template")
	}
	again := runJob(t, r, spec)
	if holderOf(r, spec) != h {
		t.Error("a second job of the view got another template")
	}
	r.noTemplates = true
	built := runJob(t, r, spec)

	if templated != built {
		t.Errorf("a job from a template sees:\n%s\na job that built its root sees:\n%s", templated, built)
	}
	if again != templated {
		t.Errorf("two jobs of one template differ:\n%s\nvs\n%s", templated, again)
	}
	// What the comparison must have seen, lest it compare two empty views.
	for _, want := range []string{
		"mount / / ro,nosuid,relatime tmpfs ",
		"mount /usr /usr ro,nosuid,nodev,relatime ",
		"mount /tmp /tmp rw,nosuid,nodev,relatime tmpfs rw,size=8192k,mode=700",
		"mount /usr/local /tmpfs0 rw,nosuid,nodev,relatime tmpfs rw,size=8192k,mode=700",
		"mount /usr/share/doc /empty ro,nosuid,nodev,noexec,relatime tmpfs",
		"mount /etc/passwd /passwd ro,nosuid,nodev,relatime tmpfs",
		"mount /proc / rw,nosuid,nodev,noexec,relatime proc",
		"mount /sys / ro,nosuid,nodev,noexec,relatime sysfs",
		"path /usr/bin/env character special file 666 0 0",
		"job:x:61999:61999:",
		"propagating mounts: 0\n",
		"uid=61999",
	} {
		if !strings.Contains(templated, want) {
			t.Errorf("the view lacks %q:\n%s", want, templated)
		}
	}
	if strings.Contains(templated, "wrote ") {
		t.Errorf("a job wrote into its root:\n%s", templated)
	}
}

// Ensure what a job writes is its own: a later job of the same template
// does not see it, nor does the template, and the template's root stays
// as built.
func TestTemplate_WritesStayWithTheJob(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	view := templateView(t)
	own := []string{"/tmp", "/var/tmp", "/run", "/dev/shm", "/usr/local"}
	var write strings.Builder
	for _, d := range own {
		fmt.Fprintf(&write, "echo secret >%s/mine && mkdir %s/dir && ", d, d)
	}
	write.WriteString("echo done")
	if out := runJob(t, r, templateSpec(t, view, write.String())); out != "done\n" {
		t.Fatalf("writing job: %q", out)
	}
	spec := templateSpec(t, view, "ls -A "+strings.Join(own, " ")+"; echo listed")
	h := holderOf(r, spec)
	if h == nil {
		t.Fatal("the view has no template")
	}
	out := runJob(t, r, spec)
	if holderOf(r, spec) != h {
		t.Fatal("the second job got another template")
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasSuffix(l, ":") && l != "listed" {
			t.Errorf("the next job sees %q:\n%s", l, out)
		}
	}
	// The template's root, seen from the host: as built, empty where jobs
	// write (its /usr/local is the host's, which a job's tmpfs covers).
	if _, err := os.Stat("/usr/local/mine"); err == nil {
		t.Error("a job's write reached the host's /usr/local")
	}
	for _, d := range own[:4] {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root%s", h.pid, d))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("the template's %s holds %v", d, entries)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", h.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if f[4] == "/" && !strings.HasPrefix(f[5], "ro,") {
			t.Errorf("the template's root is writable: %s", l)
		}
		for _, d := range own[:4] {
			if f[4] == d {
				t.Errorf("a job's mount reached the template: %s", l)
			}
		}
	}
}

// Ensure a template follows the host: a bound directory replaced (an app
// dir swapped by a rename), a file replaced, or something mounted below a
// bound path shows in the next job, as it would in a root built for it.
func TestTemplate_FollowsTheHost(t *testing.T) {
	requireTemplates(t)
	// Outside /tmp and its kind: a view binding below a job's own /tmp,
	// /var/tmp, /run or /dev/shm has no template. The checkout may be
	// anywhere (a CI clone in /tmp), so the test's files may not be there.
	dir, err := os.MkdirTemp(templateTestBase(t), ".template-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(filepath.Join(dir, "app", "sub"), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Error(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	app, conf := filepath.Join(dir, "app"), filepath.Join(dir, "app.conf")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(app, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(app, "version"), "one")
	write(conf, "one")
	view := testView()
	view.RO = append(view.RO, app, conf)

	r := newTestRunner(t)
	script := fmt.Sprintf("cat %[1]s/version %[2]s; ls %[1]s/sub", app, conf)
	spec := templateSpec(t, view, script)
	if out := runJob(t, r, spec); out != "oneone" {
		t.Fatalf("first job: %q", out)
	}
	if holderOf(r, spec) == nil {
		t.Fatal("the view has no template")
	}
	// The app dir swapped for a new one.
	next := app + ".next"
	if err := os.MkdirAll(filepath.Join(next, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(next, "version"), "two")
	if err := os.Rename(app, app+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, app); err != nil {
		t.Fatal(err)
	}
	if out := runJob(t, r, spec); out != "twoone" {
		t.Errorf("after the app dir was swapped: %q, want twoone", out)
	}
	// The file replaced by a rename.
	write(conf, "two")
	if out := runJob(t, r, spec); out != "twotwo" {
		t.Errorf("after the file was replaced: %q, want twotwo", out)
	}
	// Something mounted below the bound dir.
	if err := unix.Mount("tmpfs", filepath.Join(app, "sub"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "sub", "mounted"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runJob(t, r, spec); out != "twotwomounted\n" {
		t.Errorf("after a mount below the bound dir: %q, want twotwomounted", out)
	}
}

// Ensure a template's holder is owned: one that dies is replaced at the
// next job, and the Runner's Close ends the live one, leaving no process.
func TestTemplate_HolderLifecycle(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	spec := templateSpec(t, templateView(t), "echo ok")
	if out := runJob(t, r, spec); out != "ok\n" {
		t.Fatalf("job: %q", out)
	}
	h := holderOf(r, spec)
	if h == nil {
		t.Fatal("the view has no template")
	}
	if err := syscall.Kill(h.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the killed holder was not reaped")
	}
	if out := runJob(t, r, spec); out != "ok\n" {
		t.Fatalf("job after the holder died: %q", out)
	}
	h2 := holderOf(r, spec)
	if h2 == nil || h2 == h {
		t.Fatal("the dead holder was not replaced")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h2.done:
	default:
		t.Error("Close left the holder unreaped")
	}
	if err := syscall.Kill(h2.pid, 0); err == nil {
		t.Errorf("holder %d still runs after Close", h2.pid)
	}
	r.mu.Lock()
	n := len(r.aux)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("%d template holders left after Close", n)
	}
}

// Ensure the templates are bounded: beyond maxTemplates views the least
// recently used one goes, its holder with it.
func TestTemplate_Bounded(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	var first *holder
	for i := 0; i <= maxTemplates; i++ {
		spec := templateSpec(t, testView(), "true")
		spec.Isolation.TmpSizeBytes = int64(8<<20 + i*4096) // another view key, the same host paths
		runJob(t, r, spec)
		if i == 0 {
			first = holderOf(r, spec)
		}
	}
	r.tmpls.mu.Lock()
	n := len(r.tmpls.m)
	r.tmpls.mu.Unlock()
	if n > maxTemplates {
		t.Errorf("%d templates, want at most %d", n, maxTemplates)
	}
	if first == nil {
		t.Fatal("the first view had no template")
	}
	select {
	case <-first.done:
	case <-time.After(5 * time.Second):
		t.Error("the least recently used template's holder still runs")
	}
	r.mu.Lock()
	aux := len(r.aux)
	r.mu.Unlock()
	if aux > maxTemplates {
		t.Errorf("%d holders running, want at most %d", aux, maxTemplates)
	}
}

// Ensure a clone the holder refuses (here: a "cgroup" that is /dev/null)
// made no init and says so, the holder goes, and the view's jobs build
// their own roots meanwhile.
func TestTemplate_RefusedClone(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	spec := templateSpec(t, templateView(t), "echo ok")
	runJob(t, r, spec)
	r.tmpls.mu.Lock()
	tm := r.tmpls.m[viewKey(spec.Isolation)]
	r.tmpls.mu.Unlock()
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFds(null)
	tm.mu.Lock()
	h := tm.h
	r.mu.Lock()
	_, err = tm.clone(true, null, null, null, null)
	r.mu.Unlock()
	tm.mu.Unlock()
	if !errors.Is(err, errNoInit) {
		t.Fatalf("clone into no cgroup: %v, want errNoInit", err)
	}
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the refusing holder still runs")
	}
	if out := runJob(t, r, spec); out != "ok\n" {
		t.Fatalf("job after the refusal: %q", out)
	}
	if holderOf(r, spec) != nil {
		t.Error("a template was built again within templateRetry of a refusal")
	}
}

// templateTestBase is a directory for a template test's host files that a
// view may bind with a template: the working directory, unless it lies
// below a path every job has its own of; else /var/lib or /srv.
func templateTestBase(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{wd, "/var/lib", "/srv"} {
		private := false
		for _, p := range []string{"/tmp", "/var/tmp", "/run", "/dev/shm"} {
			if d == p || strings.HasPrefix(d, p+"/") {
				private = true
			}
		}
		if st, err := os.Stat(d); !private && err == nil && st.IsDir() {
			return d
		}
	}
	t.Skip("no directory outside /tmp, /var/tmp, /run and /dev/shm for the test's files")
	return ""
}

// Ensure a job from a template whose filter keeps it from keyrings owns
// no key while it runs: it keeps the holder's closed session keyring
// rather than making one, whose freeing at its end would start the
// kernel's key garbage collector, a walk over every key on the host. A
// job whose filter lets it use keyrings still gets a session keyring of
// its own (conformance: "the job's session keyring is its own").
func TestTemplate_NoKeyPerJob(t *testing.T) {
	requireTemplates(t)
	r := newTestRunner(t)
	spec := templateSpec(t, templateView(t), `echo ready; read x`)
	// A uid no other test's job has: no key of an earlier job of it is
	// still waiting for the collector.
	spec.Isolation.UID, spec.Isolation.GID = 61998, 61998
	uid := spec.Isolation.UID
	before, err := keysOf(uid)
	if err != nil {
		t.Skipf("no keyrings to count: %v", err)
	}
	p, err := r.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	readUntilReady(t, p)
	during, err := keysOf(uid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if holderOf(r, spec) == nil {
		t.Fatal("the job's view has no template")
	}
	if during > before {
		t.Errorf("uid %d owned %d keys before its job and %d while it ran: the job made a key", uid, before, during)
	}
}

// keysOf is how many keys uid owns (/proc/key-users; 0 when it has none).
func keysOf(uid uint32) (int, error) {
	b, err := os.ReadFile("/proc/key-users")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == fmt.Sprintf("%d:", uid) {
			var n int
			if _, err := fmt.Sscanf(f[2], "%d/", &n); err != nil {
				return 0, fmt.Errorf("/proc/key-users: %q: %w", l, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

// Ensure a job starts as it should where fs.suid_dumpable is 1, under
// which the init starts its target with a fork rather than sharing its
// memory (shareable in init_linux.c): the job has its ids, and its init
// holds nothing but CAP_KILL.
func TestTemplate_ForkWhereDumpable(t *testing.T) {
	requireTemplates(t)
	const sysctl = "/proc/sys/fs/suid_dumpable"
	was, err := os.ReadFile(sysctl)
	if err != nil {
		t.Skipf("cannot read %s: %v", sysctl, err)
	}
	if err := os.WriteFile(sysctl, []byte("1"), 0o644); err != nil {
		t.Skipf("cannot set %s: %v", sysctl, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(sysctl, was, 0o644); err != nil {
			t.Errorf("restore %s: %v", sysctl, err)
		}
	})
	r := newTestRunner(t)
	spec := templateSpec(t, templateView(t), `echo "ids $(id -u) $(id -g)"; grep -E '^CapEff' /proc/1/status`)
	out := runJob(t, r, spec)
	if holderOf(r, spec) == nil {
		t.Fatal("the job's view has no template")
	}
	if got, want := field(out, "ids "), fmt.Sprintf("%d %d", spec.Isolation.UID, spec.Isolation.GID); got != want {
		t.Errorf("ids %q, want %q\n%s", got, want, out)
	}
	if !strings.Contains(out, "CapEff:\t0000000000000020") {
		t.Errorf("the init's capabilities:\n%s", out)
	}
}

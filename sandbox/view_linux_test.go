package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestView_Visible(t *testing.T) {
	t.Parallel()
	v := View{
		RO:   []string{"/usr", "/etc/ssl"},
		RW:   []string{"/var/lib/job"},
		Hide: []string{"/usr/secret", "/var/lib/job/private", "/etc/ssl/private"},
	}
	for _, tc := range []struct {
		name string
		v    View
		path string
		want bool
	}{
		{"RO itself", v, "/usr", true},
		{"below RO", v, "/usr/bin/sh", true},
		{"RW itself", v, "/var/lib/job", true},
		{"below RW", v, "/var/lib/job/data/x", true},
		{"parent of RO", v, "/etc", false},
		{"root", v, "/", false},
		{"common prefix sibling of RO", v, "/usr2", false},
		{"below common prefix sibling", v, "/usr2/bin", false},
		{"prefix of RO name", v, "/us", false},
		{"common prefix sibling of RW", v, "/var/lib/jobs", false},
		{"Hide itself inside RO", v, "/usr/secret", false},
		{"below Hide inside RO", v, "/usr/secret/key", false},
		{"below Hide inside RW", v, "/var/lib/job/private/x", false},
		{"Hide in a second RO", v, "/etc/ssl/private/k.pem", false},
		{"common prefix sibling of Hide", v, "/usr/secretive", true},
		{"unrelated", v, "/home/alice", false},
		{"empty view", View{}, "/usr", false},
		{"RO root shows all", View{RO: []string{"/"}}, "/anything/at/all", true},
		{"RO root, Hide", View{RO: []string{"/"}, Hide: []string{"/root"}}, "/root/.ssh", false},
		{"Hide root hides all", View{RO: []string{"/usr"}, Hide: []string{"/"}}, "/usr/bin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.v.Visible(tc.path); got != tc.want {
				t.Errorf("%+v.Visible(%q) = %v, want %v", tc.v, tc.path, got, tc.want)
			}
		})
	}
}

// requireDevNodes skips where the host lacks a device node the plan binds.
func requireDevNodes(t *testing.T) {
	t.Helper()
	for _, n := range devNodes {
		if _, err := os.Stat("/dev/" + n); err != nil {
			t.Skipf("no /dev/%s: %v", n, err)
		}
	}
}

// viewDir makes a directory tree for views to bind, and returns its real
// path (the planner resolves symlinks in parents).
//
//	ro/            a directory, with file.txt, sub/, secretdir/, secret.txt
//	ro/link-in     -> sub (a symlink inside ro)
//	rw/            a directory, with sub/
//	outside/       with data.txt, secret/: listed by no view
//	file.txt       a file
//	in-link        -> ro/sub          (relative, into the view)
//	out-link       -> DIR/outside/data.txt (absolute, out of the view)
//	out-dir-link   -> outside         (relative, out of the view)
//	dangling       -> nowhere
func viewDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ro/sub", "ro/secretdir", "rw/sub", "outside/secret"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ro/file.txt", "ro/secret.txt", "outside/data.txt", "outside/secret/key", "file.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"ro/link-in":   "sub",
		"in-link":      "ro/sub",
		"out-link":     filepath.Join(dir, "outside/data.txt"),
		"out-dir-link": "outside",
		"dangling":     "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// viewPlan is the steps that build iso's view for a job running as
// uid:gid (ids as the job sees them), as Prepare takes them.
func viewPlan(iso *Isolation, uid, gid uint32) ([]mountOp, error) {
	t, err := planView(iso)
	if err != nil {
		return nil, err
	}
	return t.forJob(iso, uid, gid, false), nil
}

func mustPlan(t *testing.T, iso *Isolation) *viewTemplate {
	t.Helper()
	tpl, err := planView(iso)
	if err != nil {
		t.Fatalf("planView(%+v): %v", iso.View, err)
	}
	return tpl
}

// opsAt are the steps of kind whose target (b) is dst.
func opsAt(ops []mountOp, kind, dst string) []mountOp {
	var out []mountOp
	for _, op := range ops {
		if op.kind == kind && op.b == dst {
			out = append(out, op)
		}
	}
	return out
}

// indexOf is the index of the first step of kind at dst, or -1.
func indexOf(ops []mountOp, kind, dst string) int {
	return slices.IndexFunc(ops, func(op mountOp) bool { return op.kind == kind && op.b == dst })
}

// oneOp is the one step of kind at dst.
func oneOp(t *testing.T, ops []mountOp, kind, dst string) mountOp {
	t.Helper()
	got := opsAt(ops, kind, dst)
	if len(got) != 1 {
		t.Fatalf("%d %q steps at %s, want 1; plan:\n%s", len(got), kind, dst, dumpOps(ops))
	}
	return got[0]
}

// noOpAt fails if any step targets dst.
func noOpAt(t *testing.T, ops []mountOp, dst string) {
	t.Helper()
	for _, op := range ops {
		if op.b == dst {
			t.Fatalf("unexpected step %+v; plan:\n%s", op, dumpOps(ops))
		}
	}
}

// sameSteps reports whether a and b hold the same steps. The order is not
// compared: planView makes /dev's symlinks (fd, stdin, …) in a map's order,
// which differs from plan to plan.
func sameSteps(a, b []mountOp) bool {
	cmp := func(x, y mountOp) int {
		return strings.Compare(strings.Join([]string{x.kind, x.a, x.b, x.c, x.d, x.e}, "\x00"), strings.Join([]string{y.kind, y.a, y.b, y.c, y.d, y.e}, "\x00"))
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// inArea reports whether a step names a path in the job's area (a
// relative one).
func inArea(op mountOp) bool {
	rel := func(p string) bool { return p != "" && !strings.HasPrefix(p, "/") }
	switch op.kind {
	case "bind":
		return rel(op.a) || rel(op.b)
	case "mkdir", "file", "chown":
		return rel(op.b)
	}
	return false
}

func dumpOps(ops []mountOp) string {
	var b strings.Builder
	for i, op := range ops {
		b.WriteString(strconv.Itoa(i) + ": " + strings.TrimRight(strings.Join([]string{op.kind, op.a, op.b, op.c, op.d, strconv.Quote(op.e)}, " "), " ") + "\n")
	}
	return b.String()
}

var (
	roAttr   = strconv.Itoa(attrRO)
	rwAttr   = strconv.Itoa(attrRW)
	maskAttr = strconv.Itoa(attrMask)
)

func TestPlan_Binds(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	for _, tc := range []struct {
		name  string
		view  View
		check func(t *testing.T, ops []mountOp)
	}{
		{"RO directory", View{RO: []string{at("ro")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("ro"))
			if op.a != oldRoot+at("ro") || op.c != roAttr {
				t.Errorf("bind step %+v, want from %s with attrs %s", op, oldRoot+at("ro"), roAttr)
			}
			// Its mount point is made before it, parents first.
			mk, parent, bind := indexOf(ops, "mkdir", newRoot+at("ro")), indexOf(ops, "mkdir", newRoot+dir), indexOf(ops, "bind", newRoot+at("ro"))
			if mk < 0 || parent < 0 || !(parent < mk && mk < bind) {
				t.Errorf("mkdir %s at %d, of its parent at %d, bind at %d: want parent, dir, bind", at("ro"), mk, parent, bind)
			}
			// What is below the bind comes with it.
			noOpAt(t, ops, newRoot+at("ro/sub"))
			noOpAt(t, ops, newRoot+at("ro/link-in"))
		}},
		{"RW directory", View{RW: []string{at("rw")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("rw"))
			if op.a != oldRoot+at("rw") || op.c != rwAttr {
				t.Errorf("bind step %+v, want from %s with attrs %s", op, oldRoot+at("rw"), rwAttr)
			}
		}},
		{"RO file", View{RO: []string{at("file.txt")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("file.txt"))
			if op.a != oldRoot+at("file.txt") || op.c != roAttr {
				t.Errorf("bind step %+v", op)
			}
			// A file to bind onto, made before the bind; no directory.
			if f, b := indexOf(ops, "file", newRoot+at("file.txt")), indexOf(ops, "bind", newRoot+at("file.txt")); f < 0 || f > b {
				t.Errorf("file step at %d, bind at %d: want the file first", f, b)
			}
			if len(opsAt(ops, "mkdir", newRoot+at("file.txt"))) != 0 {
				t.Errorf("a directory made where a file is bound")
			}
		}},
		{"RO inside RO adds nothing", View{RO: []string{at("ro"), at("ro/sub")}}, func(t *testing.T, ops []mountOp) {
			oneOp(t, ops, "bind", newRoot+at("ro"))
			noOpAt(t, ops, newRoot+at("ro/sub"))
		}},
		{"RW inside RO", View{RO: []string{at("ro")}, RW: []string{at("ro/sub")}}, func(t *testing.T, ops []mountOp) {
			if op := oneOp(t, ops, "bind", newRoot+at("ro/sub")); op.c != rwAttr {
				t.Errorf("RW bind inside RO: %+v, want attrs %s", op, rwAttr)
			}
			if indexOf(ops, "bind", newRoot+at("ro")) > indexOf(ops, "bind", newRoot+at("ro/sub")) {
				t.Error("the child is bound before its parent")
			}
		}},
		{"RO inside RW", View{RW: []string{at("rw")}, RO: []string{at("rw/sub")}}, func(t *testing.T, ops []mountOp) {
			if op := oneOp(t, ops, "bind", newRoot+at("rw/sub")); op.c != roAttr {
				t.Errorf("RO bind inside RW: %+v, want attrs %s", op, roAttr)
			}
			if indexOf(ops, "bind", newRoot+at("rw")) > indexOf(ops, "bind", newRoot+at("rw/sub")) {
				t.Error("the child is bound before its parent")
			}
		}},
		{"symlink into the view", View{RO: []string{at("ro"), at("in-link")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "symlink", newRoot+at("in-link"))
			if op.a != "ro/sub" {
				t.Errorf("symlink step %+v, want the host's target ro/sub", op)
			}
			if len(opsAt(ops, "bind", newRoot+at("in-link"))) != 0 {
				t.Error("a symlink into the view is also bound")
			}
		}},
		{"symlink to a file out of the view", View{RO: []string{at("ro"), at("out-link")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("out-link"))
			if op.a != oldRoot+at("outside/data.txt") || op.c != roAttr {
				t.Errorf("bind step %+v, want the target %s bound read-only", op, oldRoot+at("outside/data.txt"))
			}
			oneOp(t, ops, "file", newRoot+at("out-link"))
			if len(opsAt(ops, "symlink", newRoot+at("out-link"))) != 0 {
				t.Error("a symlink out of the view is kept as a symlink")
			}
			noOpAt(t, ops, newRoot+at("outside/data.txt"))
		}},
		{"symlink to a directory out of the view", View{RW: []string{at("out-dir-link")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("out-dir-link"))
			if op.a != oldRoot+at("outside") || op.c != rwAttr {
				t.Errorf("bind step %+v, want the target %s bound read-write", op, oldRoot+at("outside"))
			}
			oneOp(t, ops, "mkdir", newRoot+at("out-dir-link"))
		}},
		{"symlink inside a RO bind is the bind's", View{RO: []string{at("ro"), at("ro/link-in")}}, func(t *testing.T, ops []mountOp) {
			noOpAt(t, ops, newRoot+at("ro/link-in"))
		}},
		{"symlink inside a bind, listed RW", View{RO: []string{at("ro")}, RW: []string{at("ro/link-in")}}, func(t *testing.T, ops []mountOp) {
			noOpAt(t, ops, newRoot+at("ro/link-in"))
		}},
		{"Hide a directory inside a bind", View{RO: []string{at("ro")}, Hide: []string{at("ro/secretdir")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("ro/secretdir"))
			if op.a != emptyDir || op.c != maskAttr {
				t.Errorf("mask step %+v, want a read-only bind of %s", op, emptyDir)
			}
			mk := indexOf(ops, "mkdir", emptyDir)
			if mk < 0 || mk > indexOf(ops, "bind", newRoot+at("ro/secretdir")) {
				t.Errorf("%s made at step %d, after the mask or not at all", emptyDir, mk)
			}
			if bind := indexOf(ops, "bind", newRoot+at("ro")); bind > indexOf(ops, "bind", newRoot+at("ro/secretdir")) {
				t.Error("the mask comes before the bind it covers")
			}
		}},
		{"Hide a file inside a bind", View{RW: []string{at("ro")}, Hide: []string{at("ro/secret.txt")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("ro/secret.txt"))
			if op.a != oldRoot+"/dev/null" || op.c != maskAttr {
				t.Errorf("mask step %+v, want a read-only bind of %s/dev/null", op, oldRoot)
			}
		}},
		{"Hide two paths share one empty dir", View{RO: []string{at("ro"), at("rw")}, Hide: []string{at("ro/secretdir"), at("rw/sub")}}, func(t *testing.T, ops []mountOp) {
			oneOp(t, ops, "bind", newRoot+at("ro/secretdir"))
			oneOp(t, ops, "bind", newRoot+at("rw/sub"))
			oneOp(t, ops, "mkdir", emptyDir)
		}},
		{"Hide outside every bind", View{RO: []string{at("ro")}, Hide: []string{at("outside/secret"), at("outside/data.txt")}}, func(t *testing.T, ops []mountOp) {
			noOpAt(t, ops, newRoot+at("outside/secret"))
			noOpAt(t, ops, newRoot+at("outside/data.txt"))
			for _, op := range ops {
				if op.kind == "bind" && (op.a == emptyDir || op.a == oldRoot+"/dev/null") && strings.HasPrefix(op.b, newRoot+dir) {
					t.Errorf("a mask %+v with nothing in the view to mask", op)
				}
			}
		}},
		{"Hide a missing path", View{RO: []string{at("ro")}, Hide: []string{at("ro/missing")}}, func(t *testing.T, ops []mountOp) {
			noOpAt(t, ops, newRoot+at("ro/missing"))
		}},
		{"Tmpfs", View{RO: []string{at("ro")}, Tmpfs: []string{at("ro/sub")}}, func(t *testing.T, ops []mountOp) {
			op := oneOp(t, ops, "bind", newRoot+at("ro/sub"))
			if op.a != "tmpfs0" || op.c != rwAttr {
				t.Errorf("tmpfs step %+v, want the area's tmpfs0 bound read-write", op)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, mustPlan(t, &Isolation{View: tc.view}).full.ops)
		})
	}
}

// TestPlan_HideThroughOutLink: a directory bound through a symlink that
// points out of the view shows the target's content at the link's path,
// and a Hide path inside it must still be masked there.
func TestPlan_HideThroughOutLink(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	for _, hide := range []string{at("out-dir-link/secret"), at("outside/secret")} {
		t.Run(filepath.Base(filepath.Dir(hide)), func(t *testing.T) {
			ops := mustPlan(t, &Isolation{View: View{RO: []string{at("out-dir-link")}, Hide: []string{hide}}}).full.ops
			// The secret is in the view at out-dir-link/secret.
			if op := oneOp(t, ops, "bind", newRoot+at("out-dir-link")); op.a != oldRoot+at("outside") {
				t.Fatalf("bind step %+v", op)
			}
			if len(opsAt(ops, "bind", newRoot+at("out-dir-link/secret"))) != 1 {
				t.Errorf("Hide %s: no mask at %s, where the view shows it; plan:\n%s", hide, at("out-dir-link/secret"), dumpOps(ops))
			}
		})
	}
}

// TestPlan_HiddenTargetOfLink: a symlink in the view whose target is a
// Hide path must not show the hidden content.
func TestPlan_HiddenTargetOfLink(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	link := at("to-secret")
	if err := os.Symlink("ro/secret.txt", link); err != nil {
		t.Fatal(err)
	}
	ops := mustPlan(t, &Isolation{View: View{RO: []string{at("ro"), link}, Hide: []string{at("ro/secret.txt")}}}).full.ops
	oneOp(t, ops, "bind", newRoot+at("ro/secret.txt")) // the Hide path itself is masked
	for _, op := range ops {
		if op.a == oldRoot+at("ro/secret.txt") {
			t.Errorf("hidden %s bound into the view: %+v; plan:\n%s", at("ro/secret.txt"), op, dumpOps(ops))
		}
	}
}

func TestPlan_Refused(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	for _, tc := range []struct {
		name string
		view View
		want string // in the error
	}{
		{"missing RO", View{RO: []string{at("missing")}}, "missing"},
		{"missing RW", View{RW: []string{at("rw/missing")}}, "missing"},
		{"missing parent", View{RO: []string{at("nodir/sub")}}, "nodir"},
		{"dangling symlink", View{RO: []string{at("dangling")}}, "dangling"},
		{"relative", View{RO: []string{"usr"}}, "not an absolute, clean path"},
		{"relative dot", View{RW: []string{"./etc"}}, "not an absolute, clean path"},
		{"unclean", View{RO: []string{at("ro") + "/../rw"}}, "not an absolute, clean path"},
		{"trailing slash", View{RO: []string{at("ro") + "/"}}, "not an absolute, clean path"},
		{"empty", View{RO: []string{""}}, "not an absolute, clean path"},
		{"root", View{RO: []string{"/"}}, "whole filesystem"},
		{"root RW", View{RW: []string{"/"}}, "whole filesystem"},
		{"proc", View{RO: []string{"/proc"}}, "sandbox makes /proc"},
		{"under proc", View{RO: []string{"/proc/self"}}, "sandbox makes /proc"},
		{"dev", View{RW: []string{"/dev"}}, "sandbox makes /dev"},
		{"under dev", View{RO: []string{"/dev/null"}}, "sandbox makes /dev"},
		{"sys", View{RO: []string{"/sys"}}, "sandbox makes /sys"},
		{"under sys", View{RW: []string{"/sys/kernel"}}, "sandbox makes /sys"},
		{"tmpfs relative", View{Tmpfs: []string{"scratch"}}, "tmpfs"},
		{"tmpfs under dev", View{Tmpfs: []string{"/dev/shm"}}, "sandbox makes /dev"},
		{"tmpfs root", View{Tmpfs: []string{"/"}}, "whole filesystem"},
		{"hide relative", View{RO: []string{at("ro")}, Hide: []string{"ro/secret.txt"}}, "not an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := planView(&Isolation{View: tc.view})
			if err == nil {
				t.Fatalf("planView(%+v) succeeded, want an error; plan:\n%s", tc.view, dumpOps(tpl.full.ops))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("planView(%+v): %v, want an error mentioning %q", tc.view, err, tc.want)
			}
			if _, err := viewPlan(&Isolation{View: tc.view}, 1000, 1000); err == nil {
				t.Errorf("viewPlan(%+v) succeeded where planView fails", tc.view)
			}
		})
	}
}

func TestView_CheckViewPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/usr", true},
		{"/usr/lib", true},
		{"/procfs", true}, // a common prefix is not /proc
		{"/device", true},
		{"/system", true},
		{"/var/proc", true},
		{"/", false},
		{"", false},
		{"usr", false},
		{"/usr/", false},
		{"/usr//lib", false},
		{"/usr/./lib", false},
		{"/proc", false},
		{"/proc/1/root", false},
		{"/dev", false},
		{"/dev/shm", false},
		{"/sys", false},
		{"/sys/fs/cgroup", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			if err := checkViewPath(tc.path); (err == nil) != tc.ok {
				t.Errorf("checkViewPath(%q) = %v, want ok %v", tc.path, err, tc.ok)
			}
		})
	}
}

func TestPlan_ForJob(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	for _, tc := range []struct {
		name                  string
		uid, gid              uint32
		userName, groupName   string
		wantPasswd, wantGroup string // a line of the file; "" for none but root's and nobody's
	}{
		{"default names", 1234, 2345, "", "", "job:x:1234:2345:", "job:x:2345:"},
		{"given names", 61200, 61201, "alice", "staff", "alice:x:61200:61201:", "staff:x:61201:"},
		{"namespace id", DynamicNamespaceID, DynamicNamespaceID, "", "", "job:x:1000:1000:", "job:x:1000:"},
		{"root", 0, 0, "", "", "", ""},
		{"nobody", 65534, 65534, "", "", "", ""},
		{"user, root group", 1234, 0, "", "", "job:x:1234:0:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			iso := &Isolation{UserName: tc.userName, GroupName: tc.groupName, View: View{RO: []string{filepath.Join(dir, "ro")}}}
			tpl := mustPlan(t, iso)
			for _, templated := range []bool{false, true} {
				l, prefix := tpl.full, newRoot
				if templated {
					l, prefix = tpl.job, ""
				}
				before := slices.Clone(l.ops)
				ops := tpl.forJob(iso, tc.uid, tc.gid, templated)
				if !slices.Equal(l.ops, before) {
					t.Error("forJob changed the shared template")
				}
				if len(ops) != len(l.ops) {
					t.Fatalf("forJob: %d steps, template has %d", len(ops), len(l.ops))
				}

				// The job's files are made in its area and bound read-only
				// on empty files of the root.
				lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
				passwd := lines(oneOp(t, ops, "file", "passwd").e)
				group := lines(oneOp(t, ops, "file", "group").e)
				for _, f := range []string{"passwd", "group"} {
					if op := oneOp(t, ops, "bind", prefix+"/etc/"+f); op.a != f || op.c != roAttr {
						t.Errorf("bind step %+v, want the area's %s read-only", op, f)
					}
					if indexOf(ops, "file", f) > indexOf(ops, "bind", prefix+"/etc/"+f) {
						t.Errorf("%s bound before it is written", f)
					}
				}
				if !slices.Contains(passwd, "root:x:0:0:root:/root:/usr/sbin/nologin") || !slices.ContainsFunc(passwd, func(l string) bool { return strings.HasPrefix(l, "nobody:x:65534:65534:") }) {
					t.Errorf("passwd lacks root or nobody: %q", passwd)
				}
				if !slices.Contains(group, "root:x:0:") || !slices.Contains(group, "nogroup:x:65534:") {
					t.Errorf("group lacks root or nogroup: %q", group)
				}
				if tc.wantPasswd == "" {
					if len(passwd) != 2 {
						t.Errorf("passwd for uid %d: %q, want root and nobody only", tc.uid, passwd)
					}
				} else if !slices.ContainsFunc(passwd, func(l string) bool { return strings.HasPrefix(l, tc.wantPasswd) }) || len(passwd) != 3 {
					t.Errorf("passwd: %q, want a line %q…", passwd, tc.wantPasswd)
				}
				if tc.wantGroup == "" {
					if len(group) != 2 {
						t.Errorf("group for gid %d: %q, want root and nogroup only", tc.gid, group)
					}
				} else if !slices.Contains(group, tc.wantGroup) || len(group) != 3 {
					t.Errorf("group: %q, want a line %q", group, tc.wantGroup)
				}

				chown := oneOp(t, ops, "chown", "run")
				if chown.c != strconv.Itoa(int(tc.uid)) || chown.d != strconv.Itoa(int(tc.gid)) {
					t.Errorf("chown step %+v, want %d:%d", chown, tc.uid, tc.gid)
				}
				// The job's /run is chowned before it is bound in its place.
				if c, b := indexOf(ops, "chown", "run"), indexOf(ops, "bind", prefix+"/run"); c < 0 || b < 0 || c > b || ops[b].a != "run" {
					t.Errorf("chown at %d, bind of /run at %d (%+v)", c, b, ops[max(b, 0)])
				}
				if templated {
					continue
				}
				// viewPlan is planView and forJob in one.
				direct, err := viewPlan(iso, tc.uid, tc.gid)
				if err != nil {
					t.Fatal(err)
				}
				if !sameSteps(direct, ops) {
					t.Errorf("viewPlan differs from planView+forJob:\n%s\nvs\n%s", dumpOps(direct), dumpOps(ops))
				}
			}
		})
	}
}

// TestPlan_HostAccountFiles: a view that binds the host's /etc/passwd gets
// no passwd made for the job, and forJob leaves it alone.
func TestPlan_HostAccountFiles(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no %s: %v", f, err)
		}
	}
	iso := &Isolation{View: View{RO: []string{"/etc/passwd"}, RW: []string{"/etc/group"}}}
	tpl := mustPlan(t, iso)
	if tpl.full.passwd != -1 || tpl.full.group != -1 {
		t.Errorf("template indexes passwd %d, group %d; want -1", tpl.full.passwd, tpl.full.group)
	}
	ops := tpl.forJob(iso, 1234, 1234, false)
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		if n := len(opsAt(ops, "file", newRoot+f)); n != 1 { // the bind's mount point, empty
			t.Errorf("%d file steps at %s, want 1", n, f)
		}
		for _, op := range opsAt(ops, "file", newRoot+f) {
			if op.e != "" {
				t.Errorf("%s made with content %q where the host's is bound", f, op.e)
			}
		}
		if op := oneOp(t, ops, "bind", newRoot+f); op.a != oldRoot+f {
			t.Errorf("bind step %+v", op)
		}
	}
	// The job's own hosts and nsswitch.conf are still made.
	for _, f := range []string{"/etc/hosts", "/etc/nsswitch.conf"} {
		if op := oneOp(t, ops, "file", newRoot+f); op.e == "" {
			t.Errorf("%s made empty", f)
		}
	}
}

func TestPlan_DeviceNodes(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	for _, userns := range []bool{false, true} {
		t.Run("userns="+strconv.FormatBool(userns), func(t *testing.T) {
			t.Parallel()
			ops := mustPlan(t, &Isolation{UserNamespace: userns}).full.ops
			for _, n := range devNodes {
				dst := newRoot + "/dev/" + n
				var st unix.Stat_t
				if err := unix.Stat("/dev/"+n, &st); err != nil {
					t.Fatal(err)
				}
				mknod, file, bind := opsAt(ops, "mknod", dst), opsAt(ops, "file", dst), opsAt(ops, "bind", dst)
				if !userns {
					if len(mknod) != 1 || len(file)+len(bind) != 0 {
						t.Fatalf("%s: %d mknod, %d file, %d bind steps; want one mknod", dst, len(mknod), len(file), len(bind))
					}
					if mknod[0].c != strconv.FormatUint(uint64(st.Mode), 10) || mknod[0].d != strconv.FormatUint(st.Rdev, 10) {
						t.Errorf("mknod step %+v, want mode %d dev %d (the host's)", mknod[0], st.Mode, st.Rdev)
					}
					if st.Mode&unix.S_IFMT != unix.S_IFCHR {
						t.Errorf("/dev/%s is not a character device", n)
					}
					continue
				}
				if len(mknod) != 0 || len(file) != 1 || len(bind) != 1 {
					t.Fatalf("%s: %d mknod, %d file, %d bind steps; want a file and a bind", dst, len(mknod), len(file), len(bind))
				}
				if bind[0].a != oldRoot+"/dev/"+n || bind[0].c != strconv.Itoa(attrDevNode) {
					t.Errorf("bind step %+v, want from %s/dev/%s with attrs %d", bind[0], oldRoot, n, attrDevNode)
				}
				if indexOf(ops, "file", dst) > indexOf(ops, "bind", dst) {
					t.Errorf("%s bound before its file is made", dst)
				}
			}
			// Nothing else of the host's /dev.
			for _, op := range ops {
				if op.kind == "mknod" && !slices.Contains(devNodes, strings.TrimPrefix(op.b, newRoot+"/dev/")) {
					t.Errorf("unexpected device %+v", op)
				}
				if op.kind == "bind" && strings.HasPrefix(op.a, oldRoot+"/dev/") && !slices.Contains(devNodes, strings.TrimPrefix(op.a, oldRoot+"/dev/")) {
					t.Errorf("unexpected device bind %+v", op)
				}
			}
			if op := oneOp(t, ops, "mount", newRoot+"/dev/pts"); op.c != "devpts" || !strings.Contains(op.e, "newinstance") {
				t.Errorf("devpts step %+v, want a new instance", op)
			}
		})
	}
}

func TestPlan_Frame(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	for _, tc := range []struct {
		name     string
		iso      *Isolation
		wantSize string
	}{
		{"default size", &Isolation{View: View{RO: []string{filepath.Join(dir, "ro")}}}, ""},
		{"sized, with sys", &Isolation{TmpSizeBytes: 8 << 20, View: View{RW: []string{filepath.Join(dir, "rw")}, Sys: true}}, ",size=8388608"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ops, err := viewPlan(tc.iso, 1234, 1234)
			if err != nil {
				t.Fatal(err)
			}
			// The scratch, small: it holds only what the root is built from.
			want0 := mountOp{"mount", "tmpfs", "/tmp", "tmpfs", strconv.Itoa(unix.MS_NOSUID | unix.MS_NODEV), "mode=0700,size=1m"}
			if ops[0] != want0 {
				t.Errorf("first step %+v, want %+v", ops[0], want0)
			}
			pivot := slices.Index(ops, mountOp{kind: "pivot", a: "/tmp", b: "/tmp" + oldRoot})
			if pivot < 0 {
				t.Fatalf("no pivot into /tmp; plan:\n%s", dumpOps(ops))
			}
			for _, d := range []string{"/tmp" + oldRoot, "/tmp" + newRoot} {
				if i := indexOf(ops, "mkdir", d); i < 0 || i > pivot {
					t.Errorf("mkdir %s at step %d, want before the pivot at %d", d, i, pivot)
				}
			}
			for i, op := range ops[:pivot] {
				if strings.HasPrefix(op.a, newRoot) || strings.HasPrefix(op.b, newRoot) || strings.HasPrefix(op.a, oldRoot) || strings.HasPrefix(op.b, oldRoot) {
					t.Errorf("step %d %+v uses the pivoted tree before the pivot at %d", i, op, pivot)
				}
			}
			// The root is a fresh tmpfs, mounted before anything in it.
			if i := indexOf(ops, "mount", newRoot); i != pivot+1 || ops[i].c != "tmpfs" {
				t.Errorf("tmpfs on %s at step %d, want right after the pivot at %d", newRoot, i, pivot)
			}
			// One area, with the size, made before anything in it; no other
			// tmpfs but the scratch and the root.
			area := oneOp(t, ops, "area", "")
			if want := (mountOp{"area", "tmpfs", "", "tmpfs", rwAttr, "mode=0700" + tc.wantSize}); area != want {
				t.Errorf("area step %+v, want %+v", area, want)
			}
			for i, op := range ops {
				if op.kind == "mount" && op.c == "tmpfs" && op.b != newRoot && i != 0 {
					t.Errorf("tmpfs step %+v besides the area", op)
				}
				if inArea(op) && i < indexOf(ops, "area", "") {
					t.Errorf("step %d %+v uses the area before it is made", i, op)
				}
			}
			// Ends: the root made read-only, then entered.
			n := len(ops)
			if want := (mountOp{kind: "enter", b: newRoot}); ops[n-1] != want {
				t.Errorf("last step %+v, want %+v", ops[n-1], want)
			}
			if want := (mountOp{kind: "setattr", b: newRoot, c: strconv.Itoa(unix.MOUNT_ATTR_RDONLY)}); ops[n-2] != want {
				t.Errorf("next to last step %+v, want %+v", ops[n-2], want)
			}
			if slices.IndexFunc(ops, func(op mountOp) bool { return op.kind == "enter" || op.kind == "pivot" && op != ops[pivot] }) != n-1 {
				t.Errorf("more than one enter or pivot; plan:\n%s", dumpOps(ops))
			}
			// The job's own scratch, bound in its place.
			for dst, src := range map[string]string{"/tmp": "tmp", "/var/tmp": "var-tmp", "/run": "run", "/dev/shm": "shm"} {
				if op := oneOp(t, ops, "bind", newRoot+dst); op.a != src || op.c != rwAttr {
					t.Errorf("bind step %+v, want the area's %s read-write", op, src)
				}
			}
			// proc, and sys only when asked.
			if op := oneOp(t, ops, "mount", newRoot+"/proc"); op.c != "proc" {
				t.Errorf("proc step %+v", op)
			}
			if got, want := len(opsAt(ops, "mount", newRoot+"/sys")), map[bool]int{false: 0, true: 1}[tc.iso.View.Sys]; got != want {
				t.Errorf("%d sysfs steps, want %d", got, want)
			}
			if _, err := os.Stat("/proc/kcore"); err == nil {
				if op := oneOp(t, ops, "bind", newRoot+"/proc/kcore"); op.a != newRoot+"/dev/null" {
					t.Errorf("/proc/kcore mask %+v, want the root's /dev/null", op)
				}
			}
		})
	}
}

func TestPlan_Cache(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	ro := filepath.Join(dir, "ro")
	var c planCache
	get := func(iso *Isolation) *viewTemplate {
		t.Helper()
		tpl, err := c.get(iso)
		if err != nil {
			t.Fatalf("get(%+v): %v", iso.View, err)
		}
		return tpl
	}
	base := get(&Isolation{View: View{RO: []string{ro}}})
	for _, tc := range []struct {
		name string
		iso  *Isolation
		same bool
	}{
		{"equal isolation", &Isolation{View: View{RO: []string{ro}}}, true},
		{"other ids and names", &Isolation{ID: "other", UID: 5, GID: 6, UserName: "u", GroupName: "g", View: View{RO: []string{ro}}}, true},
		{"other RO", &Isolation{View: View{RO: []string{filepath.Join(dir, "rw")}}}, false},
		{"RO as RW", &Isolation{View: View{RW: []string{ro}}}, false},
		{"with Hide", &Isolation{View: View{RO: []string{ro}, Hide: []string{filepath.Join(ro, "secret.txt")}}}, false},
		{"with Tmpfs", &Isolation{View: View{RO: []string{ro}, Tmpfs: []string{filepath.Join(ro, "sub")}}}, false},
		{"with Sys", &Isolation{View: View{RO: []string{ro}, Sys: true}}, false},
		{"sized", &Isolation{TmpSizeBytes: 1 << 20, View: View{RO: []string{ro}}}, false},
		{"user namespace", &Isolation{UserNamespace: true, View: View{RO: []string{ro}}}, false},
	} {
		// Sequential: the rows share the cache.
		t.Run(tc.name, func(t *testing.T) {
			got := get(tc.iso)
			if (got == base) != tc.same {
				t.Errorf("same template as the first view: %v, want %v", got == base, tc.same)
			}
			if !tc.same && sameSteps(got.full.ops, base.full.ops) {
				t.Error("a different view got the same steps")
			}
			if again := get(tc.iso); again != got {
				t.Error("a second get of the same isolation planned again")
			}
		})
	}

	// Once planTTL old, the plan is made again.
	iso := &Isolation{View: View{RO: []string{ro}}}
	key := viewKey(iso)
	c.mu.Lock()
	e := c.m[key]
	e.at = time.Now().Add(-planTTL - time.Second)
	c.m[key] = e
	c.mu.Unlock()
	fresh := get(iso)
	if fresh == base {
		t.Error("a plan older than planTTL was reused")
	}
	if !sameSteps(fresh.full.ops, base.full.ops) {
		t.Error("planning the same view again gave other steps")
	}
	if get(iso) != fresh {
		t.Error("the new plan was not cached")
	}

	// A view that cannot be planned is an error, and is not cached.
	bad := &Isolation{View: View{RO: []string{filepath.Join(dir, "missing")}}}
	if _, err := c.get(bad); err == nil {
		t.Error("get of a view with a missing path succeeded")
	}
	c.mu.Lock()
	_, cached := c.m[viewKey(bad)]
	c.mu.Unlock()
	if cached {
		t.Error("a failed plan was cached")
	}
}

// TestPlan_CacheBounded: the cache holds at most maxPlans views.
func TestPlan_CacheBounded(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	var c planCache
	for i := range maxPlans + 10 {
		if _, err := c.get(&Isolation{TmpSizeBytes: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		n := len(c.m)
		c.mu.Unlock()
		if n > maxPlans {
			t.Fatalf("after %d views the cache holds %d, more than %d", i+1, n, maxPlans)
		}
	}
}

// TestResolveTrusted: a view's path follows only symlinks that root alone
// could have aimed; one in a directory a job or a user may write refuses
// the path, whatever it points at.
func TestResolveTrusted(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the directories are made for other owners")
	}
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	mk := func(d string, mode os.FileMode, uid int) {
		t.Helper()
		if err := os.Mkdir(at(d), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(at(d), mode); err != nil { // past the umask
			t.Fatal(err)
		}
		if err := os.Chown(at(d), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, l string, uid int) {
		t.Helper()
		if err := os.Symlink(target, at(l)); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(at(l), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	mk("users", 0o755, 65534)
	link(at("outside"), "users/out", 65534)
	mk("open", 0o777, 0)
	link(at("outside"), "open/out", 0)
	mk("sticky", os.ModeSticky|0o777, 0)
	link(at("outside"), "sticky/roots", 0)
	link(at("outside"), "sticky/theirs", 65534)
	link("loop-b", "loop-a", 0)
	link("loop-a", "loop-b", 0)
	for _, tc := range []struct {
		name, path, want, err string
	}{
		{"no symlinks", at("ro/sub"), at("ro/sub"), ""},
		{"root's link in root's directory", at("out-dir-link/secret"), at("outside/secret"), ""},
		{"a relative link with ..", at("ro/link-in/../file.txt"), at("ro/file.txt"), ""},
		{"a link in a user's directory", at("users/out/secret"), "", "which uid 65534 owns"},
		{"a link in a directory all may write", at("open/out"), "", "which others may write"},
		{"root's link in a sticky directory", at("sticky/roots"), at("outside"), ""},
		{"another's link in a sticky directory", at("sticky/theirs"), "", "which others may write"},
		{"a loop", at("loop-a"), "", "too many levels of symbolic links"},
		{"missing", at("nowhere/x"), "", "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveTrusted(tc.path)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("resolveTrusted(%s): %v", tc.path, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("resolveTrusted(%s) = %q, %v; want an error saying %q", tc.path, got, err, tc.err)
			case got != tc.want:
				t.Fatalf("resolveTrusted(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
	// A view: a path that follows a link a user aims is refused; a link a
	// user aims at the view, or at what the sandbox makes, stays a link.
	link(at("ro"), "users/in", 65534)
	link("/proc/self/mounts", "users/mounts", 65534)
	if _, err := planView(&Isolation{View: View{RO: []string{at("users/out")}}}); err == nil || !strings.Contains(err.Error(), "which uid 65534 owns") {
		t.Errorf("a user's link out of the view: %v, want it refused", err)
	}
	ops := mustPlan(t, &Isolation{View: View{RO: []string{at("ro"), at("users/in"), at("users/mounts")}}}).full.ops
	if op := oneOp(t, ops, "symlink", newRoot+at("users/in")); op.a != at("ro") {
		t.Errorf("a user's link into the view: %+v", op)
	}
	if op := oneOp(t, ops, "symlink", newRoot+at("users/mounts")); op.a != "/proc/self/mounts" {
		t.Errorf("a user's link into /proc: %+v, want the same link (the job's own /proc answers it)", op)
	}
}

// TestPlan_TmpfsInsideBind: a tmpfs path inside a bind mounts on the host's
// directory there, so it must be one (not a symlink to one); and a hidden
// path under it is covered by the tmpfs, not masked where nothing is.
func TestPlan_TmpfsInsideBind(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	if err := os.Symlink("sub", at("ro/cache")); err != nil {
		t.Fatal(err)
	}
	if err := CheckView(View{RO: []string{at("ro")}, Tmpfs: []string{at("ro/cache")}}); err == nil || !strings.Contains(err.Error(), "has no directory there") {
		t.Errorf("a tmpfs at a symlink inside a bind: %v, want it refused", err)
	}
	if err := os.MkdirAll(at("ro/var/data"), 0o700); err != nil {
		t.Fatal(err)
	}
	ops := mustPlan(t, &Isolation{View: View{RO: []string{at("ro")}, Tmpfs: []string{at("ro/var")}, Hide: []string{at("ro/var/data")}}}).full.ops
	oneOp(t, ops, "bind", newRoot+at("ro/var")) // the tmpfs
	noOpAt(t, ops, newRoot+at("ro/var/data"))
}

// Ensure a view's plan splits into the steps a template runs once and the
// job's own, such that running the own ones in a copy of the template's
// root is running the whole plan: the own steps, taken back to /newroot,
// interleave with the shared ones to make the whole plan, in its order;
// they write only into the job's area, mount only on the root, and need
// nothing of the host's tree.
func TestPlan_Template(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	for _, p := range []string{"/usr/local", "/usr/share/doc", "/usr/bin/env"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
	}
	view := testView()
	view.Hide = []string{"/usr/share/doc", "/usr/bin/env"}
	view.Tmpfs = []string{"/usr/local"}
	view.Sys = true
	iso := &Isolation{TmpSizeBytes: 8 << 20, View: view}
	tpl := mustPlan(t, iso)
	if tpl.root == nil {
		t.Fatalf("a view of host paths outside the job's own dirs is not templated; plan:\n%s", dumpOps(tpl.full.ops))
	}
	toRoot := func(p string) string {
		if p == "/" {
			return newRoot
		}
		if strings.HasPrefix(p, "/") {
			return newRoot + p
		}
		return p
	}
	i, j := 0, 0
	for k, op := range tpl.full.ops {
		switch {
		case i < len(tpl.root) && op == tpl.root[i]:
			i++
		case j < len(tpl.job.ops) && op == (mountOp{tpl.job.ops[j].kind, toRoot(tpl.job.ops[j].a), toRoot(tpl.job.ops[j].b), tpl.job.ops[j].c, tpl.job.ops[j].d, tpl.job.ops[j].e}):
			j++
		default:
			t.Fatalf("step %d %+v is neither the next shared nor the next own step; plan:\n%s\nroot:\n%s\njob:\n%s", k, op, dumpOps(tpl.full.ops), dumpOps(tpl.root), dumpOps(tpl.job.ops))
		}
	}
	if i != len(tpl.root) || j != len(tpl.job.ops) {
		t.Fatalf("%d of %d shared and %d of %d own steps make the plan", i, len(tpl.root), j, len(tpl.job.ops))
	}
	if tpl.full.ops[tpl.full.run].kind != "chown" || tpl.job.ops[tpl.job.run].kind != "chown" {
		t.Errorf("run indexes %d, %d", tpl.full.run, tpl.job.run)
	}

	// The template's part: it enters the root, read-only, and never
	// touches the area.
	n := len(tpl.root)
	if tpl.root[n-1].kind != "enter" || tpl.root[n-2].kind != "setattr" {
		t.Errorf("shared steps end with %+v, %+v; want setattr, enter", tpl.root[n-2], tpl.root[n-1])
	}
	for _, op := range tpl.root {
		if op.kind == "area" || inArea(op) {
			t.Errorf("shared step %+v uses the job's area", op)
		}
	}
	// The job's part: its area first; then only mounts on the root and
	// writes into the area.
	if tpl.job.ops[0].kind != "area" {
		t.Errorf("first own step %+v, want the area", tpl.job.ops[0])
	}
	for _, op := range tpl.job.ops {
		for _, p := range []string{op.a, op.b} {
			if strings.HasPrefix(p, oldRoot) || strings.HasPrefix(p, newRoot) {
				t.Errorf("own step %+v names the build's paths", op)
			}
		}
		switch op.kind {
		case "area", "attach", "mount", "ro":
		case "bind":
			if !strings.HasPrefix(op.b, "/") || strings.HasPrefix(op.a, "/") && op.a != "/dev/null" {
				t.Errorf("own bind %+v: want from the area or /dev/null onto the root", op)
			}
		case "mkdir", "file", "chown":
			if strings.HasPrefix(op.b, "/") {
				t.Errorf("own step %+v writes into the root", op)
			}
		default:
			t.Errorf("own step %+v: not one a job's init runs in a template's root", op)
		}
	}
	// Each job mounts its own /proc, devpts, sysfs and area dirs.
	for _, dst := range []string{"/proc", "/dev/pts", "/sys"} {
		oneOp(t, tpl.job.ops, "mount", dst)
	}
	for _, dst := range []string{"/tmp", "/var/tmp", "/run", "/dev/shm", "/usr/local", "/etc/passwd", "/etc/group"} {
		oneOp(t, tpl.job.ops, "bind", dst)
	}
	// The host's paths and their masks are the template's.
	for _, dst := range []string{"/usr", "/usr/share/doc", "/usr/bin/env"} {
		noOpAt(t, tpl.job.ops, dst)
		oneOp(t, tpl.root, "bind", newRoot+dst)
	}
	if !slices.Contains(tpl.sources, "/usr") {
		t.Errorf("sources %q lack /usr", tpl.sources)
	}
}

// Ensure a view whose shared steps would land inside the job's own mounts
// is not templated, and that a tmpfs path under a masked one, out of sight
// either way, is left out.
func TestPlan_NotTemplated(t *testing.T) {
	t.Parallel()
	requireDevNodes(t)
	dir := viewDir(t)
	if Within(dir, "/tmp") {
		if tpl := mustPlan(t, &Isolation{View: View{RO: []string{filepath.Join(dir, "ro")}}}); tpl.root != nil {
			t.Errorf("a host path bound below /tmp is templated; root:\n%s", dumpOps(tpl.root))
		}
	}
	if _, err := os.Stat("/usr/share/doc"); err != nil {
		t.Skipf("needs /usr/share/doc: %v", err)
	}
	tpl := mustPlan(t, &Isolation{View: View{RO: []string{"/usr"}, Hide: []string{"/usr/share"}, Tmpfs: []string{"/usr/share/doc"}}})
	noOpAt(t, tpl.full.ops, newRoot+"/usr/share/doc")
	if op := oneOp(t, tpl.full.ops, "bind", newRoot+"/usr/share"); op.a != emptyDir {
		t.Errorf("mask %+v", op)
	}
	// A tmpfs path that is the hidden path itself shows the tmpfs, unmasked.
	tpl = mustPlan(t, &Isolation{View: View{RO: []string{"/usr"}, Hide: []string{"/usr/share"}, Tmpfs: []string{"/usr/share"}}})
	if op := oneOp(t, tpl.full.ops, "bind", newRoot+"/usr/share"); op.a != "tmpfs0" {
		t.Errorf("bind %+v, want the tmpfs", op)
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
)

// jobIdentity is who a sandboxed job is to the host's file permissions:
// a fixed uid and gid, or, for dynamic users and user namespaces, ids
// that own nothing and belong to no group ("others").
type jobIdentity struct {
	others   bool
	uid, gid uint32
}

func identityOf(pol *policies.Policy) jobIdentity {
	if pol.DynamicUser || pol.UserNamespace {
		return jobIdentity{others: true}
	}
	return jobIdentity{uid: pol.UID, gid: pol.GID}
}

func (id jobIdentity) String() string {
	if id.others {
		return "a job's own uid (which owns nothing here)"
	}
	return fmt.Sprintf("uid %d, gid %d", id.uid, id.gid)
}

// may reports whether id has every permission bit of want (r=4, w=2, x=1)
// on st, as the kernel's DAC check would decide it.
func (id jobIdentity) may(st os.FileInfo, want os.FileMode) bool {
	uid, gid, ok := fileIDs(st)
	if !ok {
		return true // not knowable here: let the job find out
	}
	mode := st.Mode().Perm()
	switch {
	case !id.others && id.uid == 0:
		return true
	case !id.others && uid == id.uid:
		return mode>>6&want == want
	case !id.others && gid == id.gid:
		return mode>>3&want == want
	}
	return mode&want == want
}

// unreachable says why id could not reach path, "" when it can: every
// directory from the view's bind that holds path down to it must let id
// in (x), and path itself allow want. Directories above the bind are the
// sandbox's own, made for the job to pass.
func (id jobIdentity) unreachable(view sandbox.View, path string, want os.FileMode, what string) string {
	top := bindOf(view, path)
	for d := filepath.Dir(path); len(d) >= len(top); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Sprintf("%s: %v", d, err)
		}
		if !id.may(st, 1) {
			return fmt.Sprintf("%s %s is under %s (mode %#o, owner %s), which %s may not enter", what, path, d, st.Mode().Perm(), owner(st), id)
		}
		if d == "/" {
			break
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("%s %s: %v", what, path, err)
	}
	if !id.may(st, want) {
		need := map[os.FileMode]string{1: "execute", 5: "read and execute"}[want]
		return fmt.Sprintf("%s %s (mode %#o, owner %s) is not one %s may %s", what, path, st.Mode().Perm(), owner(st), id, need)
	}
	return ""
}

// bindOf is the deepest path of view's binds that holds p ("/" if none).
func bindOf(view sandbox.View, p string) string {
	top := "/"
	for _, b := range append(append([]string(nil), view.RO...), view.RW...) {
		if sandbox.Within(p, b) && len(b) > len(top) {
			top = b
		}
	}
	return top
}

func owner(st os.FileInfo) string {
	if uid, gid, ok := fileIDs(st); ok {
		return fmt.Sprintf("%d:%d", uid, gid)
	}
	return "?"
}

// fileIDs are st's owning uid and gid, where the system says.
func fileIDs(st os.FileInfo) (uid, gid uint32, ok bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid, sys.Gid, true
	}
	return 0, 0, false
}

// reachProblems is what app's jobs under pol would meet at exec: a program
// or dir their user may not reach, and an argument naming a host file
// their view does not show (a job's /tmp is its own). Each is a problem
// at the key it concerns.
func reachProblems(app supervisor.App, pol *policies.Policy, view sandbox.View) []viewProblem {
	var ps []viewProblem
	id := identityOf(pol)
	if app.Path != "" {
		// A script is read by its interpreter as the job's user.
		want := os.FileMode(1)
		if isScript(app.Path) {
			want = 5
		}
		if msg := id.unreachable(view, app.Path, want, "the program"); msg != "" {
			ps = append(ps, viewProblem{"command", fmt.Sprintf("%s under policy %q", msg, pol.Name)})
		}
	}
	if st, err := os.Stat(app.Dir); app.Dir != "" && err == nil && st.IsDir() { // else already a problem
		if msg := id.unreachable(view, app.Dir, 1, "the dir"); msg != "" {
			ps = append(ps, viewProblem{"dir", fmt.Sprintf("%s under policy %q", msg, pol.Name)})
		}
	}
	for _, arg := range app.Args[1:] {
		if !filepath.IsAbs(arg) {
			continue
		}
		p, err := filepath.EvalSymlinks(filepath.Clean(arg))
		if err != nil {
			continue // not a file here: an argument, not a path
		}
		// Files and directories only: the sandbox gives every job a /dev
		// and /proc of its own; and the server's own files are hidden on
		// purpose (jobProblems names them where they matter).
		st, err := os.Stat(p)
		if err != nil || !(st.Mode().IsRegular() || st.IsDir()) || sandbox.Within(p, "/proc") || sandbox.Within(p, "/sys") || slices.ContainsFunc(view.Hide, func(h string) bool { return sandbox.Within(p, h) }) {
			continue
		}
		if !view.Visible(p) {
			ps = append(ps, viewProblem{"command", fmt.Sprintf("argument %s is a file on this host, but jobs under policy %q do not see it "+
				"(their /tmp, /var/tmp and /dev/shm are their own): move it to the app's dir, or add its directory to the policy's ro", arg, pol.Name)})
		}
	}
	return ps
}

// isScript reports whether path starts with "#!".
func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	n, err := f.Read(b[:])
	return err == nil && n == 2 && string(b[:]) == "#!"
}

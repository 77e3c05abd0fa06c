package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// The server's delegated cgroup on a pure v2 host.
//
// cgroup v2's no-internal-process rule: a cgroup other than the root that
// holds a process cannot enable a controller for its children (writing
// cgroup.subtree_control fails with EBUSY), and a cgroup whose
// cgroup.subtree_control enables one cannot take a process. A server that
// ran job cgroups with limits below the cgroup it runs in would hit one or
// the other. systemd's answer for a unit with Delegate=yes, which hands the
// unit its cgroup and the controllers in it, is the one taken here: once,
// before its first job cgroup, the server moves itself into a leaf of its
// own, <own>/supervisor, enables the controllers in <own>'s
// cgroup.subtree_control, and from then on treats <own> as the delegated
// root: job cgroups are <own>/<parent>/<name>. The root is remembered;
// /proc/self/cgroup names the leaf after the move.
//
// A server that starts in <own>/supervisor already (a unit with
// DelegateSubgroup=supervisor, or a restart placed there) stays there and
// enables <own>'s controllers where they are not yet.

// supervisorLeaf is the leaf of the delegated cgroup the server runs in.
const supervisorLeaf = "supervisor"

// cgroup2Needed are the controllers job cgroups must have (a policy's cpu,
// memory and pids limits); cgroup2Optional are enabled where the host has
// them.
var (
	cgroup2Needed   = []string{"cpu", "memory", "pids"}
	cgroup2Optional = []string{"io"}
)

// delegation2 is where job cgroups live on v2.
type delegation2 struct {
	root        string   // the delegated cgroup, relative to the mount
	controllers []string // enabled below root: every needed one, and the optional ones the host has
	swap        bool     // the kernel accounts swap (memory.swap.max exists)
}

// delegated2 is the delegation (see above) for the host's v2 mount, set up
// by the first call that succeeds; a failed one is tried again by the next
// call (another process may have left the cgroup since).
func delegated2() (delegation2, error) {
	if d := delegation.Load(); d != nil {
		return *d, nil
	}
	delegationMu.Lock()
	defer delegationMu.Unlock()
	if d := delegation.Load(); d != nil {
		return *d, nil
	}
	d, err := delegate2(unifiedMount(), os.Getpid())
	if err != nil {
		return delegation2{}, err
	}
	delegation.Store(&d)
	return d, nil
}

var (
	delegationMu sync.Mutex                  // serializes setting the delegation up
	delegation   atomic.Pointer[delegation2] // set once it is
)

// selfCgroup2 is this process's v2 cgroup ("0::/path" in /proc/self/cgroup).
func selfCgroup2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("find own cgroup: no cgroup v2 entry in /proc/self/cgroup")
}

// delegateHint is what an operator adds so that the server gets a cgroup of
// its own with the controllers in it.
const delegateHint = "run chimirror as a systemd service with Delegate=yes in its [Service] section " +
	"(or, by hand, systemd-run -p Delegate=yes chimirror serve ...)"

// planDelegation2 says, changing nothing, which cgroup the process pid in
// cgroup self would delegate job cgroups from, whether it must move itself
// into that cgroup's supervisor leaf first, and what makes either
// impossible.
func planDelegation2(mount, self string, pid int) (root string, move bool, err error) {
	root, move = self, true
	if path.Base(self) == supervisorLeaf && self != "/"+supervisorLeaf {
		parent := path.Dir(self)
		enabled, err := readControllers(filepath.Join(mount, parent, "cgroup.subtree_control"))
		if err != nil {
			return "", false, err
		}
		if len(missing(cgroup2Needed, enabled)) == 0 {
			return parent, false, nil // set up already: a restart placed here
		}
		// In the leaf, its parent not set up yet: a unit with
		// DelegateSubgroup=supervisor, or an earlier try that moved here
		// and found another process in the parent.
		root, move = parent, false
	}
	if root == "/" {
		// The root cgroup has no cgroup.type; a cgroup namespace's root,
		// which is a delegated cgroup like any other, has one.
		if _, err := os.Stat(filepath.Join(mount, "cgroup.type")); errors.Is(err, os.ErrNotExist) {
			return "", false, fmt.Errorf("chimirror runs in the root cgroup, where job cgroups must not go: %s", delegateHint)
		}
	}
	have, err := readControllers(filepath.Join(mount, root, "cgroup.controllers"))
	if err != nil {
		return "", false, err
	}
	if m := missing(cgroup2Needed, have); len(m) > 0 {
		return "", false, fmt.Errorf("cgroup v2 controllers %s are not delegated to chimirror's cgroup %s: %s",
			strings.Join(m, ", "), root, delegateHint)
	}
	procs, err := os.ReadFile(filepath.Join(mount, root, "cgroup.procs"))
	if err != nil {
		return "", false, fmt.Errorf("list the processes of cgroup %s: %w", root, err)
	}
	var others []string
	for _, f := range strings.Fields(string(procs)) {
		if f != strconv.Itoa(pid) {
			others = append(others, f)
		}
	}
	if len(others) > 0 {
		return "", false, fmt.Errorf("chimirror shares its cgroup %s with %d other processes (pids %s), "+
			"and cgroup v2 delegates controllers only from a cgroup of its own: %s",
			root, len(others), strings.Join(others[:min(len(others), 5)], " "), delegateHint)
	}
	return root, move, nil
}

// delegate2 makes the delegated root ready for job cgroups: pid moves into
// its supervisor leaf (if it is not there yet), and the controllers are
// enabled in the root's cgroup.subtree_control.
func delegate2(mount string, pid int) (delegation2, error) {
	self, err := selfCgroup2()
	if err != nil {
		return delegation2{}, err
	}
	root, move, err := planDelegation2(mount, self, pid)
	if err != nil {
		return delegation2{}, err
	}
	if move {
		leaf := filepath.Join(mount, root, supervisorLeaf)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return delegation2{}, fmt.Errorf("create the server's leaf cgroup: %w", err)
		}
		// cgroup.procs moves every thread of the process.
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return delegation2{}, fmt.Errorf("move the server into its leaf cgroup %s: %w", path.Join(root, supervisorLeaf), err)
		}
	}
	have, err := readControllers(filepath.Join(mount, root, "cgroup.controllers"))
	if err != nil {
		return delegation2{}, err
	}
	d := delegation2{root: root, controllers: slices.Clone(cgroup2Needed)}
	for _, c := range cgroup2Optional {
		if slices.Contains(have, c) {
			d.controllers = append(d.controllers, c)
		}
	}
	if err := enableControllers(filepath.Join(mount, root), d.controllers); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			err = fmt.Errorf("%w (another process is in %s: %s)", err, root, delegateHint)
		}
		return delegation2{}, err
	}
	_, err = os.Stat(filepath.Join(mount, root, "memory.swap.max"))
	d.swap = err == nil
	return d, nil
}

// ensureParents2 creates rel's directories below the delegated root, each
// with d's controllers enabled for its children. Existing ones are kept.
func ensureParents2(mount string, d delegation2, rel string) error {
	dir := filepath.Join(mount, d.root)
	for _, elem := range strings.Split(filepath.Clean(rel), "/") {
		if elem == "" || elem == "." {
			continue
		}
		dir = filepath.Join(dir, elem)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup parent: %w", err)
		}
		if err := enableControllers(dir, d.controllers); err != nil {
			return err
		}
	}
	return nil
}

// enableControllers enables ctls for the children of the cgroup dir, writing
// only the ones not enabled yet.
func enableControllers(dir string, ctls []string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	enabled, err := readControllers(file)
	if err != nil {
		return err
	}
	m := missing(ctls, enabled)
	if len(m) == 0 {
		return nil
	}
	if err := os.WriteFile(file, []byte("+"+strings.Join(m, " +")), 0); err != nil {
		return fmt.Errorf("enable cgroup controllers %s: %w", strings.Join(m, ", "), err)
	}
	return nil
}

// readControllers reads a space-separated controller list
// (cgroup.controllers, cgroup.subtree_control).
func readControllers(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read cgroup controllers: %w", err)
	}
	return strings.Fields(string(b)), nil
}

// missing is the elements of want that have lacks, in want's order.
func missing(want, have []string) []string {
	var m []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			m = append(m, w)
		}
	}
	return m
}

// available2 says why job cgroups cannot be made on this v2 host, or nil;
// it sets nothing up.
func available2(mount string) error {
	if delegation.Load() != nil {
		return nil
	}
	self, err := selfCgroup2()
	if err != nil {
		return err
	}
	_, _, err = planDelegation2(mount, self, os.Getpid())
	return err
}

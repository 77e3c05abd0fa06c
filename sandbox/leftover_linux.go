package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// Leftover is a job cgroup found under a parent at start: what a server
// that died left behind. Recovery kills it (Kill), waits until Live is
// false, reads its final counters (Usage) and deletes it (Delete).
//
// A Leftover is never waited on for zombies. The dead server's jobs were
// its children: their inits are reparented to the host's PID 1 (or the
// nearest subreaper), which reaps them in its own time, and until it does
// a zombie still counts in pids.current (KERNEL-NOTES gotcha 3). The
// kernel unlinks a task from its cgroup when it exits, not when it is
// reaped, so the cgroup holds no live task, and can be removed, as soon as
// its last process has died.
type Leftover struct {
	// Name is the cgroup's own name (the last path element), which is the
	// job ID and the dead server's pid, or a pool initiator's name.
	Name string

	path string // relative to the server's own cgroup
	v2   string // its directory on a v2 host
	// v1 is its directory in each hierarchy it is in. partial: not in
	// all of them, as a server that died while creating or deleting it
	// leaves it (no job ran in it, or none is left); it has no usage worth
	// reading.
	v1      cgroup1Dirs
	partial bool
}

func (l *Leftover) String() string { return l.path }

// Path is the cgroup's path relative to the server's own cgroup.
func (l *Leftover) Path() string { return l.path }

// Kill sends SIGKILL to every task in the cgroup and thaws it, so a job
// that a dying server froze to kill (v1 freezer, v2 cgroup.freeze) gets
// the signal. It does not wait: call Live until it reports false. Tasks
// forked between the listing and the kill are caught by the next Kill.
func (l *Leftover) Kill() error {
	defer fileSlot()()
	if l.v1 == nil {
		dir := l.v2
		err := writeExisting(filepath.Join(dir, "cgroup.kill"), "1")
		if errors.Is(err, os.ErrNotExist) { // gone already, or a kernel before 5.14
			if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
				return nil
			}
			err = l.killListed()
		}
		if err != nil {
			return fmt.Errorf("kill leftover cgroup %s: %w", l.path, err)
		}
		if err := thaw(filepath.Join(dir, "cgroup.freeze"), "0"); err != nil {
			return fmt.Errorf("thaw leftover cgroup %s: %w", l.path, err)
		}
		return nil
	}
	err := l.killListed()
	// The SIGKILLs are pending on frozen tasks; the thaw delivers them
	// before any of the job's code runs again.
	if d, ok := l.v1[cgroup1.Freezer]; ok {
		if terr := thaw(filepath.Join(d, "freezer.state"), "THAWED"); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	if err != nil {
		return fmt.Errorf("kill leftover cgroup %s: %w", l.path, err)
	}
	return nil
}

// thaw writes state to a freezer file that exists; a cgroup (or a
// controller) that is not there is nothing to thaw.
func thaw(file, state string) error {
	err := writeExisting(file, state)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// killListed sends SIGKILL to every task cgroup.procs lists, in every
// hierarchy the cgroup is in.
func (l *Leftover) killListed() error {
	pids, err := l.procs()
	for _, pid := range pids {
		if e := syscall.Kill(pid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("kill %d: %w", pid, e))
		}
	}
	return err
}

// procs lists the live tasks in the cgroup, each once (a v1 cgroup lists
// them in every hierarchy): cgroup.procs shows no zombie.
func (l *Leftover) procs() ([]int, error) {
	dirs := []string{l.v2}
	if l.v1 != nil {
		dirs = l.v1.list()
	}
	var pids []int
	var errs []error
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", d, err))
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, errors.Join(errs...)
}

// Live reports whether a task that has not exited is left in the cgroup.
// Zombies do not count (see Leftover).
func (l *Leftover) Live() (bool, error) {
	defer fileSlot()()
	if l.v1 == nil {
		pop, err := readKeyed(filepath.Join(l.v2, "cgroup.events"), "populated")
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read leftover cgroup %s: %w", l.path, err)
		}
		return pop != 0, nil
	}
	pids, err := l.procs()
	if err != nil {
		return false, fmt.Errorf("read leftover cgroup %s: %w", l.path, err)
	}
	return len(pids) > 0, nil
}

// Usage reads the cgroup's counters.
func (l *Leftover) Usage() (Usage, error) {
	if l.v1 == nil {
		defer fileSlot()()
		return readUsage2(l.v2)
	}
	if l.partial {
		return Usage{}, fmt.Errorf("cgroup %s is partial: no usage", l.path)
	}
	return (&cgroup1Job{path: l.path, dirs: l.v1}).usage()
}

// Delete removes the cgroup, which must hold no live task; a directory
// already gone is fine, so Delete may be retried. rmdir can fail with
// EBUSY for a moment after the last task died: retry it.
func (l *Leftover) Delete() error {
	defer fileSlot()()
	dirs := []string{l.v2}
	if l.v1 != nil {
		dirs = l.v1.list()
	}
	if err := removeDirs(dirs); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", l.path, err)
	}
	return nil
}

// Leftovers lists the job cgroups under parent (DefaultCgroupParent if
// empty), in every hierarchy jobs use. A cgroup found in only some v1
// hierarchies (a server died while creating or deleting it) is listed too.
// The caller must own parent: Leftovers does not know which server a cgroup
// is from. It only reads directories, so that a server can list thousands
// of them before it listens, and sweep them after.
func Leftovers(parent string) ([]*Leftover, error) {
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if CgroupVersion() == 2 {
		return leftovers2(unifiedMount(), parent)
	}
	return leftovers1(parent)
}

func leftovers1(parent string) ([]*Leftover, error) {
	parents, err := v1Dirs(parent) // the parent's directory in each hierarchy
	if err != nil {
		return nil, fmt.Errorf("find cgroup %s: %w", parent, err)
	}
	found := make(map[string]cgroup1Dirs)
	for sub, pd := range parents {
		names, err := subdirs(pd)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if found[name] == nil {
				found[name] = make(cgroup1Dirs, len(parents))
			}
			found[name][sub] = filepath.Join(pd, name)
		}
	}
	out := make([]*Leftover, 0, len(found))
	for _, name := range sortedKeys(found) {
		dirs := found[name]
		out = append(out, &Leftover{Name: name, path: parent + "/" + name, v1: dirs, partial: len(dirs) < len(parents)})
	}
	return out, nil
}

func leftovers2(mount, parent string) ([]*Leftover, error) {
	own, err := ownCgroup2()
	if err != nil {
		return nil, fmt.Errorf("find own cgroup: %w", err)
	}
	pd := filepath.Join(mount, own, parent)
	names, err := subdirs(pd)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]*Leftover, 0, len(names))
	for _, name := range names {
		out = append(out, &Leftover{Name: name, path: filepath.Join(own, parent, name), v2: filepath.Join(pd, name)})
	}
	return out, nil
}

// subdirs lists the names of dir's subdirectories; a missing dir has none.
func subdirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list leftover cgroups: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RemoveParent removes parent's own directory in every hierarchy once no
// job cgroup is left in it (a clean shutdown). It fails if one is.
func RemoveParent(parent string) error {
	if parent == "" {
		parent = DefaultCgroupParent
	}
	return removeParent(CgroupVersion(), unifiedMount(), parent)
}

func removeParent(version int, mount, parent string) error {
	var dirs []string
	if version == 2 {
		own, err := ownCgroup2()
		if err != nil {
			return fmt.Errorf("find own cgroup: %w", err)
		}
		dirs = []string{filepath.Join(mount, own, parent)}
	} else {
		v1, err := v1Dirs(parent)
		if err != nil {
			return fmt.Errorf("find cgroup %s: %w", parent, err)
		}
		dirs = v1.list()
	}
	if err := removeDirs(dirs); err != nil {
		return fmt.Errorf("remove cgroup parent: %w", err)
	}
	return nil
}

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Leftover is a job cgroup found under a parent at start: what a server
// that died left behind. Recovery kills it (KillAndWait), reads its final
// counters (Usage) and deletes it (Delete), in that order.
type Leftover struct {
	// Name is the cgroup's own name (the last path element), which is the
	// job ID and the dead server's pid, or a pool initiator's name.
	Name string
	cg   jobCgroup
}

// Path is the cgroup's path relative to the server's own cgroup.
func (l *Leftover) Path() string { return l.cg.Path() }

// KillAndWait kills every process in the cgroup and waits until none is
// left, zombies included.
func (l *Leftover) KillAndWait(timeout time.Duration) error { return killAndWait(l.cg, timeout) }

// Usage reads the cgroup's counters.
func (l *Leftover) Usage() (Usage, error) { return l.cg.Usage() }

// Delete removes the cgroup; it must be empty.
func (l *Leftover) Delete() error { return l.cg.Delete() }

// Leftovers lists the job cgroups under parent (DefaultCgroupParent if
// empty), in every hierarchy jobs use. A cgroup found in only some v1
// hierarchies (a server died while creating or deleting it) is listed too.
// The caller must own parent: Leftovers does not know which server a cgroup
// is from.
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
	names := make(map[string]bool)
	for _, pd := range parents {
		if err := subdirs(pd, names); err != nil {
			return nil, err
		}
	}
	out := make([]*Leftover, 0, len(names))
	for _, name := range sorted(names) {
		path := parent + "/" + name
		dirs := make(cgroup1Dirs, len(parents))
		for sub, pd := range parents {
			if _, err := os.Stat(filepath.Join(pd, name)); err == nil {
				dirs[sub] = filepath.Join(pd, name)
			}
		}
		if len(dirs) < len(parents) { // the server died while creating or deleting it
			out = append(out, &Leftover{Name: name, cg: &partialCgroup1{path: path, dirs: dirs}})
			continue
		}
		cg, err := cgroup1.Load(nestedPath(path), cgroup1.WithHierarchy(v1Hierarchy))
		if err != nil {
			return nil, fmt.Errorf("load leftover cgroup %s: %w", path, err)
		}
		out = append(out, &Leftover{Name: name, cg: &cgroup1Job{cg: cg, path: path, dirs: dirs}})
	}
	return out, nil
}

func leftovers2(mount, parent string) ([]*Leftover, error) {
	own, err := ownCgroup2()
	if err != nil {
		return nil, fmt.Errorf("find own cgroup: %w", err)
	}
	names := make(map[string]bool)
	if err := subdirs(filepath.Join(mount, own, parent), names); err != nil {
		return nil, err
	}
	out := make([]*Leftover, 0, len(names))
	for _, name := range sorted(names) {
		group := filepath.Join(own, parent, name)
		m, err := cgroup2.Load(group, cgroup2.WithMountpoint(mount))
		if err != nil {
			return nil, fmt.Errorf("load leftover cgroup %s: %w", group, err)
		}
		out = append(out, &Leftover{Name: name, cg: &cgroup2Job{m: m, mount: mount, group: group}})
	}
	return out, nil
}

// subdirs adds the names of dir's subdirectories to names; a missing dir
// has none.
func subdirs(dir string, names map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list leftover cgroups: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			names[e.Name()] = true
		}
	}
	return nil
}

func sorted(m map[string]bool) []string {
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

// partialCgroup1 is a v1 job cgroup missing from some hierarchies: its
// server died while creating it (before any job ran in it) or while
// deleting it (once it was empty); a failed create removes what it made.
// It can only be emptied and removed; it has no usage worth reading.
type partialCgroup1 struct {
	path string
	dirs cgroup1Dirs // only the hierarchies it is in
}

func (c *partialCgroup1) Path() string          { return c.path }
func (c *partialCgroup1) AddProc(int) error     { return errors.New("partial cgroup: no new processes") }
func (c *partialCgroup1) CloneFD() (int, error) { return -1, nil }
func (c *partialCgroup1) Usage() (Usage, error) {
	return Usage{}, fmt.Errorf("cgroup %s is partial: no usage", c.path)
}

func (c *partialCgroup1) procs() ([]int, error) {
	var pids []int
	for _, d := range c.dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", d, err)
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

func (c *partialCgroup1) Kill() error {
	pids, err := c.procs()
	for _, pid := range pids {
		if e := syscall.Kill(pid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("kill %d: %w", pid, e))
		}
	}
	return err
}

func (c *partialCgroup1) Empty() (bool, error) {
	pids, err := c.procs()
	return len(pids) == 0, err
}

func (c *partialCgroup1) Delete() error {
	if err := c.dirs.remove(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}

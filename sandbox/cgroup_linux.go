package sandbox

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// jobCgroup is one job's cgroup, whichever version the host runs.
//
// Contract: a job's cgroup is created fresh, with its limits, before the job
// runs, never updated (containerd/cgroups v3.1.3's v1 Update mishandles
// swap), killed as a whole, confirmed empty, then deleted.
type jobCgroup interface {
	// AddProc moves pid in. v2 jobs are born inside instead (cloneFD).
	AddProc(pid int) error
	// CloneFD is a directory fd for CLONE_INTO_CGROUP, or -1 (v1). The
	// caller closes it.
	CloneFD() (int, error)
	// Kill sends SIGKILL to every process in the cgroup.
	Kill() error
	// Empty reports whether no process, and no unreaped zombie, is left.
	Empty() (bool, error)
	Usage() (Usage, error)
	Delete() error
	Path() string
}

// DefaultCgroupParent is where job cgroups live when Isolation names no
// parent, relative to the server's own cgroup in each hierarchy: jobs nest
// under whoever runs the server, so systemd's control-group kill and the
// operator's limits still cover them.
const DefaultCgroupParent = "chimirror"

// CgroupVersion reports which cgroup version jobs use here: 2 on a pure v2
// host (the containerd rule), else 1.
func CgroupVersion() int {
	if cgroups.Mode() == cgroups.Unified {
		return 2
	}
	return 1
}

// newJobCgroup creates the cgroup parent/name with res as its limits and,
// with oomGroup, Isolation.OOMGroup's whole-job OOM kill.
func newJobCgroup(version int, parent, name string, res *specs.LinuxResources, oomGroup bool) (jobCgroup, error) {
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if version == 2 {
		return newCgroup2(unifiedMount(), parent+"/"+name, res, oomGroup)
	}
	return newCgroup1(parent+"/"+name, res, oomGroup)
}

// --- v1 -------------------------------------------------------------------

// cgroupRoot is where the host mounts its cgroup hierarchies: one directory
// per v1 controller, or the v2 hierarchy itself on a pure v2 host.
const cgroupRoot = "/sys/fs/cgroup"

type cgroup1Job struct {
	cg   cgroup1.Cgroup
	path string
	dirs cgroup1Dirs // computed once: Usage reads eight files per sample
	// oomGroup: v1 has no memory.oom.group, so Usage kills the whole job
	// the first time it reads an OOM kill; oomKilled records that it did.
	oomGroup  bool
	oomKilled atomic.Bool
}

// cgroup1Dirs is one cgroup's directory in each v1 hierarchy jobs use.
type cgroup1Dirs map[cgroup1.Name]string

// list is the directories, in no order.
func (d cgroup1Dirs) list() []string { return slices.Collect(maps.Values(d)) }

// remove removes the directories, which must be empty; ones already gone
// are fine.
func (d cgroup1Dirs) remove() error { return removeDirs(d.list()) }

// v1Hierarchy is the controllers jobs use. Never name=systemd: moving a job
// there would take it out of the server's unit (KERNEL-NOTES gotcha 1).
// Computed once, error included: containerd asks for it per cgroup created
// or loaded, and which controllers the host mounts does not change under a
// running server.
var v1Hierarchy = sync.OnceValues(func() ([]cgroup1.Subsystem, error) {
	subs := []cgroup1.Subsystem{
		cgroup1.NewCpu(cgroupRoot), cgroup1.NewCpuacct(cgroupRoot),
		cgroup1.NewMemory(cgroupRoot, cgroup1.OptionalSwap()),
		cgroup1.NewPids(cgroupRoot), cgroup1.NewFreezer(cgroupRoot),
	}
	for _, s := range subs {
		if _, err := os.Stat(filepath.Join(cgroupRoot, string(s.Name()))); err != nil {
			return nil, fmt.Errorf("cgroup v1 controller %s: %w", s.Name(), err)
		}
	}
	return subs, nil
})

// v1SwapAccounted reports whether the kernel accounts swap (memory.memsw.*
// exists), read once: it is fixed at boot.
var v1SwapAccounted = sync.OnceValue(func() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil
})

// ownV1 is the server's own cgroup in each v1 hierarchy, read once from
// /proc/self/cgroup: the server never moves itself, and containerd's
// NestedPath parses that file on every call (per file read, that was most
// of a sandboxed job's teardown CPU).
var ownV1 = sync.OnceValues(func() (map[cgroup1.Name]string, error) {
	subs, err := v1Hierarchy()
	if err != nil {
		return nil, err
	}
	own := make(map[cgroup1.Name]string, len(subs))
	for _, s := range subs {
		p, err := cgroup1.NestedPath("")(s.Name())
		if err != nil {
			return nil, fmt.Errorf("find own cgroup in %s: %w", s.Name(), err)
		}
		own[s.Name()] = p
	}
	return own, nil
})

// nestedPath is cgroup1.NestedPath(path) over the cached ownV1.
func nestedPath(path string) cgroup1.Path {
	return func(sub cgroup1.Name) (string, error) {
		own, err := ownV1()
		if err != nil {
			return "", err
		}
		o, ok := own[sub]
		if !ok {
			return "", fmt.Errorf("cgroup v1 controller %s is not used by jobs", sub)
		}
		return filepath.Join(o, path), nil
	}
}

// v1Dirs is path's directory in every hierarchy jobs use.
func v1Dirs(path string) (cgroup1Dirs, error) {
	own, err := ownV1()
	if err != nil {
		return nil, err
	}
	dirs := make(cgroup1Dirs, len(own))
	for sub, o := range own {
		dirs[sub] = filepath.Join(cgroupRoot, string(sub), o, path)
	}
	return dirs, nil
}

// removeDirs removes empty cgroup directories; ones already gone are fine.
func removeDirs(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func newCgroup1(path string, res *specs.LinuxResources, oomGroup bool) (jobCgroup, error) {
	if res == nil {
		res = &specs.LinuxResources{} // cgroup1.New dereferences it
	}
	res = v1Resources(res)
	dirs, err := v1Dirs(path)
	if err != nil {
		return nil, fmt.Errorf("create cgroup v1 %s: %w", path, err)
	}
	// containerd reuses an existing directory; two jobs must never share one.
	if _, err := os.Stat(dirs[cgroup1.Pids]); err == nil {
		return nil, fmt.Errorf("create cgroup v1 %s: already exists", path)
	}
	cg, err := cgroup1.New(nestedPath(path), res, cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		// containerd makes the hierarchies in turn and returns at the first
		// error, leaving the directories it made. They are this cgroup's (no
		// job holds the name: checked above) and hold no process yet, so
		// they go; a removal that fails is reported with the cause.
		return nil, fmt.Errorf("create cgroup v1 %s: %w", path, errors.Join(err, dirs.remove()))
	}
	return &cgroup1Job{cg: cg, path: path, dirs: dirs, oomGroup: oomGroup}, nil
}

// fileSlots bounds the cgroup operations that hold a file open at once.
// A server holding thousands of sessions runs near its descriptor limit,
// and a shutdown ends them all together: each kill's freezer.state, each
// last usage read, must wait for a slot rather than fail with EMFILE.
var fileSlots = make(chan struct{}, 256)

// fileSlot takes a slot and returns its release.
func fileSlot() (release func()) {
	fileSlots <- struct{}{}
	return func() { <-fileSlots }
}

// v1Resources drops the swap limit when the kernel does not account swap
// (no memory.memsw.*): writing it would fail.
func v1Resources(res *specs.LinuxResources) *specs.LinuxResources {
	if res == nil || res.Memory == nil || res.Memory.Swap == nil || v1SwapAccounted() {
		return res
	}
	r := *res
	m := *res.Memory
	m.Swap = nil
	r.Memory = &m
	return &r
}

func (c *cgroup1Job) Path() string { return c.path }

// AddProc writes pid to cgroup.procs in each hierarchy, as containerd's
// does, in the hierarchies' order, but with readSmall's economy of system
// calls (writeExisting).
func (c *cgroup1Job) AddProc(pid int) error {
	defer fileSlot()()
	subs, err := v1Hierarchy()
	if err != nil {
		return fmt.Errorf("add %d to cgroup %s: %w", pid, c.path, err)
	}
	for _, sub := range subs {
		p, err := c.v1Path(sub.Name(), "cgroup.procs")
		if err == nil {
			err = writeProcs(p, pid)
		}
		if err != nil {
			return fmt.Errorf("add %d to cgroup %s: %w", pid, c.path, err)
		}
	}
	return nil
}

// writeProcs writes pid to a cgroup.procs file. EINVAL is the kernel's
// answer for a task still being born (TASK_NEW): tried again, as runc and
// containerd do.
func writeProcs(path string, pid int) error {
	for try := 0; ; try++ {
		err := writeExisting(path, strconv.Itoa(pid))
		if !errors.Is(err, unix.EINVAL) || try == 4 {
			return err
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func (c *cgroup1Job) CloneFD() (int, error) { return -1, nil }

// Kill freezes the cgroup so nothing can fork, kills every task, and thaws
// it so the kills are delivered.
func (c *cgroup1Job) Kill() error {
	defer fileSlot()()
	if err := c.cg.Freeze(); err != nil {
		return fmt.Errorf("freeze %s: %w", c.path, err)
	}
	procs, err := c.cg.Processes(cgroup1.Freezer, true)
	var kerr error
	for _, p := range procs {
		if e := syscall.Kill(p.Pid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) {
			kerr = errors.Join(kerr, fmt.Errorf("kill %d: %w", p.Pid, e))
		}
	}
	if terr := c.cg.Thaw(); terr != nil {
		kerr = errors.Join(kerr, fmt.Errorf("thaw %s: %w", c.path, terr))
	}
	if err != nil {
		return errors.Join(fmt.Errorf("list %s: %w", c.path, err), kerr)
	}
	return kerr
}

// Empty reads pids.current alone: it is hierarchical (a sub-cgroup's
// tasks count too) and counts zombies until they are reaped (gotcha 3),
// so zero means nothing at all is left. Walking the tree for tasks, as
// containerd's Processes does, costs a directory walk per call.
func (c *cgroup1Job) Empty() (bool, error) {
	defer fileSlot()()
	cur, err := c.v1File(cgroup1.Pids, "pids.current")
	if err != nil {
		return false, fmt.Errorf("read tasks of %s: %w", c.path, err)
	}
	return cur == 0, nil
}

// v1Path is the path of file in the job's directory of one v1 controller.
func (c *cgroup1Job) v1Path(sub cgroup1.Name, file string) (string, error) {
	dir, ok := c.dirs[sub]
	if !ok {
		return "", fmt.Errorf("cgroup v1 controller %s is not used by jobs", sub)
	}
	return filepath.Join(dir, file), nil
}

func (c *cgroup1Job) v1File(sub cgroup1.Name, file string) (int64, error) {
	p, err := c.v1Path(sub, file)
	if err != nil {
		return 0, err
	}
	return readInt(p)
}

// v1Keyed reads "key N" from a keyed file of one controller.
func (c *cgroup1Job) v1Keyed(sub cgroup1.Name, file, key string) (int64, error) {
	p, err := c.v1Path(sub, file)
	if err != nil {
		return 0, err
	}
	return readKeyed(p, key)
}

// Usage reads eight small files rather than containerd's Stat, which
// parses every file of every controller (about 0.7 ms, KERNEL-NOTES §1
// gotcha 7): the sampler reads every running job each tick. With
// oomGroup, the first read that finds an OOM kill kills the rest of the
// job, as memory.oom.group does on v2 in the kernel.
func (c *cgroup1Job) Usage() (Usage, error) {
	u, err := c.usage()
	if err == nil && c.oomGroup && u.OOMKills > 0 && c.oomKilled.CompareAndSwap(false, true) {
		if err := c.Kill(); err != nil {
			c.oomKilled.Store(false) // the next reading tries again
			return u, fmt.Errorf("kill %s after an OOM kill: %w", c.path, err)
		}
	}
	return u, err
}

func (c *cgroup1Job) usage() (Usage, error) {
	defer fileSlot()()
	u := Usage{MemoryPeakBytes: -1, PidsPeak: -1}
	var err error
	// cpuacct.usage is the scheduler's exact runtime; usage_user and
	// usage_sys are tick samples (4 ms at HZ=250), which overshoot a
	// throttled job by a quarter and more. Like the kernel's cputime_adjust
	// (and v2's cpu.stat), the exact total is split in the samples' ratio.
	var total, user, sys int64
	if total, err = c.v1File(cgroup1.Cpuacct, "cpuacct.usage"); err != nil {
		return u, fmt.Errorf("read usage of %s: %w", c.path, err)
	}
	if user, err = c.v1File(cgroup1.Cpuacct, "cpuacct.usage_user"); err != nil {
		return u, fmt.Errorf("read usage of %s: %w", c.path, err)
	}
	if sys, err = c.v1File(cgroup1.Cpuacct, "cpuacct.usage_sys"); err != nil {
		return u, fmt.Errorf("read usage of %s: %w", c.path, err)
	}
	u.CPUUserNs, u.CPUSystemNs = splitCPU(total, user, sys)
	if v, err := c.v1Keyed(cgroup1.Cpu, "cpu.stat", "throttled_time"); err == nil {
		u.CPUThrottledNs = v
	}
	if v, err := c.v1File(cgroup1.Memory, "memory.usage_in_bytes"); err == nil {
		u.MemoryCurrentBytes = v
	}
	if v, err := c.v1File(cgroup1.Memory, "memory.max_usage_in_bytes"); err == nil {
		u.MemoryPeakBytes = v
	}
	if v, err := c.v1Keyed(cgroup1.Memory, "memory.oom_control", "oom_kill"); err == nil {
		u.OOMKills = v
	}
	if v, err := c.v1File(cgroup1.Pids, "pids.current"); err == nil {
		u.PidsCurrent = v
	}
	if v, err := c.v1Keyed(cgroup1.Pids, "pids.events", "max"); err == nil {
		u.PidsLimitHits = v
	}
	return u, nil
}

// Delete removes the job's directory in each hierarchy. The caller has
// found it empty; a sub-cgroup (which a job cannot make: no capability
// over the host's cgroup files) would make rmdir fail, and is reported.
// containerd's Delete walks every hierarchy's tree first, which cost more
// than the rest of a job's teardown.
func (c *cgroup1Job) Delete() error {
	defer fileSlot()()
	if err := c.dirs.remove(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}

// --- v2 -------------------------------------------------------------------

type cgroup2Job struct {
	m     *cgroup2.Manager
	mount string
	group string
}

// unifiedMount is the cgroup2 mount jobs use on a pure v2 host.
func unifiedMount() string { return cgroupRoot }

// ownCgroup2 is the server's delegated v2 cgroup, which job cgroups live
// under (relative to the mount): set up by the first call (see
// delegated2), then remembered.
func ownCgroup2() (string, error) {
	d, err := delegated2()
	if err != nil {
		return "", err
	}
	return d.root, nil
}

// newCgroup2 creates the cgroup path below the delegated root with res as
// its limits. It writes cgroup.subtree_control only inside the delegated
// root (containerd's NewManager writes every ancestor's, up to the host's
// root), and mkdir, not MkdirAll, makes the job's own directory: an
// existing one is refused, never shared.
func newCgroup2(mount, path string, res *specs.LinuxResources, oomGroup bool) (jobCgroup, error) {
	d, err := delegated2()
	if err != nil {
		return nil, fmt.Errorf("create cgroup v2 %s: %w", path, err)
	}
	group := filepath.Join(d.root, path)
	if err := ensureParents2(mount, d, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create cgroup v2 %s: %w", group, err)
	}
	dir := filepath.Join(mount, group)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup v2 %s: already exists", group)
	} else if err != nil {
		return nil, fmt.Errorf("create cgroup v2 %s: %w", group, err)
	}
	r := &cgroup2.Resources{}
	if res != nil {
		r = cgroup2.ToResources(res)
	}
	if r.Memory != nil && !d.swap {
		r.Memory.Swap = nil // no swap accounting: memory.swap.max does not exist
	}
	if oomGroup {
		if r.Memory == nil {
			r.Memory = &cgroup2.Memory{}
		}
		r.Memory.OOMGroup = &oomGroup
	}
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(mount))
	if err == nil {
		err = m.Update(r)
	}
	if err != nil {
		// The directory is this job's (made above) and holds no process yet.
		return nil, fmt.Errorf("set limits of cgroup v2 %s: %w", group, errors.Join(err, removeDirs([]string{dir})))
	}
	return &cgroup2Job{m: m, mount: mount, group: group}, nil
}

func (c *cgroup2Job) Path() string { return c.group }
func (c *cgroup2Job) dir() string  { return filepath.Join(c.mount, c.group) }

func (c *cgroup2Job) AddProc(pid int) error {
	defer fileSlot()()
	if err := c.m.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add %d to cgroup %s: %w", pid, c.group, err)
	}
	return nil
}

func (c *cgroup2Job) CloneFD() (int, error) {
	fd, err := unix.Open(c.dir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open cgroup %s: %w", c.group, err)
	}
	return fd, nil
}

func (c *cgroup2Job) Kill() error {
	defer fileSlot()()
	if err := c.m.Kill(); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.group, err)
	}
	return nil
}

func (c *cgroup2Job) Empty() (bool, error) {
	defer fileSlot()()
	pop, err := readKeyed(filepath.Join(c.dir(), "cgroup.events"), "populated")
	if err != nil {
		return false, err
	}
	if pop != 0 {
		return false, nil
	}
	cur, err := readInt(filepath.Join(c.dir(), "pids.current"))
	if errors.Is(err, os.ErrNotExist) { // no pids controller here
		return true, nil
	}
	return cur == 0, err
}

func (c *cgroup2Job) Usage() (Usage, error) {
	defer fileSlot()()
	return readUsage2(c.dir())
}

// readUsage2 reads a v2 cgroup directory's files. Missing files are
// "unknown" (-1) for peaks and zero for counters.
func readUsage2(dir string) (Usage, error) {
	u := Usage{MemoryPeakBytes: -1, PidsPeak: -1}
	cpu, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return u, fmt.Errorf("read cpu.stat: %w", err)
	}
	u.CPUUserNs = cpu["user_usec"] * 1000
	u.CPUSystemNs = cpu["system_usec"] * 1000
	u.CPUThrottledNs = cpu["throttled_usec"] * 1000
	if v, err := readInt(filepath.Join(dir, "memory.current")); err == nil {
		u.MemoryCurrentBytes = v
	}
	if v, err := readInt(filepath.Join(dir, "memory.peak")); err == nil {
		u.MemoryPeakBytes = v
	}
	if ev, err := readKV(filepath.Join(dir, "memory.events")); err == nil {
		u.OOMKills = ev["oom_kill"]
	}
	if v, err := readInt(filepath.Join(dir, "pids.current")); err == nil {
		u.PidsCurrent = v
	}
	if v, err := readInt(filepath.Join(dir, "pids.peak")); err == nil {
		u.PidsPeak = v
	}
	if ev, err := readKV(filepath.Join(dir, "pids.events")); err == nil {
		u.PidsLimitHits = ev["max"]
	}
	return u, nil
}

func (c *cgroup2Job) Delete() error {
	defer fileSlot()()
	if err := c.m.Delete(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.group, err)
	}
	return nil
}

// --- shared ---------------------------------------------------------------

// killAndWait kills a cgroup and waits until it is empty, retrying the kill
// for processes that were mid-fork. It returns an error if the cgroup is
// still populated at the deadline (a D-state task, say).
func killAndWait(cg jobCgroup, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		empty, err := cg.Empty()
		if err != nil {
			return err
		}
		if empty {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s not empty after %v", cg.Path(), timeout)
		}
		if err := cg.Kill(); err != nil {
			return err
		}
		time.Sleep(delay)
	}
}

func readInt(path string) (int64, error) {
	b, err := readSmall(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readKV parses "key value" lines (cpu.stat, memory.events, pids.events).
func readKV(path string) (map[string]int64, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int64)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m, nil
}

func readKeyed(path, key string) (int64, error) {
	m, err := readKV(path)
	if err != nil {
		return 0, err
	}
	return m[key], nil
}

// Available says why jobs cannot be sandboxed here, or nil if they can:
// it needs root and the cgroup controllers this package uses. On v2 they
// must be delegated to a cgroup the server has to itself (systemd's
// Delegate=yes); the error then says what to add to the unit. It changes
// nothing: the server moves into its leaf later (see delegated2).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if CgroupVersion() == 1 {
		if _, err := v1Hierarchy(); err != nil {
			return err
		}
		return nil
	}
	// v2: the controllers delegated to a cgroup the server can have to
	// itself (see delegated2). Nothing is set up yet.
	return available2(unifiedMount())
}

// splitCPU divides the exact CPU total between user and system time in the
// ratio of their tick samples; with no samples yet, it is all user time.
func splitCPU(total, userTicks, sysTicks int64) (userNs, sysNs int64) {
	if userTicks+sysTicks <= 0 {
		return total, 0
	}
	sysNs = int64(float64(total) * float64(sysTicks) / float64(userTicks+sysTicks))
	return total - sysNs, sysNs
}

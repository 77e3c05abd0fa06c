package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// mountOp is one step of building a job's root. The server plans the steps
// (plan, below); the init only runs them, in order, so the C and Go inits
// share one contract and no policy logic. Every argument is a string;
// numbers are decimal.
//
//	mount   SRC DST FSTYPE FLAGS DATA   mount(2); an empty SRC, FSTYPE or DATA is NULL
//	area    SRC -   FSTYPE ATTRS DATA   a new FSTYPE filesystem, never attached
//	                                    anywhere (fsopen, fsmount): its
//	                                    source is SRC, DATA its options
//	                                    (key=value or key, comma-separated),
//	                                    ATTRS its mount's. This is the job's
//	                                    area: a relative path in any later
//	                                    step (SRC or DST) lies in it
//	attach  -   DST                     the area is attached at DST, a
//	                                    directory a later step mounts over:
//	                                    kernels before 6.15 bind only from
//	                                    an attached mount (open_tree of a
//	                                    detached one is EINVAL), so binds
//	                                    from the area need it there
//	bind    SRC DST ATTRS               a recursive bind with ATTRS on it and below; SRC
//	                                    and DST are opened without following
//	                                    any symlink (RESOLVE_NO_SYMLINKS), so a
//	                                    path swapped for one since the plan
//	                                    was made fails the step (ELOOP)
//	setattr -   DST ATTRS               mount_setattr(ATTRS) on DST alone
//	mkdir   -   DST MODE                mkdir(2); one that exists is fine
//	file    -   DST MODE - CONTENT      a new file holding CONTENT
//	symlink SRC DST                     symlink(2): DST points at SRC
//	mknod   -   DST MODE DEV            mknod(2) of a device node
//	chown   -   DST UID GID             lchown(2)
//	ro      -   DST                     DST is bound onto itself read-only
//	pivot   NEW OLD                     pivot_root(NEW, OLD), then chdir("/")
//	enter   -   DIR                     chdir(DIR), pivot_root(".", "."), detach
//	                                    what was the root, chdir("/")
//
// ATTRS are MOUNT_ATTR_* bits. The plan starts in a copy of the host's
// mounts: it mounts a small scratch tmpfs on /tmp and pivots into it, the
// host's tree then at /oldroot; builds the job's root, a tmpfs, at
// /newroot; and enters it, which detaches the scratch and the host's tree.
// What the job may write of its own is the area, one tmpfs whose
// directories are bound at /tmp, /var/tmp, /run, /dev/shm and View.Tmpfs
// (one size, one superblock): the area itself is never in the job's sight.
//
// Each step is shared, the same for every job of the view, or the job's
// own (its area, /proc, devpts, sysfs, and what names its ids). An init
// that starts from the host's mounts runs them all, in order (opList
// full). A template (template_linux.go) runs the shared ones once, which
// end inside the root, and each job's init runs only its own, in a copy of
// that root, with paths relative to it (opList job). So the job's own
// steps never write into the root (read-only by then), only mount on it;
// and they may come after shared steps they were planned before, which
// changes nothing the job sees: a shared step that would land inside the
// job's own mounts (a host path bound below /tmp, say) makes the view one
// a template cannot hold.
type mountOp struct{ kind, a, b, c, d, e string }

const (
	oldRoot = "/oldroot"
	newRoot = "/newroot"
	// In the scratch tmpfs, out of the job's sight: an empty directory
	// that masked directories of the host's show.
	emptyDir = "/empty"
	// In the job's area: an empty directory that masked directories of
	// /proc show.
	areaEmpty = "empty"
)

// Attributes of the view's bind mounts.
const (
	attrRO      = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrRW      = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrDevNode = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
	// A mask reads as empty: /dev/null stays a device.
	attrMask = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
)

// devNodes are the device nodes a job gets, bound from the host's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// procMasked are runc's masked paths under /proc, and /proc/cmdline,
// which tells a job how the host booted.
var procMasked = []string{"acpi", "asound", "cmdline", "interrupts", "kcore", "keys", "latency_stats",
	"sched_debug", "scsi", "timer_list", "timer_stats"}

// procReadOnly are runc's read-only paths under /proc.
var procReadOnly = []string{"bus", "fs", "irq", "sys", "sysrq-trigger"}

// viewTemplate is a view's plan but for the job's ids: the steps that
// depend on them are filled in by forJob.
type viewTemplate struct {
	// full is every step, in order: for an init that starts from the
	// host's mounts.
	full opList
	// root and job split full for a template (see mountOp): root is the
	// shared steps, job the job's own. root is nil when the view cannot be
	// held in a template.
	root []mountOp
	job  opList
	// sources are the host paths the shared steps bind: a template built
	// from them is stale once one of them is another file.
	sources []string
}

// opList is steps, and where in them the job's ids go.
type opList struct {
	ops                []mountOp
	run, passwd, group int // indexes of the steps that name the job's ids; -1: none
}

// planTTL is how long a view's plan is reused: the host's paths it looked
// at rarely change, and looking costs a job about 0.2 ms of the server's
// CPU.
const planTTL = 5 * time.Second

// maxPlans bounds the cache: about one entry per view in use.
const maxPlans = 256

type planEntry struct {
	t  *viewTemplate
	at time.Time
}

// planCache caches views' plans, by viewKey.
type planCache struct {
	mu sync.Mutex
	m  map[string]planEntry
}

// viewKey is what a plan depends on besides the host and the job's ids.
func viewKey(iso *Isolation) string {
	v := iso.View
	return fmt.Sprintf("%q|%q|%q|%q|%v|%d|%v", v.RO, v.RW, v.Tmpfs, v.Hide, v.Sys, iso.TmpSizeBytes, iso.UserNamespace)
}

// get returns iso's plan, planned again once it is planTTL old.
func (c *planCache) get(iso *Isolation) (*viewTemplate, error) {
	key, now := viewKey(iso), time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < planTTL {
		return e.t, nil
	}
	t, err := planView(iso)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxPlans {
		c.m = make(map[string]planEntry)
	}
	c.m[key] = planEntry{t, now}
	c.mu.Unlock()
	return t, nil
}

// forJob is t's steps for a job running as uid:gid: all of them, or with
// templated the job's own only. The steps are shared but those it fills
// in: the caller must not change them.
func (t *viewTemplate) forJob(iso *Isolation, uid, gid uint32, templated bool) []mountOp {
	l := &t.full
	if templated {
		l = &t.job
	}
	ops := slices.Clone(l.ops)
	ops[l.run].c, ops[l.run].d = strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10)
	userName, groupName := cmp.Or(iso.UserName, "job"), cmp.Or(iso.GroupName, "job")
	if l.passwd >= 0 {
		ops[l.passwd].e = passwdFile(uid, gid, userName)
	}
	if l.group >= 0 {
		ops[l.group].e = groupFile(gid, groupName)
	}
	return ops
}

// CheckView says why no job could start with view v on this host as it is
// now: a path the sandbox makes itself, a symlink someone other than root
// could aim, a path that holds hidden files, a missing path.
func CheckView(v View) error {
	_, err := planView(&Isolation{View: v})
	return err
}

// planView plans iso's view from what the host has now.
func planView(iso *Isolation) (*viewTemplate, error) {
	v := iso.View
	p := &planner{made: map[string]bool{"/": true}, view: v,
		full: opList{run: -1, passwd: -1, group: -1}, job: opList{run: -1, passwd: -1, group: -1}}
	for _, h := range v.Hide {
		if !filepath.IsAbs(h) {
			return nil, fmt.Errorf("hide %q: not an absolute path", h)
		}
		real, err := filepath.EvalSymlinks(h)
		if errors.Is(err, os.ErrNotExist) {
			continue // nothing to hide
		}
		if err != nil {
			return nil, fmt.Errorf("hide %s: %w", h, err)
		}
		p.hidden = append(p.hidden, real)
	}
	size := ""
	if iso.TmpSizeBytes > 0 {
		size = ",size=" + strconv.FormatInt(iso.TmpSizeBytes, 10)
	}
	// The scratch the root is built from: the host's tree below it, and
	// the empty directory host paths are masked with.
	p.add(shared, "mount", "tmpfs", "/tmp", "tmpfs", strconv.Itoa(unix.MS_NOSUID|unix.MS_NODEV), "mode=0700,size=1m")
	p.add(shared, "mkdir", "", "/tmp"+oldRoot, "448") // 0700
	p.add(shared, "mkdir", "", "/tmp"+newRoot, "448")
	p.add(shared, "pivot", "/tmp", "/tmp"+oldRoot)
	// Not nodev: /dev is a directory of it. It is read-only once built.
	p.add(shared, "mount", "tmpfs", newRoot, "tmpfs", strconv.Itoa(unix.MS_NOSUID), "mode=0755,size=1m")
	// The job's area: one tmpfs holds everything the job may write of its
	// own, bound where the job sees it: /tmp, /var/tmp, /dev/shm, /run and
	// View.Tmpfs share one size and one superblock (each superblock costs
	// the job's exit a teardown).
	p.add(own, "area", "tmpfs", "", "tmpfs", strconv.Itoa(attrRW), "mode=0700"+size)
	// Attached where the job's own /proc covers it: out of the job's sight
	// as a detached area is, and bindable from on any kernel.
	p.dirs("/proc")
	p.add(own, "attach", "", newRoot+"/proc")
	ownDir := func(dir, sub string, mode string) {
		p.add(own, "mkdir", "", sub, mode)
		p.dirs(dir)
		p.add(own, "bind", sub, newRoot+dir, strconv.Itoa(attrRW))
		p.own = append(p.own, dir)
	}
	// First: a bind below /tmp lands inside the job's own /tmp.
	ownDir("/tmp", "tmp", "1023") // 01777
	ownDir("/var/tmp", "var-tmp", "1023")
	p.add(own, "mkdir", "", "run", "493") // 0755
	p.add(own, "chown", "", "run")        // the job's own: forJob fills in its ids
	p.full.run, p.job.run = p.last()
	p.dirs("/run")
	p.add(own, "bind", "run", newRoot+"/run", strconv.Itoa(attrRW))
	p.own = append(p.own, "/run")

	// /dev: a directory of the root, read-only with it.
	p.dirs("/dev")
	for _, n := range devNodes {
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+n, &st); err != nil {
			return nil, fmt.Errorf("device /dev/%s: %w", n, err)
		}
		if !iso.UserNamespace { // the same node, made: cheaper than a bind
			p.add(shared, "mknod", "", newRoot+"/dev/"+n, strconv.FormatUint(uint64(st.Mode), 10), strconv.FormatUint(st.Rdev, 10))
			continue
		}
		// A user namespace may not make device nodes: the host's are bound.
		p.add(shared, "file", "", newRoot+"/dev/"+n, "438")
		p.hostBind("/dev/"+n, "/dev/"+n, attrDevNode)
	}
	p.add(shared, "mkdir", "", newRoot+"/dev/pts", "493")
	p.add(own, "mount", "devpts", newRoot+"/dev/pts", "devpts", strconv.Itoa(unix.MS_NOSUID|unix.MS_NOEXEC), "newinstance,ptmxmode=0666,mode=0620")
	p.add(shared, "symlink", "pts/ptmx", newRoot+"/dev/ptmx")
	ownDir("/dev/shm", "shm", "1023")
	for _, l := range [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}} {
		p.add(shared, "symlink", l[1], newRoot+"/dev/"+l[0])
	}

	// A fresh /proc for the job's pid namespace, with runc's masks.
	p.dirs("/proc")
	p.add(own, "mount", "proc", newRoot+"/proc", "proc", strconv.Itoa(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
	// The job's /proc has what the host's has: the same kernel.
	for _, m := range procMasked {
		p.maskProc("/proc/" + m)
	}
	for _, r := range procReadOnly {
		if _, err := os.Lstat("/proc/" + r); err == nil {
			p.add(own, "ro", "", newRoot+"/proc/"+r)
		}
	}

	// The job's own account files, unless the view binds the host's: an
	// empty file of the root, with a read-only bind of the job's on it.
	p.dirs("/etc")
	for _, f := range []struct {
		name, content string
		full, job     *int
	}{
		{"passwd", "", &p.full.passwd, &p.job.passwd}, // forJob fills the ids in
		{"group", "", &p.full.group, &p.job.group},
		{"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", nil, nil},
		{"nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n", nil, nil},
	} {
		if slices.Contains(v.RO, "/etc/"+f.name) || slices.Contains(v.RW, "/etc/"+f.name) {
			continue
		}
		if f.full == nil {
			p.add(shared, "file", "", newRoot+"/etc/"+f.name, "420", "", f.content) // 0644
			continue
		}
		p.add(shared, "file", "", newRoot+"/etc/"+f.name, "420")
		p.add(own, "file", "", f.name, "420")
		*f.full, *f.job = p.last()
		p.add(own, "bind", f.name, newRoot+"/etc/"+f.name, strconv.Itoa(attrRO))
	}

	// The host's paths, parents before children.
	type bind struct {
		path string
		attr int
	}
	var binds []bind
	for _, b := range v.RO {
		binds = append(binds, bind{b, attrRO})
	}
	for _, b := range v.RW {
		binds = append(binds, bind{b, attrRW})
	}
	slices.SortStableFunc(binds, func(x, y bind) int { return strings.Compare(x.path, y.path) })
	for _, b := range binds {
		if err := p.bind(b.path, b.attr); err != nil {
			return nil, err
		}
	}
	// The server's own files, wherever a bind shows them: a bind shows
	// its source's tree at its place in the view.
	type mask struct{ at, host string }
	var masks []mask
	for _, h := range p.hidden {
		for _, b := range p.bound {
			if !Within(h, b.src) {
				continue
			}
			at := filepath.Join(b.view, strings.TrimPrefix(h, b.src))
			// Under a tmpfs path the job sees its own empty dir instead.
			if !slices.ContainsFunc(v.Tmpfs, func(d string) bool { return Within(at, d) }) {
				masks = append(masks, mask{at, h})
			}
		}
	}
	for i, dir := range v.Tmpfs {
		if err := checkViewPath(dir); err != nil {
			return nil, fmt.Errorf("tmpfs %w", err)
		}
		// Inside a bind the plan makes no directories: the host's must be
		// there to mount on.
		for _, b := range p.bound {
			if Within(dir, b.view) {
				if st, err := os.Lstat(filepath.Join(b.src, strings.TrimPrefix(dir, b.view))); err != nil || !st.IsDir() {
					return nil, fmt.Errorf("tmpfs %s: it lies in the bound %s, which has no directory there to mount it on", dir, b.view)
				}
			}
		}
		// Under a mask the job sees the mask's empty dir: the tmpfs would
		// be out of sight, and the mask has no directory to mount it on.
		if slices.ContainsFunc(masks, func(m mask) bool { return Within(dir, m.at) }) {
			continue
		}
		ownDir(dir, "tmpfs"+strconv.Itoa(i), "1023")
	}
	for _, m := range masks {
		p.mask(m.at, m.host)
	}
	if v.Sys {
		p.dirs("/sys")
		// sysfs shows the mounter's network namespace: the job's own.
		p.add(own, "mount", "sysfs", newRoot+"/sys", "sysfs", strconv.Itoa(unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
	}
	p.add(shared, "setattr", "", newRoot, strconv.Itoa(unix.MOUNT_ATTR_RDONLY))
	p.add(shared, "enter", "", newRoot)
	t := &viewTemplate{full: p.full, job: p.job, sources: p.sources}
	if !p.notShared {
		t.root = p.root
	}
	return t, nil
}

// mask covers path in the view, if hostPath (what it shows) exists: a
// directory with an empty one, read-only, anything else with /dev/null.
// The masks are shared steps: the host's paths are the same for every job.
func (p *planner) mask(path, hostPath string) {
	st, err := os.Lstat(hostPath)
	switch {
	case err != nil: // nothing there to hide
	case st.IsDir():
		// An empty directory of mode 0 in the scratch, bound read-only
		// wherever a directory is masked.
		if !p.made[emptyDir] {
			p.add(shared, "mkdir", "", emptyDir, "0")
			p.made[emptyDir] = true
		}
		p.add(shared, "bind", emptyDir, newRoot+path, strconv.Itoa(attrMask))
	default:
		p.add(shared, "bind", oldRoot+"/dev/null", newRoot+path, strconv.Itoa(attrMask))
	}
}

// maskProc covers path, under the job's own /proc, as mask does: with an
// empty directory of its area, or the root's /dev/null.
func (p *planner) maskProc(path string) {
	st, err := os.Lstat(path)
	switch {
	case err != nil: // the kernel has none
	case st.IsDir():
		if !p.areaEmpty {
			p.add(own, "mkdir", "", areaEmpty, "0")
			p.areaEmpty = true
		}
		p.add(own, "bind", areaEmpty, newRoot+path, strconv.Itoa(attrMask))
	default:
		p.add(own, "bind", newRoot+"/dev/null", newRoot+path, strconv.Itoa(attrMask))
	}
}

// step says whose a step is: every job's of the view, or the job's own.
type step bool

const (
	shared step = false
	own    step = true
)

type planner struct {
	view      View
	hidden    []string        // view.Hide, symlinks resolved
	made      map[string]bool // directories the plan has made in the job's root
	bound     []boundPath     // host binds so far
	own       []string        // where the job's area is bound so far
	areaEmpty bool            // the area has its empty directory
	sources   []string        // host paths bound
	full, job opList
	root      []mountOp
	notShared bool // a shared step lands in the job's own mounts: no template
}

// boundPath is a bind of the host's src at view in the job's root.
type boundPath struct {
	view, src string
	attr      int
}

func (p *planner) add(whose step, kind string, args ...string) {
	var a [5]string
	copy(a[:], args)
	op := mountOp{kind, a[0], a[1], a[2], a[3], a[4]}
	p.full.ops = append(p.full.ops, op)
	if whose == own {
		op.a, op.b = inRoot(op.a), inRoot(op.b)
		p.job.ops = append(p.job.ops, op)
		return
	}
	p.root = append(p.root, op)
	if at, ok := strings.CutPrefix(op.b, newRoot); ok && slices.ContainsFunc(p.own, func(d string) bool { return Within(at, d) }) {
		p.notShared = true
	}
}

// last is the index of the last own step in full and in job.
func (p *planner) last() (full, job int) { return len(p.full.ops) - 1, len(p.job.ops) - 1 }

// inRoot is path as the job's own steps name it once the root is entered:
// /newroot/x is /x; the area's and other paths stay.
func inRoot(path string) string {
	if path == newRoot {
		return "/"
	}
	if rest, ok := strings.CutPrefix(path, newRoot+"/"); ok {
		return "/" + rest
	}
	return path
}

// hostBind binds the host's src at dst in the view with attr, a shared step.
func (p *planner) hostBind(src, dst string, attr int) {
	p.add(shared, "bind", oldRoot+src, newRoot+dst, strconv.Itoa(attr))
	p.sources = append(p.sources, src)
}

// inBind reports whether path lies at or below a bind made so far: it is
// then the host's, and exists if the host's does.
func (p *planner) inBind(path string) bool {
	for _, b := range p.bound {
		if Within(path, b.view) {
			return true
		}
	}
	return false
}

// reaches reports whether the host path real is at or below a path the
// view binds, hidden or not.
func (p *planner) reaches(real string) bool {
	for _, b := range append(slices.Clip(p.view.RO), p.view.RW...) {
		if Within(real, b) {
			return true
		}
	}
	return false
}

// dirs makes dir and its parents in the job's root, where neither the plan
// nor a bind has them yet.
func (p *planner) dirs(dir string) {
	if p.made[dir] || p.inBind(dir) {
		return
	}
	p.dirs(filepath.Dir(dir))
	p.add(shared, "mkdir", "", newRoot+dir, "493") // 0755
	p.made[dir] = true
}

// bind binds the host's path at the same place: a symlink becomes the same
// symlink, anything else is bound with attr.
func (p *planner) bind(path string, attr int) error {
	if err := checkViewPath(path); err != nil {
		return err
	}
	// A symlink in a parent is followed on the host, where the bind comes
	// from; the path itself keeps its place.
	dir, err := resolveTrusted(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	path = filepath.Join(dir, filepath.Base(path))
	if err := checkViewPath(path); err != nil {
		return err
	}
	if slices.ContainsFunc(p.hidden, func(h string) bool { return Within(path, h) }) {
		return fmt.Errorf("bind %s: it holds the server's own files, which no job may see", path)
	}
	if p.inBind(path) && attr == attrRO && !p.rwAbove(path) {
		return nil // already seen, read-only, through a bind above it
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	if st.Mode()&os.ModeSymlink != 0 {
		if p.inBind(path) {
			return nil // the bind above already holds the link
		}
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("bind %s: the symlink to %s: %w", path, target, err)
		}
		hidden := slices.ContainsFunc(p.hidden, func(h string) bool { return Within(real, h) })
		if p.reaches(real) || hidden || checkViewPath(real) != nil {
			// The same link, pointing into the view; or at something the
			// job must not see, which it then does not (masked, or absent);
			// or at what the sandbox makes itself (/proc, /dev, /sys, the
			// root), which the job's own answer.
			p.dirs(filepath.Dir(path))
			p.add(shared, "symlink", target, newRoot+path)
			return nil
		}
		// It points out of the view (/etc/resolv.conf into /run): what it
		// points at is bound in its place, if only root could have aimed
		// it there.
		if real, err = resolveTrusted(path); err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		if st, err = os.Stat(real); err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		return p.bindAt(real, path, st, attr)
	}
	return p.bindAt(path, path, st, attr)
}

// maxLinks is how many symlinks resolveTrusted follows, as the kernel does
// (ELOOP).
const maxLinks = 40

// resolveTrusted is path with its symlinks followed, like
// filepath.EvalSymlinks, but only through symlinks no one but root could
// have made or aimed: each lies in a directory root owns that no one else
// may write (or, sticky, the link is root's). A job, or a host user, who
// can write where a view's path lies cannot point the view elsewhere.
func resolveTrusted(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q: not an absolute path", path)
	}
	resolved, rest, links := "/", strings.Split(path, "/"), 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved) // resolved holds no symlinks
			continue
		}
		next := filepath.Join(resolved, name)
		st, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: %w", path, unix.ELOOP)
		}
		if err := trustedLink(resolved, next, st); err != nil {
			return "", err
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, nil
}

// trustedLink says why the symlink link, in dir, could have been aimed by
// someone other than root; nil if it could not.
func trustedLink(dir, link string, st os.FileInfo) error {
	var d unix.Stat_t
	if err := unix.Stat(dir, &d); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	owner := st.Sys().(*syscall.Stat_t).Uid
	switch {
	case d.Uid != 0:
		return fmt.Errorf("the symlink %s lies in %s, which uid %d owns and may aim anywhere: name its target instead", link, dir, d.Uid)
	case d.Mode&0o022 != 0 && (d.Mode&unix.S_ISVTX == 0 || owner != 0):
		return fmt.Errorf("the symlink %s lies in %s, which others may write: name its target instead", link, dir)
	}
	return nil
}

// bindAt binds the host's src, which st describes, at path in the view.
func (p *planner) bindAt(src, path string, st os.FileInfo, attr int) error {
	switch {
	case st.IsDir():
		p.dirs(path)
	default:
		p.dirs(filepath.Dir(path))
		if !p.inBind(path) {
			p.add(shared, "file", "", newRoot+path, "420")
		}
	}
	p.hostBind(src, path, attr)
	p.bound = append(p.bound, boundPath{view: path, src: src, attr: attr})
	return nil
}

// rwAbove: the nearest bind above path is read-write, so a read-only bind
// of path still changes what the job can do. Binds are made parents first,
// so the last one above path is the nearest.
func (p *planner) rwAbove(path string) bool {
	for i := len(p.bound) - 1; i >= 0; i-- {
		if b := p.bound[i]; Within(path, b.view) {
			return b.attr == attrRW
		}
	}
	return false
}

// checkViewPath refuses what a view may not bind or cover: a relative or
// unclean path, the root itself, and the trees the sandbox makes itself.
func checkViewPath(p string) error {
	switch {
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return fmt.Errorf("%q: not an absolute, clean path", p)
	case p == "/":
		return errors.New(`"/": that is the host's whole filesystem`)
	}
	for _, own := range []string{"/proc", "/dev", "/sys"} {
		if Within(p, own) {
			return fmt.Errorf("%q: the sandbox makes %s itself", p, own)
		}
	}
	return nil
}

// passwdFile is a job's /etc/passwd: root, nobody, and the job's user.
func passwdFile(uid, gid uint32, name string) string {
	s := "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	if uid != 0 && uid != 65534 {
		s += fmt.Sprintf("%s:x:%d:%d:chimirror job:/tmp:/bin/sh\n", name, uid, gid)
	}
	return s
}

// groupFile is a job's /etc/group: root, nogroup, and the job's group.
func groupFile(gid uint32, name string) string {
	s := "root:x:0:\nnogroup:x:65534:\n"
	if gid != 0 && gid != 65534 {
		s += fmt.Sprintf("%s:x:%d:\n", name, gid)
	}
	return s
}

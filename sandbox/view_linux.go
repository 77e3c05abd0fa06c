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
// mounts: it mounts the job's own tmpfs on /tmp and pivots into it, the
// host's tree then at /oldroot; builds the job's root at /newroot; and
// enters it, which detaches the host's tree. The rest of the job's tmpfs
// is bound into its root (/tmp, /var/tmp, /dev/shm, /run), so the
// scratch the root was built in is the job's own, and out of its sight.
type mountOp struct{ kind, a, b, c, d, e string }

const (
	oldRoot = "/oldroot"
	newRoot = "/newroot"
	// In the build area (the job's tmpfs), out of the job's sight: what
	// the job writes, and an empty directory that masked directories show.
	jobTmp   = "/job"
	emptyDir = "/empty"
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

// forJob is t's steps for a job running as uid:gid. The steps are shared
// but those it fills in: the caller must not change them.
func (t *viewTemplate) forJob(iso *Isolation, uid, gid uint32) []mountOp {
	ops := slices.Clone(t.ops)
	ops[t.run].c, ops[t.run].d = strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10)
	userName, groupName := cmp.Or(iso.UserName, "job"), cmp.Or(iso.GroupName, "job")
	if t.passwd >= 0 {
		ops[t.passwd].e = passwdFile(uid, gid, userName)
	}
	if t.group >= 0 {
		ops[t.group].e = groupFile(gid, groupName)
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
	p := &planner{made: map[string]bool{"/": true}, view: v}
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
	t := &viewTemplate{passwd: -1, group: -1}
	size := ""
	if iso.TmpSizeBytes > 0 {
		size = ",size=" + strconv.FormatInt(iso.TmpSizeBytes, 10)
	}
	// One tmpfs holds everything the job may write of its own, bound where
	// the job sees it: /tmp, /var/tmp, /dev/shm, /run and View.Tmpfs share
	// one size and one superblock (each superblock costs the job's exit a
	// teardown). The root is built in it.
	p.add("mount", "tmpfs", "/tmp", "tmpfs", strconv.Itoa(unix.MS_NOSUID|unix.MS_NODEV), "mode=0700"+size)
	p.add("mkdir", "", "/tmp"+oldRoot, "448") // 0700
	p.add("mkdir", "", "/tmp"+newRoot, "448")
	p.add("pivot", "/tmp", "/tmp"+oldRoot)
	// Not nodev: /dev is a directory of it. It is read-only once built.
	p.add("mount", "tmpfs", newRoot, "tmpfs", strconv.Itoa(unix.MS_NOSUID), "mode=0755,size=1m")
	p.add("mkdir", "", jobTmp, "493") // 0755
	own := func(dir, sub string, mode string) {
		p.add("mkdir", "", jobTmp+"/"+sub, mode)
		p.dirs(dir)
		p.add("bind", jobTmp+"/"+sub, newRoot+dir, strconv.Itoa(attrRW))
	}
	// First: a bind below /tmp lands inside the job's own /tmp.
	own("/tmp", "tmp", "1023") // 01777
	own("/var/tmp", "var-tmp", "1023")
	p.add("mkdir", "", jobTmp+"/run", "493")
	p.add("chown", "", jobTmp+"/run") // the job's own: forJob fills in its ids
	t.run = len(p.ops) - 1
	p.dirs("/run")
	p.add("bind", jobTmp+"/run", newRoot+"/run", strconv.Itoa(attrRW))

	// /dev: a directory of the root, read-only with it.
	p.dirs("/dev")
	for _, n := range devNodes {
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+n, &st); err != nil {
			return nil, fmt.Errorf("device /dev/%s: %w", n, err)
		}
		if !iso.UserNamespace { // the same node, made: cheaper than a bind
			p.add("mknod", "", newRoot+"/dev/"+n, strconv.FormatUint(uint64(st.Mode), 10), strconv.FormatUint(st.Rdev, 10))
			continue
		}
		// A user namespace may not make device nodes: the host's are bound.
		p.add("file", "", newRoot+"/dev/"+n, "438")
		p.add("bind", oldRoot+"/dev/"+n, newRoot+"/dev/"+n, strconv.Itoa(attrDevNode))
	}
	p.add("mkdir", "", newRoot+"/dev/pts", "493")
	p.add("mount", "devpts", newRoot+"/dev/pts", "devpts", strconv.Itoa(unix.MS_NOSUID|unix.MS_NOEXEC), "newinstance,ptmxmode=0666,mode=0620")
	p.add("symlink", "pts/ptmx", newRoot+"/dev/ptmx")
	own("/dev/shm", "shm", "1023")
	for _, l := range [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}} {
		p.add("symlink", l[1], newRoot+"/dev/"+l[0])
	}

	// A fresh /proc for the job's pid namespace, with runc's masks.
	p.dirs("/proc")
	p.add("mount", "proc", newRoot+"/proc", "proc", strconv.Itoa(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
	// The job's /proc has what the host's has: the same kernel.
	for _, m := range procMasked {
		p.mask("/proc/"+m, "/proc/"+m)
	}
	for _, r := range procReadOnly {
		if _, err := os.Lstat("/proc/" + r); err == nil {
			p.add("ro", "", newRoot+"/proc/"+r)
		}
	}

	// The job's own account files, unless the view binds the host's.
	p.dirs("/etc")
	for _, f := range []struct {
		name, content string
		index         *int
	}{
		{"passwd", "", &t.passwd}, // forJob fills the ids in
		{"group", "", &t.group},
		{"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", nil},
		{"nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n", nil},
	} {
		if slices.Contains(v.RO, "/etc/"+f.name) || slices.Contains(v.RW, "/etc/"+f.name) {
			continue
		}
		p.add("file", "", newRoot+"/etc/"+f.name, "420", "", f.content) // 0644
		if f.index != nil {
			*f.index = len(p.ops) - 1
		}
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
	for i, dir := range v.Tmpfs {
		if err := checkViewPath(dir); err != nil {
			return nil, fmt.Errorf("tmpfs %w", err)
		}
		// Inside a bind the plan makes no directories: the host's must be
		// there to mount on.
		for _, b := range p.bound {
			if within(dir, b.view) {
				if st, err := os.Lstat(filepath.Join(b.src, strings.TrimPrefix(dir, b.view))); err != nil || !st.IsDir() {
					return nil, fmt.Errorf("tmpfs %s: it lies in the bound %s, which has no directory there to mount it on", dir, b.view)
				}
			}
		}
		own(dir, "tmpfs"+strconv.Itoa(i), "1023")
	}
	// The server's own files, wherever a bind shows them: a bind shows
	// its source's tree at its place in the view.
	for _, h := range p.hidden {
		for _, b := range p.bound {
			if !within(h, b.src) {
				continue
			}
			at := filepath.Join(b.view, strings.TrimPrefix(h, b.src))
			// Under a tmpfs path the job sees its own empty dir instead.
			if !slices.ContainsFunc(v.Tmpfs, func(d string) bool { return within(at, d) }) {
				p.mask(at, h)
			}
		}
	}
	if v.Sys {
		p.dirs("/sys")
		p.add("mount", "sysfs", newRoot+"/sys", "sysfs", strconv.Itoa(unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
	}
	p.add("setattr", "", newRoot, strconv.Itoa(unix.MOUNT_ATTR_RDONLY))
	p.add("enter", "", newRoot)
	t.ops = p.ops
	return t, nil
}

// mask covers path in the view, if hostPath (what it shows) exists: a
// directory with an empty one, read-only, anything else with /dev/null.
func (p *planner) mask(path, hostPath string) {
	st, err := os.Lstat(hostPath)
	switch {
	case err != nil: // nothing there to hide
	case st.IsDir():
		// An empty directory of mode 0 in the build area, bound read-only
		// wherever a directory is masked.
		if !p.made[emptyDir] {
			p.add("mkdir", "", emptyDir, "0")
			p.made[emptyDir] = true
		}
		p.add("bind", emptyDir, newRoot+path, strconv.Itoa(attrMask))
	default:
		p.add("bind", oldRoot+"/dev/null", newRoot+path, strconv.Itoa(attrMask))
	}
}

type planner struct {
	view   View
	hidden []string // view.Hide, symlinks resolved
	ops    []mountOp
	made   map[string]bool // directories the plan has made in the job's root
	bound  []boundPath     // host binds so far
}

// boundPath is a bind of the host's src at view in the job's root.
type boundPath struct {
	view, src string
	attr      int
}

func (p *planner) add(kind string, args ...string) {
	var a [5]string
	copy(a[:], args)
	p.ops = append(p.ops, mountOp{kind, a[0], a[1], a[2], a[3], a[4]})
}

// inBind reports whether path lies at or below a bind made so far: it is
// then the host's, and exists if the host's does.
func (p *planner) inBind(path string) bool {
	for _, b := range p.bound {
		if within(path, b.view) {
			return true
		}
	}
	return false
}

// reaches reports whether the host path real is at or below a path the
// view binds, hidden or not.
func (p *planner) reaches(real string) bool {
	for _, b := range append(slices.Clip(p.view.RO), p.view.RW...) {
		if within(real, b) {
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
	p.add("mkdir", "", newRoot+dir, "493") // 0755
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
	if slices.ContainsFunc(p.hidden, func(h string) bool { return within(path, h) }) {
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
		hidden := slices.ContainsFunc(p.hidden, func(h string) bool { return within(real, h) })
		if p.reaches(real) || hidden || checkViewPath(real) != nil {
			// The same link, pointing into the view; or at something the
			// job must not see, which it then does not (masked, or absent);
			// or at what the sandbox makes itself (/proc, /dev, /sys, the
			// root), which the job's own answer.
			p.dirs(filepath.Dir(path))
			p.add("symlink", target, newRoot+path)
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
			p.add("file", "", newRoot+path, "420")
		}
	}
	p.add("bind", oldRoot+src, newRoot+path, strconv.Itoa(attr))
	p.bound = append(p.bound, boundPath{view: path, src: src, attr: attr})
	return nil
}

// rwAbove: the nearest bind above path is read-write, so a read-only bind
// of path still changes what the job can do. Binds are made parents first,
// so the last one above path is the nearest.
func (p *planner) rwAbove(path string) bool {
	for i := len(p.bound) - 1; i >= 0; i-- {
		if b := p.bound[i]; within(path, b.view) {
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
		if within(p, own) {
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

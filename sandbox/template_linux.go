package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Templates: a view's root built once and kept, so that a job's init does
// not build it again (issue 12, "Sandbox depth").
//
// Measured on the 2-vCPU VM (300 sandboxed cat sessions one at a time,
// before templates, p50): the init's clone and exec of the server binary
// 1.7 ms (with its page faults, 2.5 ms of CPU), building the root 1.0 ms
// on a quiet host and up to 4 ms on a busy one (its two pivot_roots each
// walk every thread on the host, chroot_fs_refs), the target's fork 0.5 ms;
// the mounts' own syscalls are 5–40 µs each. A template removes all of it
// but the target's fork from a job's setup.
//
// A template is a holder process (the C init's "sandbox-template" mode,
// see init_linux.c) in a mount namespace of its own, which runs the view's
// shared steps (planView) once and so stands inside the view's root: its
// mounts are the root, its host binds and its masks. For a job it clones
// the job's init with CLONE_PARENT (the init is the server's child, reaped
// and signalled as any) into new namespaces; CLONE_NEWNS gives the init a
// copy of the holder's mounts, private as the holder made them, in which
// it runs only the job's own steps (its area, /proc, devpts, sysfs, its
// account files) with no pivot_root. No exec: the init is a copy of the
// holder, already loaded.
//
// The template's root is read-only, and no step of a job writes into it:
// what a job writes lands in its own area. Copies share the root's tmpfs
// and the host binds with the holder and each other; a job has no
// capability to remount them and no sight of the holder (another pid and
// mount namespace).
//
// A template is used only where it gives the job the root it would have
// built itself: never for a user-namespaced job (its init could not join a
// mount namespace of the host's user namespace, nor mount in a copy of
// one), never with the Go init (a Go process cannot be cloned), never for
// a view whose shared steps land in the job's own mounts (planView's
// root is nil). It is rebuilt when it could differ from a fresh build: the
// view's plan changed (planned again every planTTL: symlinks retargeted,
// paths gone), a host path it binds is another file now (an app dir or
// ld.so.cache replaced by a rename), or the host's mount table changed
// (something mounted below a bound path). Holders are bounded
// (maxTemplates, the least recently used goes), end after templateIdle
// unused, and are owned by the Runner: its reaper reaps them and Close
// ends them.

// templateArg is argv[1] of a holder; only the C init answers it.
const templateArg = "sandbox-template"

const (
	// maxTemplates bounds the holders: about one per view in use.
	maxTemplates = 32
	// templateIdle ends a holder no job has used for this long.
	templateIdle = 10 * time.Minute
	// templateRetry: after a failed build, the view's jobs build their
	// own roots (and report why) this long before a template is tried again.
	templateRetry = planTTL
)

// templates are a Runner's templates, by viewKey.
type templates struct {
	mu sync.Mutex
	m  map[string]*nsTemplate
	// mountinfo is the server's /proc/self/mountinfo, polled for changes:
	// a raw fd, not an *os.File, whose registration with Go's poller
	// would poll it too and take the change for itself.
	mountinfo int
	watching  bool  // mountinfo is open
	unwatched error // why mountinfo could not be opened: no templates then
	closed    bool
}

// nsTemplate is one view's template; h is its holder, if it has one now.
type nsTemplate struct {
	used time.Time // under templates.mu

	mu     sync.Mutex // held to build it, to clone from it and to retire it
	gone   bool       // retired: out of the map, holds no holder
	h      *holder
	root   []mountOp // the shared steps h ran
	srcs   []fileID  // what the host paths h binds were when it started
	failed time.Time // when building root last failed
}

// fileID identifies a file: the same path naming another file is a change.
type fileID struct {
	path     string
	dev, ino uint64
}

// holder is a running holder process.
type holder struct {
	pid  int
	conn *net.UnixConn
	br   *bufio.Reader
	done chan struct{} // closed once the reaper has reaped it
}

// template returns iso's template, built from plan, locked for one clone
// (the caller unlocks t.mu), or nil when the job's init is to build its
// own root.
func (r *Runner) template(iso *Isolation, plan *viewTemplate) *nsTemplate {
	if !haveCInit || r.goInit || r.noTemplates || iso.UserNamespace || plan.root == nil {
		return nil
	}
	t, stale := r.tmpls.entry(viewKey(iso), r.log)
	retire(stale)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.gone { // retired since: this job builds its own
		t.mu.Unlock()
		return nil
	}
	if t.h != nil && !t.h.exited() && slices.Equal(t.root, plan.root) && sameFiles(t.srcs) {
		return t
	}
	if t.h != nil { // stale or dead: the next one replaces it
		t.h.close()
		t.h = nil
	}
	if slices.Equal(t.root, plan.root) && time.Since(t.failed) < templateRetry {
		t.mu.Unlock()
		return nil
	}
	// The files are looked at before the holder binds them: one replaced
	// in between shows as a change next time, never the other way round.
	srcs := fileIDs(plan.sources)
	h, err := r.startHolder(plan.root)
	t.root = plan.root
	if err != nil {
		t.failed = time.Now()
		t.mu.Unlock()
		if !errors.Is(err, ErrClosed) {
			r.log.Warn("build view template; its jobs build their own roots", "err", err, "retry_in", templateRetry)
		}
		return nil
	}
	t.h, t.srcs, t.failed = h, srcs, time.Time{}
	return t
}

// entry returns key's template, made if need be, and the templates that
// are to be retired: all of them once the host's mounts changed, those
// idle too long, and the least recently used beyond maxTemplates. It is
// nil once closed.
func (ts *templates) entry(key string, log *slog.Logger) (*nsTemplate, []*nsTemplate) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed || ts.unwatched != nil {
		return nil, nil
	}
	if ts.m == nil {
		ts.m = make(map[string]*nsTemplate)
	}
	var stale []*nsTemplate
	changed, err := ts.hostMountsChanged()
	if err != nil && !ts.watching {
		// A template that cannot tell a change of the host's mounts could
		// show a job a stale view: every job builds its own.
		ts.unwatched = err
		log.Warn("watch the host's mounts; no view templates", "err", err)
		for k, t := range ts.m {
			delete(ts.m, k)
			stale = append(stale, t)
		}
		return nil, stale
	}
	if err != nil {
		log.Warn("watch the host's mounts; templates are rebuilt", "err", err)
		changed = true
	}
	now := time.Now()
	for k, t := range ts.m {
		if changed || now.Sub(t.used) > templateIdle {
			delete(ts.m, k)
			stale = append(stale, t)
		}
	}
	t := ts.m[key]
	if t == nil {
		for len(ts.m) >= maxTemplates {
			var lru string
			for k, o := range ts.m {
				if lru == "" || o.used.Before(ts.m[lru].used) {
					lru = k
				}
			}
			stale = append(stale, ts.m[lru])
			delete(ts.m, lru)
		}
		t = &nsTemplate{}
		ts.m[key] = t
	}
	t.used = now
	return t, stale
}

// hostMountsChanged reports whether the server's mount table changed since
// the last call (the first call opens the watch and reports a change). A
// mount namespace's mountinfo polls with POLLPRI once per change.
func (ts *templates) hostMountsChanged() (bool, error) {
	if !ts.watching {
		fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return true, fmt.Errorf("open mountinfo: %w", err)
		}
		ts.mountinfo, ts.watching = fd, true
		return true, nil
	}
	fds := []unix.PollFd{{Fd: int32(ts.mountinfo), Events: unix.POLLPRI}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return true, fmt.Errorf("poll mountinfo: %w", err)
		}
		return n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0, nil
	}
}

// close retires every template for good and returns nothing to wait for:
// the Runner waits for its holders' reaping itself.
func (ts *templates) close() {
	ts.mu.Lock()
	ts.closed = true
	stale := make([]*nsTemplate, 0, len(ts.m))
	for _, t := range ts.m {
		stale = append(stale, t)
	}
	ts.m = nil
	fd, watching := ts.mountinfo, ts.watching
	ts.watching = false
	ts.mu.Unlock()
	retire(stale)
	if watching {
		closeFds(fd)
	}
}

// retire ends the templates' holders once no clone is in flight.
func retire(ts []*nsTemplate) {
	for _, t := range ts {
		t.mu.Lock()
		t.gone = true
		if t.h != nil {
			t.h.close()
			t.h = nil
		}
		t.mu.Unlock()
	}
}

// fileIDs identifies the files at paths, not following a last symlink
// (the binds do not either); a path that is gone is recorded as such.
func fileIDs(paths []string) []fileID {
	ids := make([]fileID, len(paths))
	for i, p := range paths {
		ids[i].path = p
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			ids[i].dev, ids[i].ino = st.Dev, st.Ino
		}
	}
	return ids
}

// sameFiles reports whether every path still names the file it did.
func sameFiles(ids []fileID) bool {
	for _, id := range ids {
		var st unix.Stat_t
		if unix.Lstat(id.path, &st) != nil || st.Dev != id.dev || st.Ino != id.ino {
			return false
		}
	}
	return true
}

// startHolder starts a holder that runs root, the shared steps of a view,
// and waits until it stands in the root. The reaper reaps it (Runner.aux);
// it ends at EOF on its socket (close) or with the server (Pdeathsig).
func (r *Runner) startHolder(root []mountOp) (_ *holder, retErr error) {
	msg := newInitMsg("template").num(uint64(len(root)))
	for _, op := range root {
		msg.str(op.kind).str(op.a).str(op.b).str(op.c).str(op.d).str(op.e)
	}
	b, err := msg.bytes()
	if err != nil {
		return nil, err
	}
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair for a template: %w", err)
	}
	defer closeFds(sp[1])
	f := os.NewFile(uintptr(sp[0]), "template")
	c, err := net.FileConn(f) // a dup: f is closed either way
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if c != nil {
			err = errors.Join(err, c.Close())
		}
		return nil, fmt.Errorf("template socket: %w", err)
	}
	conn := c.(*net.UnixConn)
	null, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open /dev/null: %w", err), conn.Close())
	}
	defer closeFds(null)
	attr := &syscall.ProcAttr{
		Files: []uintptr{uintptr(null), uintptr(null), uintptr(null), uintptr(sp[1])},
		Sys:   &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.Join(ErrClosed, conn.Close())
	}
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"chimirror-template", templateArg}, attr)
	if err != nil {
		r.mu.Unlock()
		return nil, errors.Join(fmt.Errorf("start template holder: %w", err), conn.Close())
	}
	h := &holder{pid: pid, conn: conn, br: bufio.NewReader(conn), done: make(chan struct{})}
	r.aux[pid] = h.done
	r.mu.Unlock()
	defer func() {
		if retErr != nil {
			h.kill()
		}
	}()
	if err := h.send(b, nil); err != nil {
		return nil, err
	}
	if _, err := h.reply("ready"); err != nil {
		return nil, err
	}
	return h, nil
}

// errNoInit marks a failed clone that made no init: the holder said why,
// or never had the whole request. The job's init may then be started
// without the template, with the same descriptors.
var errNoInit = errors.New("no init cloned")

// clone asks t's holder for a job's init (see the holder's conversation in
// init_linux.c): its fds 0–2 stdio, stdout and stdio, its fd 3 sync, born
// in the cgroup cgfd (v2; -1 on v1, where the caller places it). The
// caller holds t.mu and r.mu, so the reaper cannot see the init before it
// is registered. On any error the holder is done with (a refusal may
// recur: its jobs build their own roots for templateRetry); an error that
// is not errNoInit leaves unknown whether an init was made, which then
// finds its sync socket closed and exits.
func (t *nsTemplate) clone(newNet bool, stdio, stdout, sync, cgfd int) (int, error) {
	h := t.h
	flag := uint64(0)
	if newNet {
		flag = 1
	}
	b, err := newInitMsg("clone").num(flag).bytes()
	if err != nil {
		return 0, err
	}
	fds := []int{stdio, stdout, sync}
	if cgfd >= 0 {
		fds = append(fds, cgfd)
	}
	fail := func(err error) (int, error) {
		t.h, t.failed = nil, time.Now()
		h.kill()
		return 0, err
	}
	if err := h.send(b, unix.UnixRights(fds...)); err != nil {
		// Killed before it read all of it, the holder clones nothing.
		return fail(fmt.Errorf("%w: %w", errNoInit, err))
	}
	line, err := h.reply("pid ")
	if errors.Is(err, errHolderSaid) { // it says so before any clone, or when clone3 failed
		return fail(fmt.Errorf("%w: %w", errNoInit, err))
	}
	if err != nil {
		return fail(err)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "pid "))
	if err != nil || pid <= 0 {
		return fail(fmt.Errorf("template holder: bad reply %q", line))
	}
	return pid, nil
}

func (h *holder) send(b, oob []byte) error {
	if err := h.conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	n, _, err := h.conn.WriteMsgUnix(b, oob, nil)
	if err == nil && n < len(b) {
		_, err = h.conn.Write(b[n:])
	}
	if err != nil {
		return fmt.Errorf("send to template holder: %w", err)
	}
	return nil
}

// errHolderSaid marks the holder's own "error: …" reply.
var errHolderSaid = errors.New("template holder")

// reply reads the holder's next line, which must start with want; "error:
// …" becomes an error (errHolderSaid).
func (h *holder) reply(want string) (string, error) {
	if err := h.conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return "", err
	}
	line, err := h.br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("template holder gave no reply: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", fmt.Errorf("%w: %s", errHolderSaid, msg)
	}
	if !strings.HasPrefix(line, want) {
		return "", fmt.Errorf("template holder: got %q, want %q", line, want)
	}
	return line, nil
}

// exited reports whether the holder has been reaped.
func (h *holder) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// close ends the holder: it exits at EOF, and the reaper reaps it.
func (h *holder) close() {
	if err := h.conn.Close(); err != nil {
		slog.Warn("close template holder", "pid", h.pid, "err", err)
	}
}

// kill ends the holder at once.
func (h *holder) kill() {
	if err := syscall.Kill(h.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		slog.Warn("kill template holder", "pid", h.pid, "err", err)
	}
	h.close()
}

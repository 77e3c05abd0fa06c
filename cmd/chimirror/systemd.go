package main

// The two halves of systemd's protocol that `chimirror serve` speaks:
// socket activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES) and readiness notification (sd_notify(3):
// NOTIFY_SOCKET). Both are written out here rather than taken from
// go-systemd's activation and daemon packages, which are in the module
// graph: activation silently drops a descriptor that is not a listener
// and ignores malformed variables, where a misconfigured socket unit must
// stop the server with the reason; and daemon re-reads NOTIFY_SOCKET for
// every message, so the variable cannot be unset at start while later
// messages (RELOADING=1, STOPPING=1) still reach systemd, and it has no
// MONOTONIC_USEC= for reloads.

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// The names chimirror's listeners go by in LISTEN_FDNAMES: a socket
// unit's FileDescriptorName=.
const (
	fdNamePublic = "public"
	fdNameAdmin  = "admin"
)

// listenFDsStart is SD_LISTEN_FDS_START: the first descriptor passed.
const listenFDsStart = 3

// statusInterval is how often a STATUS= line with the running jobs is
// sent while serving (only when it changed).
const statusInterval = 5 * time.Second

// systemd is what the service manager handed this process: where its
// notifications go and the listeners it opened. The zero value (not
// started by systemd) sends nothing and passes no listener.
type systemd struct {
	log *slog.Logger
	// notify is NOTIFY_SOCKET's address; nil: notifications are off.
	notify *net.UnixAddr
	// public and admin are the listeners systemd passed, until the
	// server takes them (takeListener); nil: not passed, the server
	// opens its own from the config.
	public, admin net.Listener
	// lastStatus is the last STATUS= sent by status, which skips repeats.
	lastStatus string
}

// takeSystemd reads what systemd passed in the environment, unsets it, and
// adopts the passed listeners. The variables are unset so that nothing the
// server starts sees them (jobs get an environment of their own anyway,
// and an app's env allow-list, read after this, finds them unset). A
// malformed variable, or a descriptor that is not a listening TCP socket
// with a name chimirror knows, is an error: the socket unit needs fixing.
func takeSystemd(log *slog.Logger) (*systemd, error) {
	sd := &systemd{log: log}
	if addr := os.Getenv("NOTIFY_SOCKET"); addr != "" {
		if err := os.Unsetenv("NOTIFY_SOCKET"); err != nil {
			return nil, fmt.Errorf("unset NOTIFY_SOCKET: %w", err)
		}
		ua, err := notifyAddr(addr)
		if err != nil {
			return nil, err
		}
		sd.notify = ua
	}
	env := listenEnv{pid: os.Getenv("LISTEN_PID"), fds: os.Getenv("LISTEN_FDS"), names: os.Getenv("LISTEN_FDNAMES")}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if err := os.Unsetenv(k); err != nil {
			return nil, fmt.Errorf("unset %s: %w", k, err)
		}
	}
	names, ignored, err := env.parse(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	if ignored != "" {
		log.Warn("socket activation: the passed descriptors are not for this process; ignored", "why", ignored)
	}
	if len(names) == 0 {
		return sd, nil
	}
	// Before anything can fail or fork: these descriptors never reach a
	// child, whatever happens next.
	for i := range names {
		setCloseOnExec(listenFDsStart + i)
	}
	roles, err := fdRoles(names)
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	for i, role := range roles {
		fd := listenFDsStart + i
		ln, err := adoptListener(fd, role)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("socket activation: fd %d (%s): %w", fd, role, err), sd.close())
		}
		if role == fdNamePublic {
			sd.public = ln
		} else {
			sd.admin = ln
		}
	}
	return sd, nil
}

// notifyAddr is NOTIFY_SOCKET's address: a path, or an abstract socket
// name written with a leading "@" (Go's net package writes that as the
// abstract namespace's NUL).
func notifyAddr(s string) (*net.UnixAddr, error) {
	if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "@") {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want a socket path or an abstract socket name (@NAME), as sd_notify(3) takes", s)
	}
	return &net.UnixAddr{Name: s, Net: "unixgram"}, nil
}

// listenEnv is sd_listen_fds(3)'s variables, as found.
type listenEnv struct{ pid, fds, names string }

// parse gives the names of the descriptors passed to the process pid,
// one per descriptor from listenFDsStart ("" for a descriptor without a
// name), or none. Descriptors passed to another process (LISTEN_PID is
// not pid, or unset) are not this one's, as sd_listen_fds(3) has it: they
// are ignored, and ignored says why.
func (e listenEnv) parse(pid int) (names []string, ignored string, err error) {
	if e.fds == "" {
		return nil, "", nil
	}
	n, err := strconv.Atoi(e.fds)
	if err != nil || n < 0 {
		return nil, "", fmt.Errorf("LISTEN_FDS=%q: not a number of descriptors", e.fds)
	}
	if e.pid == "" {
		return nil, fmt.Sprintf("LISTEN_FDS=%s without LISTEN_PID", e.fds), nil
	}
	to, err := strconv.Atoi(e.pid)
	if err != nil || to <= 0 {
		return nil, "", fmt.Errorf("LISTEN_PID=%q: not a process id", e.pid)
	}
	if to != pid {
		return nil, fmt.Sprintf("LISTEN_PID=%d, and this is process %d", to, pid), nil
	}
	if n == 0 {
		return nil, "", nil
	}
	names = make([]string, n)
	if e.names != "" {
		given := strings.Split(e.names, ":")
		if len(given) != n {
			return nil, "", fmt.Errorf("LISTEN_FDNAMES=%q names %d descriptors, but LISTEN_FDS=%d", e.names, len(given), n)
		}
		copy(names, given)
	}
	return names, "", nil
}

// fdRoles says which listener each passed descriptor is, from its name:
// "public" or "admin" (FileDescriptorName= in its socket unit), and a
// lone descriptor without a name (LISTEN_FDNAMES unset, as
// systemd-socket-activate without --fdname passes it; sd_listen_fds(3)
// calls it "unknown") is the public one. Any other name, two descriptors
// for one listener, or several without names, is an error.
func fdRoles(names []string) ([]string, error) {
	roles := make([]string, len(names))
	seen := map[string]int{}
	for i, name := range names {
		fd := listenFDsStart + i
		role := name
		switch {
		case name == fdNamePublic || name == fdNameAdmin:
		case (name == "" || name == "unknown") && len(names) == 1:
			role = fdNamePublic
		case name == "" || name == "unknown":
			return nil, fmt.Errorf("%d descriptors passed and fd %d has no name: name each socket unit's with FileDescriptorName=%s or FileDescriptorName=%s",
				len(names), fd, fdNamePublic, fdNameAdmin)
		default:
			return nil, fmt.Errorf("fd %d is named %q, which is not a listener of chimirror's: name its socket unit's with FileDescriptorName=%s or FileDescriptorName=%s",
				fd, name, fdNamePublic, fdNameAdmin)
		}
		if prev, dup := seen[role]; dup {
			return nil, fmt.Errorf("fds %d and %d are both the %s listener: chimirror serves one socket for each (ListenStream=[::]:PORT takes IPv4 and IPv6 both)", prev, fd, role)
		}
		seen[role] = fd
		roles[i] = role
	}
	return roles, nil
}

// takeListener hands the passed listener for role ("public" or "admin") to
// the caller, which owns it from then on; nil when systemd passed none.
func (sd *systemd) takeListener(role string) net.Listener {
	p := &sd.public
	if role == fdNameAdmin {
		p = &sd.admin
	}
	ln := *p
	*p = nil
	if ln != nil {
		sd.log.Info("listening on a socket from systemd", "listener", role, "addr", ln.Addr().String())
	}
	return ln
}

// close closes the passed listeners no one took (the server stopped before
// it served them).
func (sd *systemd) close() error {
	var errs []error
	for _, ln := range []net.Listener{sd.public, sd.admin} {
		if ln != nil {
			errs = append(errs, ignoreClosed(ln.Close)())
		}
	}
	sd.public, sd.admin = nil, nil
	return errors.Join(errs...)
}

// sameListenAddr reports whether the listener at got is one the config's
// address want could have opened: the same port (any, for port 0 or a
// service name) and, when want's host is an IP address or empty (every
// address), the same address, where 0.0.0.0 and :: are one (a socket on
// [::] takes IPv4 too). A host name is not resolved: only its port counts.
func sameListenAddr(want string, got net.Addr) bool {
	ta, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	if p, err := strconv.Atoi(port); err == nil && p != 0 && p != ta.Port {
		return false
	}
	gotIP, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	gotIP = gotIP.Unmap()
	if host == "" {
		return gotIP.IsUnspecified()
	}
	wantIP, err := netip.ParseAddr(host)
	if err != nil {
		return true // a name: not resolved here
	}
	wantIP = wantIP.Unmap()
	if wantIP.IsUnspecified() || gotIP.IsUnspecified() {
		return wantIP.IsUnspecified() && gotIP.IsUnspecified()
	}
	return wantIP == gotIP
}

// warnElsewhere logs, for a listener systemd passed, that the config's
// address for it (or the --listen flag's) is not where it listens: the
// socket unit decides, and the config's address is not opened.
func (sd *systemd) warnElsewhere(role, key, want string, ln net.Listener) {
	if sameListenAddr(want, ln.Addr()) {
		return
	}
	sd.log.Warn("the socket systemd passed is not at the configured address: the socket unit decides, and "+key+" is not used",
		"listener", role, "socket", ln.Addr().String(), key, want)
}

// send sends one sd_notify(3) message of the given lines, when systemd
// listens for them. A message that cannot be sent is logged: the server
// goes on serving (systemd's timeouts decide what a missing READY=1 means).
func (sd *systemd) send(lines ...string) {
	if sd.notify == nil {
		return
	}
	if err := sd.sendErr(strings.Join(lines, "\n")); err != nil {
		sd.log.Warn("sd_notify failed", "addr", sd.notify.Name, "message", strings.Join(lines, " "), "err", err)
	}
}

// sendErr sends msg in one datagram from a socket of its own, as
// sd_notify(3) does: nothing outlives the message.
func (sd *systemd) sendErr(msg string) error {
	conn, err := net.DialUnix("unixgram", nil, sd.notify)
	if err != nil {
		return err
	}
	_, werr := conn.Write([]byte(msg))
	return errors.Join(werr, conn.Close())
}

// ready says the server accepts on both listeners (at start, and after a
// reload), with a status line.
func (sd *systemd) ready(status string) {
	sd.lastStatus = status
	sd.send("READY=1", "STATUS="+status)
}

// reloading says a reload began. MONOTONIC_USEC= is when, on
// CLOCK_MONOTONIC: systemd ≥ 253 (Type=notify-reload) needs it to match
// the message to the SIGHUP it sent.
func (sd *systemd) reloading() {
	lines := []string{"RELOADING=1", "STATUS=reloading"}
	if us, ok := monotonicUsec(); ok {
		lines = append(lines, "MONOTONIC_USEC="+strconv.FormatUint(us, 10))
	}
	sd.send(lines...)
}

// stopping says shutdown began.
func (sd *systemd) stopping(status string) {
	sd.send("STOPPING=1", "STATUS="+status)
}

// status sends a STATUS= line unless it is the last one sent.
func (sd *systemd) status(status string) {
	if status == sd.lastStatus {
		return
	}
	sd.lastStatus = status
	sd.send("STATUS=" + status)
}

// statusTicks ticks every statusInterval while notifications are on (nil
// otherwise: a channel that never fires). stop releases the ticker.
func (sd *systemd) statusTicks() (ticks <-chan time.Time, stop func()) {
	if sd.notify == nil {
		return nil, func() {}
	}
	t := time.NewTicker(statusInterval)
	return t.C, t.Stop
}

// servingStatus is the STATUS= line while serving.
func servingStatus(running int) string { return "serving; " + jobCount(running) + " running" }

// stoppingStatus is the STATUS= line with STOPPING=1.
func stoppingStatus(running int) string { return "stopping; ending " + jobCount(running) }

func jobCount(n int) string {
	if n == 1 {
		return "1 job"
	}
	return strconv.Itoa(n) + " jobs"
}

// emptyDataDir refuses --data-dir given as "": the unit's
// --data-dir=${STATE_DIRECTORY} under a systemd that does not set the
// variable, which would otherwise fall back to the config's data_dir.
func emptyDataDir(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data-dir" && f.Value.String() == "" {
			err = errors.New("--data-dir is empty (under systemd: is STATE_DIRECTORY set? StateDirectory= in the unit sets it)")
		}
	})
	return err
}

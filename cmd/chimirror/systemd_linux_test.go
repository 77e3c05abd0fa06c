package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// Ensure a passed descriptor becomes a listener only when it is what a
// socket unit with ListenStream=ADDRESS:PORT and Accept=no passes, and
// each other kind is refused with what it is.
func TestAdoptListener(t *testing.T) {
	// rawFD is a duplicate of f's descriptor that nothing in the test
	// owns: adoptListener closes it when it adopts it.
	rawFD := func(t *testing.T, open func() (*os.File, error)) int {
		t.Helper()
		f, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	tcpListener := func(t *testing.T, network, addr string) *net.TCPListener {
		t.Helper()
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.(*net.TCPListener)
	}
	tests := []struct {
		name string
		fd   func(t *testing.T) int
		err  string // "" for adopted
	}{
		{"tcp4 listener", func(t *testing.T) int { return rawFD(t, tcpListener(t, "tcp4", "127.0.0.1:0").File) }, ""},
		{"tcp6 listener", func(t *testing.T) int {
			ln, err := net.Listen("tcp6", "[::1]:0")
			if err != nil {
				t.Skip("no IPv6 loopback:", err)
			}
			t.Cleanup(func() { ln.Close() })
			return rawFD(t, ln.(*net.TCPListener).File)
		}, ""},
		{"udp socket", func(t *testing.T) int {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return rawFD(t, c.(*net.UDPConn).File)
		}, "not a stream socket"},
		{"unix listener", func(t *testing.T) int {
			ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return rawFD(t, ln.(*net.UnixListener).File)
		}, "not a TCP socket"},
		{"connected tcp socket (Accept=yes)", func(t *testing.T) int {
			ln := tcpListener(t, "tcp", "127.0.0.1:0")
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return rawFD(t, c.(*net.TCPConn).File)
		}, "not a listening socket"},
		{"regular file", func(t *testing.T) int { return rawFD(t, func() (*os.File, error) { return os.Open(os.DevNull) }) }, "not a socket"},
		{"closed descriptor", func(t *testing.T) int {
			fd := rawFD(t, func() (*os.File, error) { return os.Open(os.DevNull) })
			if err := unix.Close(fd); err != nil {
				t.Fatal(err)
			}
			return fd
		}, "not an open descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd := tt.fd(t)
			ln, err := adoptListener(fd, "public")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				if tt.name != "closed descriptor" {
					if err := unix.Close(fd); err != nil {
						t.Errorf("close fd %d after a refusal: %v (adoptListener closes only what it adopts)", fd, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
				t.Errorf("fd %d still open: the listener holds a duplicate, the passed one is closed", fd)
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout)); err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatalf("accept on the adopted listener: %v", err)
			}
			a.Close()
		})
	}
}

// notifyReader is a fake systemd notification socket: a unixgram socket
// in a test directory that reads the sender's credentials with each
// message.
type notifyReader struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newNotifyReader(t *testing.T) *notifyReader {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return &notifyReader{t: t, path: path, conn: conn}
}

// next reads one message: its KEY=VALUE lines, and the sender's pid.
func (r *notifyReader) next(timeout time.Duration) (map[string]string, int) {
	r.t.Helper()
	if err := r.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		r.t.Fatal(err)
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := r.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		r.t.Fatalf("no notification within %v: %v", timeout, err)
	}
	pid := 0
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if cred, err := unix.ParseUnixCredentials(&msgs[0]); err == nil {
			pid = int(cred.Pid)
		}
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(string(buf[:n]), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			r.t.Fatalf("notification line %q is not KEY=VALUE (message %q)", line, buf[:n])
		}
		fields[k] = v
	}
	return fields, pid
}

// expect reads until a message that is not only STATUS= (those come every
// few seconds while serving), and requires it to hold key=1, from pid.
func (r *notifyReader) expect(key string, pid int, timeout time.Duration) map[string]string {
	r.t.Helper()
	for {
		m, from := r.next(timeout)
		if from != pid {
			r.t.Fatalf("notification %v from pid %d, want the server's, %d (NotifyAccess=main)", m, from, pid)
		}
		if _, status := m["STATUS"]; status && len(m) == 1 {
			continue
		}
		if m[key] != "1" {
			r.t.Fatalf("notification %v, want %s=1 next", m, key)
		}
		return m
	}
}

// activation is the systemd side of a server started with sockets: its
// environment and the descriptors it passes, from fd 3 on.
type activation struct {
	files  []*os.File
	names  string // LISTEN_FDNAMES; "" leaves it unset
	notify string // NOTIFY_SOCKET; "" leaves it unset
	pid    string // LISTEN_PID; "" is the server's own, as systemd sets it
}

// startActivated runs `chimirror serve ARGS...` as systemd would with a:
// its descriptors at fd 3 on and LISTEN_PID its own pid. systemd sets
// LISTEN_PID between fork and exec; here a shell does, then execs the
// server (the pid stays).
func startActivated(t *testing.T, dir string, a activation, args ...string) *proc {
	t.Helper()
	pid := `"$$"`
	if a.pid != "" {
		pid = a.pid
	}
	script := `export LISTEN_PID=` + pid + `; exec "$0" "$@"`
	p := startProcWith(t, "/bin/sh", dir, nil, func(cmd *exec.Cmd) {
		cmd.ExtraFiles = a.files
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(a.files)))
		if a.names != "" {
			cmd.Env = append(cmd.Env, "LISTEN_FDNAMES="+a.names)
		}
		if a.notify != "" {
			cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+a.notify)
		}
	}, append([]string{"-c", script, chimirrorBin, "serve"}, args...)...)
	for _, f := range a.files {
		f.Close() // the server has its copies
	}
	return p
}

// socketFile opens a listener on addr and returns its socket as a file to
// pass, and where it listens; the test's own listener is closed.
func socketFile(t *testing.T, network, addr string) (*os.File, string) {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := c.(*net.UDPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		return f, c.LocalAddr().String()
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return f, ln.Addr().String()
}

// monotonicNow is CLOCK_MONOTONIC in microseconds.
func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	us, ok := monotonicUsec()
	if !ok {
		t.Fatal("no CLOCK_MONOTONIC")
	}
	return us
}

// Ensure `chimirror serve` started as systemd starts a Type=notify service
// with socket activation takes both listeners from the passed descriptors
// (by FileDescriptorName), serves through the edge on them, keeps the
// systemd variables from its jobs, and notifies READY=1 once both answer,
// RELOADING=1 (with MONOTONIC_USEC) then READY=1 around SIGHUP, and
// STOPPING=1 at SIGTERM, every message from its own pid; then exits 0.
func TestServeSystemdActivation(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `sandbox = "off"
[[app]]
name = "echo"
command = ["cat"]
[[app]]
name = "env"
command = ["env"]
env = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"]
`)
	notify := newNotifyReader(t)
	// Admin first: the names, not the order, say which is which.
	adminFile, adminAddr := socketFile(t, "tcp", "127.0.0.1:0")
	publicFile, publicAddr := socketFile(t, "tcp", "127.0.0.1:0")
	p := startActivated(t, dir, activation{files: []*os.File{adminFile, publicFile}, names: "admin:public", notify: notify.path},
		"--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	pid := p.cmd.Process.Pid

	ready := notify.expect("READY", pid, startTimeout)
	if !strings.HasPrefix(ready["STATUS"], "serving") {
		t.Errorf("READY=1 with STATUS=%q, want serving…", ready["STATUS"])
	}
	// At READY=1 both listeners answer at once.
	if status, _, _ := httpGet(t, "http://"+publicAddr+"/"); status != http.StatusOK {
		t.Errorf("test page on the passed public socket: %d", status)
	}
	if status, _, _ := httpGet(t, "http://"+adminAddr+"/api/v1/healthz"); status != http.StatusOK {
		t.Errorf("healthz on the passed admin socket: %d", status)
	}
	log := p.stderr.String()
	for _, want := range []string{
		"chimirror: test page at http://" + publicAddr + "/",
		"chimirror: operator console at http://" + adminAddr + "/",
		// The config's own addresses (the defaults) are not opened, and the log says so.
		`listener=public socket=` + publicAddr + ` listen=127.0.0.1:8080`,
		`listener=admin socket=` + adminAddr + ` admin_listen=127.0.0.1:8081`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	linesEcho(t, "ws://"+publicAddr+"/apps/echo")
	// The edge's listener wrapper holds on the passed socket: net/http
	// answers OPTIONS * itself, so only the framing listener refuses it.
	raw, err := net.DialTimeout("tcp", publicAddr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprint(raw, "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(raw).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Errorf("both framings on the passed socket: %q %v, want 400", line, err)
	}
	// A job sees none of systemd's variables, even allow-listed.
	c := dialWS(t, "ws://"+publicAddr+"/apps/env")
	var env []string
	for {
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		_, m, err := c.ReadMessage()
		if err != nil {
			if _, ok := err.(*websocket.CloseError); !ok {
				t.Fatalf("env job: %v", err)
			}
			break
		}
		env = append(env, string(m))
	}
	if !strings.Contains(strings.Join(env, "\n"), "GATEWAY_INTERFACE=") {
		t.Errorf("env job printed no environment: %q", env)
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			t.Errorf("a job got %s", kv)
		}
	}

	before := monotonicNow(t)
	p.signal(syscall.SIGHUP)
	reloading := notify.expect("RELOADING", pid, ioTimeout)
	us, err := strconv.ParseUint(reloading["MONOTONIC_USEC"], 10, 64)
	if err != nil || us < before || us > monotonicNow(t) {
		t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want a time between the SIGHUP (%d) and now", reloading["MONOTONIC_USEC"], before)
	}
	notify.expect("READY", pid, ioTimeout)
	if _, ok := p.stderr.waitMatch(regexp.MustCompile(`msg=reloaded`), ioTimeout, p.done); !ok {
		t.Errorf("no reload logged:\n%s", p.stderr)
	}

	p.signal(syscall.SIGTERM)
	notify.expect("STOPPING", pid, ioTimeout)
	if code := p.wait(startTimeout); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0\n%s", code, p.stderr)
	}
}

// Ensure a socket unit that does not fit stops the server before it
// serves, saying what is wrong; and descriptors meant for another process
// are left alone, the server opening its own listeners.
func TestServeSystemdActivationRefused(t *testing.T) {
	tests := []struct {
		name string
		// sockets: network and address of each passed descriptor.
		sockets [][2]string
		names   string
		pid     string
		want    string // a regexp stderr matches, and exit 1; "": ignored
	}{
		{"unknown name", [][2]string{{"tcp", "127.0.0.1:0"}}, "web", "",
			`socket activation: fd 3 is named "web"`},
		{"default unit name", [][2]string{{"tcp", "127.0.0.1:0"}, {"tcp", "127.0.0.1:0"}}, "chimirror.socket:chimirror-admin.socket", "",
			`fd 3 is named "chimirror\.socket", which is not a listener of chimirror's: name its socket unit's with FileDescriptorName=public or FileDescriptorName=admin`},
		{"datagram socket", [][2]string{{"udp", "127.0.0.1:0"}}, "public", "",
			`socket activation: fd 3 \(public\): not a stream socket`},
		{"admin off loopback", [][2]string{{"tcp", "127.0.0.1:0"}, {"tcp", "0.0.0.0:0"}}, "public:admin", "",
			`the admin socket systemd passed \(FileDescriptorName=admin\): "(0\.0\.0\.0|\[::\]):\d+" is not loopback`},
		{"names and descriptors disagree", [][2]string{{"tcp", "127.0.0.1:0"}, {"tcp", "127.0.0.1:0"}}, "public", "",
			`LISTEN_FDNAMES="public" names 1 descriptors, but LISTEN_FDS=2`},
		{"another process's", [][2]string{{"tcp", "127.0.0.1:0"}}, "public", "1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\n[[app]]\nname = \"echo\"\ncommand = [\"cat\"]\n")
			a := activation{names: tt.names, pid: tt.pid}
			// fd 3 is sockets[0] (the fd the wants name), and so on.
			for _, s := range tt.sockets {
				f, _ := socketFile(t, s[0], s[1])
				a.files = append(a.files, f)
			}
			p := startActivated(t, dir, a, "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
				"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
			if tt.want == "" { // ignored: the server listens where the flags say
				if _, ok := p.stderr.waitMatch(addrRe, startTimeout, p.done); !ok {
					t.Fatalf("no address line:\n%s", p.stderr)
				}
				if log := p.stderr.String(); !strings.Contains(log, "LISTEN_PID=1, and this is process") ||
					strings.Contains(log, "listening on a socket from systemd") {
					t.Errorf("descriptors for another process: want them ignored with a warning:\n%s", log)
				}
				return
			}
			if code := p.wait(startTimeout); code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, p.stderr)
			}
			if log := p.stderr.String(); !regexp.MustCompile(tt.want).MatchString(log) {
				t.Errorf("stderr does not match %q:\n%s", tt.want, log)
			}
		})
	}
}

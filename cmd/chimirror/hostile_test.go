package main

// The hostile-tenant suite: two tenants, alice and bob, share one real
// server and try what a tenant on a shared host would try against the host
// and against each other. Each row is one attack; it must be refused.
//
// The operator here makes the worst mistake on purpose: the apps' dir is the
// directory that holds the config, the policy dir, the data dir and a copy
// of the server's binary, so those are only hidden if the sandbox hides them.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/sandbox"
)

// secretMarker is written into every server file a job must not read.
const secretMarker = "chimirror-hostile-secret-7d1f"

type hostileRig struct {
	t      *testing.T
	srv    *server
	dir    string            // the config's directory, the apps' dir
	tokens map[string]string // tenant name → token
}

func newHostileRig(t *testing.T) *hostileRig {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		t.Skipf("the hostile-tenant suite needs sandboxed jobs (root and cgroups): %v", err)
	}
	// Outside /tmp, as an operator's app dir would be, and readable by
	// anyone.
	dir, err := os.MkdirTemp("/var/tmp", "chimirror-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The server runs from a copy of its binary inside the apps' dir.
	bin := filepath.Join(dir, "bin", "chimirror")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chimirrorBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, append(b, []byte(secretMarker)...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policies.d", "userns.toml"), "# "+secretMarker+"\nuser_namespace = true\nmemory = \"256MiB\"\npids = 64\n")
	// A drop dir every job of policy "writer" may write, as operators
	// make them, holding the dir of app "site".
	shared := filepath.Join(dir, "shared")
	if err := os.MkdirAll(filepath.Join(shared, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(shared, "site", "index.html"), "site\n")
	// Another tenant's files, readable by all, in no job's view.
	if err := os.MkdirAll(filepath.Join(dir, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "other", "secret.txt"), secretMarker+"\n")
	if err := os.Chmod(filepath.Join(dir, "other", "secret.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policies.d", "writer.toml"), fmt.Sprintf("rw = [%q]\n", shared))
	// Policy "reader" binds the shared dir's site; each of its jobs' roots
	// is built at its start: no prepared sandbox built before a swap.
	writeFile(t, filepath.Join(dir, "policies.d", "reader.toml"), fmt.Sprintf("ro = [%q]\ninitiators = 0\n", filepath.Join(shared, "site")))
	tokens := map[string]string{"alice": "alice-token-" + secretMarker, "bob": "bob-token-" + secretMarker}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cfg := writeFile(t, filepath.Join(dir, "chimirror.toml"), fmt.Sprintf(`# %s
sandbox = "on"
data_dir = "var"
policy_dir = "policies.d"

[[tenant]]
name = "alice"
token_sha256 = "%s"

[[tenant]]
name = "bob"
token_sha256 = "%s"

[[app]]
name = "sh"
command = ["sh"]
dir = "."
env = ["PATH"]

[[app]]
name = "sh-nodir"
command = ["sh"]
env = ["PATH"]

[[app]]
name = "sh-userns"
command = ["sh"]
dir = "."
env = ["PATH"]
policy = "userns"

[[app]]
name = "writer"
command = ["sh"]
env = ["PATH"]
policy = "writer"

[[app]]
name = "site"
command = ["sh"]
env = ["PATH"]
policy = "reader"
`, secretMarker, sum(tokens["alice"]), sum(tokens["bob"])))
	p := startProcBin(t, bin, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", cfg)
	m, ok := p.stderr.waitMatch(addrRe, startTimeout, p.done)
	if !ok {
		t.Fatalf("%s: no address line\nstderr:\n%s", p.name, p.stderr)
	}
	// The first run writes the admin token into the data dir, as a log would.
	if err := os.WriteFile(filepath.Join(dir, "var", "server.log"), []byte("admin token "+secretMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &hostileRig{t: t, srv: &server{proc: p, addr: m[1]}, dir: dir, tokens: tokens}
}

// probe is one job of one tenant, run over chimirror.v1: the script is its
// stdin.
type probe struct {
	t      *testing.T
	ws     *websocket.Conn
	ID     string
	stdout strings.Builder
	stderr strings.Builder
	exit   *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
}

// start runs script as tenant's job of app and, if until is set, reads its
// output until that line has come (the job keeps running).
func (h *hostileRig) start(tenant, app, script, until string, hdr http.Header) *probe {
	h.t.Helper()
	p, refused := h.tryStart(tenant, app, script, until, hdr)
	if p == nil {
		h.t.Fatalf("%s: dial %s: %s", tenant, app, refused)
	}
	return p
}

// tryStart is start, but a job the server refuses to start is no failure:
// it returns nil and the refusal (the handshake's status and body).
func (h *hostileRig) tryStart(tenant, app, script, until string, hdr http.Header) (_ *probe, refused string) {
	h.t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Authorization", "Bearer "+h.tokens[tenant])
	d := websocket.Dialer{HandshakeTimeout: ioTimeout, Subprotocols: []string{"chimirror.v1"}}
	ws, resp, err := d.Dial(h.srv.url("ws", "/apps/"+app), hdr)
	if err != nil {
		if resp == nil {
			h.t.Fatalf("%s: dial %s: %v", tenant, app, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Sprintf("%v %s: %s", err, resp.Status, body)
	}
	h.t.Cleanup(func() { ws.Close() })
	p := &probe{t: h.t, ws: ws}
	for _, ev := range []map[string]string{{"event": "/stdin", "data": script + "\n"}, {"event": "/stdin/close"}} {
		if err := ws.WriteJSON(ev); err != nil {
			h.t.Fatalf("%s: send script: %v", tenant, err)
		}
	}
	if until != "" {
		for !strings.Contains(p.stdout.String(), until+"\n") {
			if !p.next(runTimeout) {
				h.t.Fatalf("%s job %s ended before %q:\nstdout:\n%s\nstderr:\n%s", tenant, p.ID, until, &p.stdout, &p.stderr)
			}
		}
	}
	return p, ""
}

// run runs script as tenant's job of app to its end.
func (h *hostileRig) run(tenant, app, script string, hdr http.Header) *probe {
	h.t.Helper()
	p := h.start(tenant, app, script, "", hdr)
	p.wait()
	return p
}

// next reads one event; false once the session is over.
func (p *probe) next(timeout time.Duration) bool {
	p.t.Helper()
	if err := p.ws.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		p.t.Fatal(err)
	}
	_, msg, err := p.ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			p.t.Fatalf("job %s: read: %v", p.ID, err)
		}
		return false
	}
	var ev struct {
		Event    string          `json:"event"`
		Data     json.RawMessage `json:"data"`
		Encoding string          `json:"encoding"`
	}
	if err := json.Unmarshal(msg, &ev); err != nil {
		p.t.Fatalf("bad event %q: %v", msg, err)
	}
	text := func() string {
		var s string
		if err := json.Unmarshal(ev.Data, &s); err != nil {
			p.t.Fatalf("event %s: %v", ev.Event, err)
		}
		if ev.Encoding == "base64" {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				p.t.Fatal(err)
			}
			s = string(b)
		}
		return s
	}
	switch ev.Event {
	case "/job":
		var j struct{ ID string }
		if err := json.Unmarshal(ev.Data, &j); err != nil {
			p.t.Fatal(err)
		}
		p.ID = j.ID
	case "/stdout":
		p.stdout.WriteString(text())
	case "/stderr":
		p.stderr.WriteString(text())
	case "/exit":
		if err := json.Unmarshal(ev.Data, &p.exit); err != nil {
			p.t.Fatal(err)
		}
	}
	return true
}

// wait reads the job's output until its session ends.
func (p *probe) wait() {
	p.t.Helper()
	for p.next(runTimeout) {
	}
	if p.exit == nil {
		p.t.Fatalf("job %s: no /exit event\nstdout:\n%s\nstderr:\n%s", p.ID, &p.stdout, &p.stderr)
	}
}

// stop ends a running probe by closing its socket and reads what is left.
func (p *probe) stop() {
	p.t.Helper()
	if err := p.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(ioTimeout)); err != nil {
		p.t.Fatalf("job %s: close: %v", p.ID, err)
	}
	for p.next(runTimeout) {
	}
}

func (p *probe) out() string { return p.stdout.String() }

// lines returns the job's stdout lines that start with prefix, without it.
func (p *probe) field(prefix string) string {
	for _, l := range strings.Split(p.out(), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

func (p *probe) mustContain(wants ...string) {
	p.t.Helper()
	for _, w := range wants {
		if !strings.Contains(p.out(), w) {
			p.t.Errorf("job %s: output lacks %q:\nstdout:\n%s\nstderr:\n%s", p.ID, w, p.out(), &p.stderr)
		}
	}
}

func (p *probe) mustNotContain(bads ...string) {
	p.t.Helper()
	for _, b := range bads {
		if strings.Contains(p.out(), b) || strings.Contains(p.stderr.String(), b) {
			p.t.Errorf("job %s: output holds %q:\nstdout:\n%s\nstderr:\n%s", p.ID, b, p.out(), &p.stderr)
		}
	}
}

// perl is a one-line perl program for a probe script, single-quoted.
func perl(prog string) string { return "perl -e '" + prog + "'" }

// errnoOf is perl printing NAME=ok or NAME=errno for a syscall's result.
const errnoOf = `sub r { my ($n, $v) = @_; print "$n=", ($v < 0 ? ($!+0) : "ok"), "\n" } `

func TestHostileTenants(t *testing.T) {
	h := newHostileRig(t)

	t.Run("the root is a fresh read-only tmpfs holding only the view", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh", `echo "fs $(stat -f -c %T /)"; touch /probe 2>/dev/null && echo "wrote /probe"; touch /usr/probe 2>/dev/null && echo "wrote /usr/probe"; echo "top $(ls / | tr '\n' ' ')"`, nil)
		p.mustContain("fs tmpfs\n")
		p.mustNotContain("wrote /probe", "wrote /usr/probe")
		top := strings.Fields(p.field("top "))
		for _, d := range top {
			if !slices.Contains([]string{"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "tmp", "usr", "var"}, d) {
				t.Errorf("/ holds %q, which is not part of the job's view (all: %v)", d, top)
			}
		}
	})

	t.Run("host files out of sight", func(t *testing.T) {
		h.t = t
		wd, err := os.Getwd() // the checkout
		if err != nil {
			t.Fatal(err)
		}
		p := h.run("alice", "sh", `echo "cmdline $(wc -c < /proc/cmdline)"; for d in /sys/class/net /root /home /var/log /opt /etc/ssh `+wd+`; do ls "$d" >/dev/null 2>&1 && echo "sees $d"; done; cat /etc/shadow 2>/dev/null | head -1; echo done`, nil)
		p.mustContain("cmdline 0\n", "done\n")
		p.mustNotContain("sees ", "root:")
	})

	t.Run("the server's files hidden", func(t *testing.T) {
		h.t = t
		// A masked file keeps its name, with nothing in it; a masked
		// directory is empty.
		p := h.run("alice", "sh", `for f in chimirror.toml var/ledger.db var/admin.token var/server.log policies.d/userns.toml bin/chimirror `+h.dir+`/chimirror.toml; do cat "$f" 2>/dev/null | grep -a -c `+secretMarker+`; done; ls -A var policies.d 2>/dev/null; cat /proc/1/exe 2>/dev/null | grep -a -c `+secretMarker+`; echo done`, nil)
		p.mustContain("done\n")
		p.mustNotContain("admin.token", "ledger.db", "userns.toml", "server.log")
		for _, l := range strings.Split(strings.TrimSpace(p.out()), "\n") {
			if l != "0" && l != "done" && l != "" {
				t.Errorf("a server file is readable from the job: %q\n%s", l, p.out())
			}
		}
	})

	t.Run("the working directory is not the server's", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh-nodir", `echo "cwd $(pwd)"`, nil)
		if cwd := p.field("cwd "); cwd != "/" {
			t.Errorf("a job without dir starts in %q, want /", cwd)
		}
	})

	t.Run("no shared directories between tenants", func(t *testing.T) {
		h.t = t
		dirs := []string{"/tmp", "/var/tmp", "/dev/shm", "/run", "/run/lock"}
		a := h.start("alice", "sh", `for d in `+strings.Join(dirs, " ")+`; do echo alice > "$d/alice-was-here" 2>/dev/null && echo "wrote $d"; done; echo held; exec sleep 60`, "held", nil)
		b := h.run("bob", "sh", `for d in `+strings.Join(dirs, " ")+`; do f="$d/alice-was-here"; if [ -e "$f" ]; then echo "sees $d"; cat "$f"; echo bob >> "$f" && echo "appended $d"; rm "$f" && echo "removed $d"; fi; done; echo done`, nil)
		b.mustContain("done\n")
		b.mustNotContain("sees ", "alice\n")
		a.stop()
	})

	t.Run("a job's /dev/shm dies with it", func(t *testing.T) {
		h.t = t
		name := fmt.Sprintf("chimirror-hostile-%d", time.Now().UnixNano())
		p := h.run("alice", "sh", `head -c 16M /dev/zero > /dev/shm/`+name+` && echo written`, nil)
		p.mustContain("written\n")
		if _, err := os.Stat("/dev/shm/" + name); err == nil {
			os.Remove("/dev/shm/" + name)
			t.Errorf("16 MiB a job left in /dev/shm outlived it, on the host")
		}
	})

	t.Run("the keyring", func(t *testing.T) {
		h.t = t
		// add_key(2) into the user keyring (-4), then keyctl(2)
		// KEYCTL_SEARCH from the next job of another tenant.
		a := h.run("alice", "sh", perl(errnoOf+`my ($t, $d, $p) = ("user", "hostile-probe", "secret"); r("add_key", syscall(248, $t, $d, $p, 6, -4));`), nil)
		b := h.run("bob", "sh", perl(errnoOf+`my ($t, $d) = ("user", "hostile-probe"); r("search", syscall(250, 10, -4, $t, $d, 0));`), nil)
		if got := a.field("add_key="); got != "1" { // EPERM
			t.Errorf("add_key: %q, want EPERM (1)\n%s%s", got, a.out(), &a.stderr)
		}
		if got := b.field("search="); got == "ok" {
			t.Errorf("bob found alice's key")
		}
	})

	t.Run("inotify exhaustion across tenants", func(t *testing.T) {
		h.t = t
		a := h.start("alice", "sh", perl(`my $n = 0; $n++ while syscall(294, 0) >= 0; print "held $n\n"; $| = 1; print "held\n"; sleep 60;`), "held", nil)
		b := h.run("bob", "sh", perl(errnoOf+`r("inotify", syscall(294, 0));`), nil)
		if got := b.field("inotify="); got != "ok" {
			t.Errorf("bob's inotify_init1 failed (errno %s) while alice holds %s instances", got, a.field("held "))
		}
		a.stop()
	})

	t.Run("inotify exhaustion across user-namespaced tenants and the host", func(t *testing.T) {
		h.t = t
		// The kernel charges a user namespace's counts to its owner on the
		// host too: every job's must be its own, not root's.
		a := h.start("alice", "sh-userns", perl(`my $n = 0; $n++ while syscall(294, 0) >= 0; print "held $n\n"; $| = 1; print "held\n"; sleep 60;`), "held", nil)
		b := h.run("bob", "sh-userns", perl(errnoOf+`r("inotify", syscall(294, 0));`), nil)
		if got := b.field("inotify="); got != "ok" {
			t.Errorf("bob's inotify_init1 failed (errno %s) while alice holds %s instances", got, a.field("held "))
		}
		fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
		if err != nil {
			t.Errorf("the host's root cannot make an inotify instance while alice holds %s: %v", a.field("held "), err)
		} else {
			syscall.Close(fd)
		}
		a.stop()
	})

	t.Run("every running job is a uid of its own", func(t *testing.T) {
		h.t = t
		a := h.start("alice", "sh", `echo "uid $(id -u)"; echo held; exec sleep 60`, "held", nil)
		b := h.run("bob", "sh", `echo "uid $(id -u)"`, nil)
		if ua, ub := a.field("uid "), b.field("uid "); ua == "" || ua == ub {
			t.Errorf("alice's job is uid %q, bob's %q: want two different ids", ua, ub)
		}
		a.stop()
	})

	t.Run("user namespaces are disjoint host ranges", func(t *testing.T) {
		h.t = t
		a := h.start("alice", "sh-userns", `echo "map $(cat /proc/self/uid_map)"; echo held; exec sleep 60`, "held", nil)
		b := h.run("bob", "sh-userns", `echo "map $(cat /proc/self/uid_map)"`, nil)
		ma, mb := strings.Fields(a.field("map ")), strings.Fields(b.field("map "))
		if len(ma) != 3 || len(mb) != 3 {
			t.Fatalf("uid maps %q and %q", a.out(), b.out())
		}
		if ma[1] == mb[1] {
			t.Errorf("two running user-namespaced jobs share host ids from %s", ma[1])
		}
		a.stop()
	})

	t.Run("a seccomp filter", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh", `grep Seccomp: /proc/self/status`, nil)
		p.mustContain("Seccomp:\t2\n")
	})

	t.Run("unshare -r", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh", `unshare -r id -u 2>/dev/null && echo "user namespace made"; echo done`, nil)
		p.mustContain("done\n")
		p.mustNotContain("user namespace made")
	})

	t.Run("mount", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh", `unshare -rm sh -c 'mount -t tmpfs none /tmp && echo mounted' 2>/dev/null; `+perl(errnoOf+`my ($s, $d, $t) = ("none", "/tmp", "tmpfs"); r("mount", syscall(165, $s, $d, $t, 0, 0));`), nil)
		p.mustNotContain("mounted")
		if got := p.field("mount="); got != "1" {
			t.Errorf("mount(2): %q, want EPERM (1)", got)
		}
	})

	t.Run("io_uring and perf_event_open", func(t *testing.T) {
		h.t = t
		// io_uring_setup(8, params); perf_event_open of a software clock
		// on ourselves, user space only.
		p := h.run("alice", "sh", perl(errnoOf+`my $p = "\0" x 120; r("io_uring", syscall(425, 8, $p));
			my $a = pack("LLQ", 1, 128, 0) . "\0" x 24 . pack("Q", 96) . "\0" x 80; r("perf", syscall(298, $a, 0, -1, -1, 0));`), nil)
		for _, k := range []string{"io_uring=", "perf="} {
			if got := p.field(k); got != "1" {
				t.Errorf("%s%q, want EPERM (1)\n%s%s", k, got, p.out(), &p.stderr)
			}
		}
	})

	t.Run("a shared dir's path swapped for a symlink", func(t *testing.T) {
		h.t = t
		shared := filepath.Join(h.dir, "shared")
		site := filepath.Join(shared, "site")
		t.Cleanup(func() {
			if _, err := os.Lstat(site + ".old"); err == nil {
				if err := os.Remove(site); err != nil {
					t.Error(err)
				}
				if err := os.Rename(site+".old", site); err != nil {
					t.Error(err)
				}
			}
		})
		// bob's job shows what its dir holds; the server's files, another
		// tenant's or the host's /proc must not be what it holds.
		look := `cd ` + site + ` && cat index.html 2>/dev/null; grep -a -l ` + secretMarker + ` secret.txt other/secret.txt 2>/dev/null && echo LEAK
			if [ -e 1/cmdline ]; then [ "$(tr '\0' ' ' <1/cmdline)" = "$(tr '\0' ' ' </proc/1/cmdline)" ] || echo HOST-PROC; fi; echo done`
		b := h.run("bob", "site", look, nil) // its view's plan is cached now
		b.mustContain("site\n", "done\n")
		// Refused, with the reason, or run seeing nothing it should not.
		victim := func() {
			t.Helper()
			b, refused := h.tryStart("bob", "site", look, "", nil)
			if b == nil {
				t.Logf("bob's job refused: %s", refused)
				return
			}
			b.wait()
			b.mustNotContain("LEAK", "HOST-PROC")
		}
		plant := func(target string) {
			t.Helper()
			a := h.run("alice", "writer", `cd `+shared+` && { [ -L site ] || mv site site.old; } && rm -f site && ln -s `+target+` site && echo planted`, nil)
			a.mustContain("planted\n")
		}
		other := filepath.Join(h.dir, "other")
		for _, target := range []string{other, "/proc", "/oldroot" + h.dir, "/oldroot" + other} {
			plant(target)
			victim() // the plan cached before the swap
		}
		// And planned anew, once the cached plan has expired.
		for _, target := range []string{other, "/proc"} {
			plant(target)
			time.Sleep(5*time.Second + 200*time.Millisecond)
			victim()
		}
	})

	t.Run("a minimal /dev", func(t *testing.T) {
		h.t = t
		p := h.run("alice", "sh", `echo "dev $(ls /dev | tr '\n' ' ')"; echo "pts $(ls /dev/pts | tr '\n' ' ')"; for d in /dev/fuse /dev/net/tun /dev/kmsg /dev/vda; do test -e $d && echo "sees $d"; done; echo done`, nil)
		p.mustContain("done\n")
		p.mustNotContain("sees ")
		for _, d := range strings.Fields(p.field("dev ")) {
			if !slices.Contains([]string{"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}, d) {
				t.Errorf("/dev holds %q", d)
			}
		}
		if pts := strings.Fields(p.field("pts ")); !slices.Equal(pts, []string{"ptmx"}) {
			t.Errorf("/dev/pts holds %v, want a new instance (only ptmx)", pts)
		}
	})

	t.Run("the cgroup of another job", func(t *testing.T) {
		h.t = t
		a := h.start("alice", "sh", `echo held; exec sleep 60`, "held", nil)
		b := h.run("bob", "sh", `cat /proc/self/cgroup; ls -R /sys/fs/cgroup 2>/dev/null | grep -c `+a.ID+`; echo done`, nil)
		b.mustContain("done\n")
		for _, l := range strings.Split(strings.TrimSpace(b.out()), "\n") {
			if strings.Contains(l, ":") && !strings.HasSuffix(l, ":/") {
				t.Errorf("the job sees its place in the host's cgroups: %q", l)
			}
			if l != "0" && !strings.Contains(l, ":") && l != "done" {
				t.Errorf("bob's job sees alice's cgroup: %q", l)
			}
		}
		a.stop()
	})

	t.Run("request headers that are secrets or redirect", func(t *testing.T) {
		h.t = t
		hdr := http.Header{}
		hdr.Set("Proxy", "http://evil.example:3128")
		hdr.Set("Cookie", "session="+secretMarker)
		hdr.Set("Proxy-Authorization", "Basic "+secretMarker)
		p := h.run("alice", "sh", `env | grep -E '^HTTP_' | sort; echo done`, hdr)
		p.mustContain("done\n")
		p.mustNotContain("HTTP_PROXY=", "HTTP_COOKIE=", "HTTP_AUTHORIZATION=", "HTTP_PROXY_AUTHORIZATION=", secretMarker)
	})
}

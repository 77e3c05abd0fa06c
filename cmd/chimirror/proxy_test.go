package main

// The trusted-proxies test: Debian's nginx in front of a real server, set
// up as the README's "chimirror behind nginx" says. Every process runs on
// loopback, so clients are told apart by their source address: nginx
// connects to chimirror from 127.0.0.1, the only trusted proxy, and the
// test's clients come from 127.0.0.2, .3 and .4 (all of 127/8 is
// loopback on Linux), which chimirror must not trust.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/internal/testpki"
)

// findNginx returns Debian's nginx, or skips the test with one line (fails
// it in CI, where make deps has installed it).
func findNginx(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nginx", "/usr/sbin/nginx"} { // /usr/sbin is not on every PATH
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "nginx not installed: make deps installs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// nginxLocation is the README's proxy block: the WebSocket upgrade passed
// on, the Host kept (the same-origin rule compares it with Origin), the
// client's address appended to X-Forwarded-For, the scheme set, and a
// client's own Forwarded removed (chimirror would read it first).
// proxy_bind is the test's: it pins nginx's source to the trusted address.
const nginxLocation = `
        location / {
            proxy_pass http://@UPSTREAM@;
            proxy_bind 127.0.0.1;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Forwarded "";
            proxy_read_timeout 1h;
        }
`

// nginxConf keeps every file nginx writes in @DIR@; daemon off is given
// on the command line. One process (no master): its pid is the test's to
// signal, and it needs no user to drop to for the temporary directory.
var nginxConf = `
master_process off;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log info;
events { worker_connections 64; }
http {
    access_log @DIR@/access.log;
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    default_type application/octet-stream;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    server {
        listen @PUBLIC@;
        listen @TLS@ ssl;
        ssl_certificate @DIR@/cert.pem;
        ssl_certificate_key @DIR@/key.pem;
` + nginxLocation + `
    }

    server {
        listen @ADMIN@;
` + strings.ReplaceAll(nginxLocation, "@UPSTREAM@", "@ADMIN_UPSTREAM@") + `
    }
}
`

// nginxProxy is a running nginx in front of one chimirror.
type nginxProxy struct {
	public, tls, admin string // host:port of each of its listeners
	roots              *x509.CertPool
}

// startNginx runs nginx in front of srv: its public listener over HTTP and
// HTTPS, its admin listener over HTTP. nginx is stopped when the test ends.
func startNginx(t *testing.T, srv *server) *nginxProxy {
	t.Helper()
	bin := findNginx(t)
	dir := t.TempDir()
	roots := writeTestCert(t, dir)
	errLog := filepath.Join(dir, "error.log")
	// The ports are free when picked, not when nginx binds them: another
	// test may take one meanwhile, so a start that lost that race is
	// tried again.
	for attempt := 1; ; attempt++ {
		ports := freeLoopbackAddrs(t, 3)
		n := &nginxProxy{public: ports[0], tls: ports[1], admin: ports[2], roots: roots}
		conf := strings.NewReplacer("@DIR@", dir, "@PUBLIC@", n.public, "@TLS@", n.tls, "@ADMIN@", n.admin,
			"@UPSTREAM@", srv.addr, "@ADMIN_UPSTREAM@", srv.admin).Replace(nginxConf)
		confPath := writeFile(t, filepath.Join(dir, "nginx.conf"), conf)
		if err := os.Remove(errLog); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err) // an earlier attempt's: only this one's is read below
		}
		p := startProcBin(t, bin, dir, nil, "-p", dir, "-c", confPath, "-e", errLog, "-g", "daemon off;")
		p.name = "nginx"
		err := n.waitReady(p)
		if err == nil {
			return n
		}
		log, rerr := os.ReadFile(errLog)
		if rerr != nil {
			t.Fatalf("nginx: %v; and its error log: %v", err, rerr)
		}
		if p.exited() && attempt < 3 && strings.Contains(string(log), "Address already in use") {
			continue
		}
		t.Fatalf("nginx: %v\nstderr:\n%s\nerror log:\n%s", err, p.stderr, log)
	}
}

// waitReady waits until every listener of n answers as nginx (not as
// whoever may have taken its port).
func (n *nginxProxy) waitReady(p *proc) error {
	c := newClient(p.t, "127.0.0.1", n.roots)
	deadline := time.Now().Add(startTimeout)
	for _, url := range []string{"http://" + n.public + "/", "https://" + n.tls + "/", "http://" + n.admin + "/"} {
		for {
			resp, err := c.http.Get(url)
			if err == nil {
				server := resp.Header.Get("Server")
				if cerr := resp.Body.Close(); cerr != nil {
					return fmt.Errorf("GET %s: %w", url, cerr)
				}
				if !strings.HasPrefix(server, "nginx") {
					return fmt.Errorf("GET %s: answered by %q, not nginx", url, server)
				}
				break
			}
			if p.exited() {
				return fmt.Errorf("exited (%v) before it served %s", p.waitErr, url)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("GET %s: %w", url, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// freeLoopbackAddrs returns n distinct 127.0.0.1 addresses that were free
// a moment ago.
func freeLoopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return addrs
}

// writeTestCert writes a certificate for 127.0.0.1 and its key as
// dir/cert.pem and dir/key.pem, and returns a pool that trusts it.
func writeTestCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca := testpki.NewCA(t, "chimirror proxy test")
	certPEM, keyPEM := ca.Server(t, 1)
	testpki.WriteFile(t, dir, "cert.pem", certPEM)
	testpki.WriteFile(t, dir, "key.pem", keyPEM)
	return ca.Pool()
}

// client is one source address: its HTTP and WebSocket connections all
// come from ip, and trust the test's certificate.
type client struct {
	ip   string
	http *http.Client
	ws   *websocket.Dialer
}

func newClient(t *testing.T, ip string, roots *x509.CertPool) client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: ioTimeout}
	tlsConf := &tls.Config{RootCAs: roots}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsConf}
	t.Cleanup(tr.CloseIdleConnections)
	return client{
		ip:   ip,
		http: &http.Client{Transport: tr, Timeout: ioTimeout},
		ws:   &websocket.Dialer{NetDialContext: d.DialContext, TLSClientConfig: tlsConf, HandshakeTimeout: ioTimeout},
	}
}

// runEnv runs app "env" at url with the text-lines protocol, sending hdr,
// and returns the job's variables and the address the client dialled from.
func (c client) runEnv(t *testing.T, url string, hdr http.Header) (env map[string]string, local string) {
	t.Helper()
	ws, resp, err := c.ws.Dial(url, hdr)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s from %s: %v %s", url, c.ip, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	env = make(map[string]string)
	if err := ws.SetReadDeadline(time.Now().Add(runTimeout)); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) { // the job has ended
			return env, ws.LocalAddr().String()
		}
		if err != nil {
			t.Fatalf("read from %s: %v", url, err)
		}
		if k, v, ok := strings.Cut(string(msg), "="); ok {
			env[k] = v
		}
	}
}

// get is GET url with a bearer token: the status and headers.
func (c client) get(t *testing.T, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, c.ip, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s from %s: read body: %v", url, c.ip, err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestProxy_Nginx: behind nginx, the client's own address is its job's
// REMOTE_ADDR, its ledger record's remote_addr and what the admin login
// limiter counts; nginx's https is the job's HTTPS; and headers forged to
// nginx or straight to chimirror change nothing.
func TestProxy_Nginx(t *testing.T) {
	t.Parallel()
	findNginx(t) // skip before starting a server
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `sandbox = "off"
data_dir = "data"
trusted_proxies = ["127.0.0.1/32"]
[[app]]
name = "env"
command = ["env"]
env = ["PATH"]
`)
	srv := startServer(t, dir, "--config", cfg)
	ngx := startNginx(t, srv)
	tok, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	alice, bob := newClient(t, "127.0.0.2", ngx.roots), newClient(t, "127.0.0.3", ngx.roots)
	operator := newClient(t, "127.0.0.4", ngx.roots)

	forged := http.Header{
		"X-Forwarded-For":   {"203.0.113.9"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=198.51.100.9;proto=https"},
	}
	tests := []struct {
		name      string
		from      client
		url       string
		hdr       http.Header
		wantHTTPS string
		direct    bool // not through nginx: REMOTE_PORT is the client's
	}{
		{name: "through nginx", from: alice, url: "ws://" + ngx.public + "/apps/env",
			// As a browser sends it: the same-origin rule holds through nginx.
			hdr: http.Header{"Origin": {"http://" + ngx.public}}, wantHTTPS: "off"},
		{name: "through nginx over TLS", from: bob, url: "wss://" + ngx.tls + "/apps/env",
			hdr: http.Header{"Origin": {"https://" + ngx.tls}}, wantHTTPS: "on"},
		{name: "headers forged to nginx", from: alice, url: "ws://" + ngx.public + "/apps/env", hdr: forged, wantHTTPS: "off"},
		{name: "headers forged straight to chimirror", from: alice, url: "ws://" + srv.addr + "/apps/env", hdr: forged,
			wantHTTPS: "off", direct: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, local := tc.from.runEnv(t, tc.url, tc.hdr)
			wantPort := ""
			if tc.direct {
				var err error
				if _, wantPort, err = net.SplitHostPort(local); err != nil {
					t.Fatal(err)
				}
			}
			if env["REMOTE_ADDR"] != tc.from.ip || env["REMOTE_PORT"] != wantPort || env["HTTPS"] != tc.wantHTTPS {
				t.Errorf("REMOTE_ADDR=%q REMOTE_PORT=%q HTTPS=%q; want %q, %q, %q",
					env["REMOTE_ADDR"], env["REMOTE_PORT"], env["HTTPS"], tc.from.ip, wantPort, tc.wantHTTPS)
			}
			id := env["CHIMIRROR_JOB_ID"]
			if id == "" {
				t.Fatalf("no CHIMIRROR_JOB_ID in the job's environment %v", env)
			}
			waitRecorded(t, srv, id)
			status, _, body := operator.get(t, "http://"+ngx.admin+"/api/v1/jobs/"+id, token)
			var out struct{ Job accounting.Record }
			if status != http.StatusOK {
				t.Fatalf("GET job %s through nginx: %d %s", id, status, body)
			}
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatalf("job %s: %v\n%s", id, err, body)
			}
			host, port, err := net.SplitHostPort(out.Job.RemoteAddr)
			if err != nil || host != tc.from.ip || port != wantPort {
				t.Errorf("ledger remote_addr %q (%v), want host %s, port %q", out.Job.RemoteAddr, err, tc.from.ip, wantPort)
			}
		})
	}

	t.Run("admin login limiter counts each client", func(t *testing.T) {
		api := "http://" + ngx.admin + "/api/v1/jobs"
		const wrong = "not-the-admin-token"
		for i := range 5 {
			if status, _, body := alice.get(t, api, wrong); status != http.StatusUnauthorized {
				t.Fatalf("wrong token %d from %s: %d %s, want 401", i+1, alice.ip, status, body)
			}
		}
		if status, _, body := alice.get(t, api, token); status != http.StatusOK {
			t.Errorf("the right token from %s after 5 wrong ones: %d %s, want 200", alice.ip, status, body)
		}
		status, hdr, body := alice.get(t, api, wrong)
		if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Errorf("a sixth wrong token from %s: %d Retry-After %q %s, want 429 with Retry-After", alice.ip, status, hdr.Get("Retry-After"), body)
		}
		if status, _, body := bob.get(t, api, token); status != http.StatusOK {
			t.Errorf("the right token from %s: %d %s, want 200 (not locked out by %s)", bob.ip, status, body, alice.ip)
		}
		if status, _, body := bob.get(t, api, wrong); status != http.StatusUnauthorized {
			t.Errorf("a wrong token from %s: %d %s, want 401 (not locked out by %s)", bob.ip, status, body, alice.ip)
		}
	})
}

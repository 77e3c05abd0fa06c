package main

// End-to-end tests of TLS on both listeners: the real binary, real clients
// (chimirror connect and jobs among them), real certificates made here.

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/testpki"
)

// tlsRig is a config dir holding a server certificate (serial 1) and its
// key as cert.pem and key.pem, their CA as ca.pem, and a client CA
// (client-ca.pem) with one client's certificate (client.pem,
// client-key.pem).
type tlsRig struct {
	dir          string
	ca, clientCA *testpki.CA
}

func newTLSRig(t *testing.T) *tlsRig {
	t.Helper()
	r := &tlsRig{dir: t.TempDir(), ca: testpki.NewCA(t, "test CA"), clientCA: testpki.NewCA(t, "test client CA")}
	r.writeServer(t, "cert.pem", "key.pem", 1)
	testpki.WriteFile(t, r.dir, "ca.pem", r.ca.PEM)
	testpki.WriteFile(t, r.dir, "client-ca.pem", r.clientCA.PEM)
	cert, key := r.clientCA.Client(t, 100, "operator")
	testpki.WriteFile(t, r.dir, "client.pem", cert)
	testpki.WriteFile(t, r.dir, "client-key.pem", key)
	return r
}

// writeServer writes a server certificate with serial, and its key.
func (r *tlsRig) writeServer(t *testing.T, certName, keyName string, serial int64) {
	t.Helper()
	cert, key := r.ca.Server(t, serial)
	testpki.WriteFile(t, r.dir, certName, cert)
	testpki.WriteFile(t, r.dir, keyName, key)
}

// clientConfig trusts the rig's CA; with a client certificate when
// withCert.
func (r *tlsRig) clientConfig(t *testing.T, withCert bool) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: r.ca.Pool()}
	if withCert {
		kp, err := tls.LoadX509KeyPair(filepath.Join(r.dir, "client.pem"), filepath.Join(r.dir, "client-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}

// The startup lines, either scheme: TLS tests check which.
var (
	anyAddrRe  = regexp.MustCompile(`chimirror: test page at (https?)://([^/\s]+)/\S*; apps at (wss?)://\S+?/apps/\{[^}]*\}`)
	anyAdminRe = regexp.MustCompile(`chimirror: operator console at (https?)://([^/\s]+)/`)
)

// startTLSServer is startServer for a server whose listeners may be TLS:
// it checks that both startup lines name https and wss.
func startTLSServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	p := startProc(t, dir, nil, append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
	m, ok := p.stderr.waitMatch(anyAddrRe, startTimeout, p.done)
	if !ok {
		t.Fatalf("%s: no address line (exited: %v)\nstderr:\n%s", p.name, p.exited(), p.stderr)
	}
	am, ok := p.stderr.waitMatch(anyAdminRe, startTimeout, p.done)
	if !ok {
		t.Fatalf("%s: no admin address line\nstderr:\n%s", p.name, p.stderr)
	}
	if m[1] != "https" || m[3] != "wss" || am[1] != "https" {
		t.Errorf("startup lines name %s, %s and %s, want https, wss and https:\n%s", m[1], m[3], am[1], p.stderr)
	}
	return &server{proc: p, addr: m[2], admin: am[2]}
}

// waitLogged waits until re has matched the server's log n times.
func waitLogged(t *testing.T, srv *server, re string, n int) {
	t.Helper()
	all := regexp.MustCompile(`(?s)(?:.*?` + re + `){` + strconv.Itoa(n) + `}`)
	if _, ok := srv.stderr.waitMatch(all, ioTimeout, srv.done); !ok {
		t.Fatalf("%q not logged %d times:\n%s", re, n, srv.stderr)
	}
}

// peerSerial is the serial of the certificate a new connection to addr
// gets.
func peerSerial(t *testing.T, addr string, cfg *tls.Config) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

const tlsEchoApp = "[[app]]\nname = \"echo\"\ncommand = [\"cat\"]\n"

// Ensure both listeners serve TLS from tls_cert and tls_key (paths from
// the config's directory), that chimirror connect runs a session over wss
// trusting --ca, and that what TLS refuses is refused: an untrusted
// certificate, plain HTTP, TLS below 1.2, HTTP/2.
func TestTLSConnect(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	cfg := writeFile(t, filepath.Join(rig.dir, "c.toml"), "sandbox = \"off\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n"+tlsEchoApp)
	cwd := t.TempDir() // not the config's directory: its paths are the file's
	srv := startTLSServer(t, cwd, "--config", cfg)

	t.Run("connect", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name       string
			args       []string
			wantCode   int
			wantStdout string
			wantStderr []string // substrings
		}{
			{name: "wss with --ca", args: []string{"--ca", filepath.Join(rig.dir, "ca.pem"), "wss://" + srv.addr + "/apps/echo"},
				wantCode: 0, wantStdout: "hello\nwörld\n"},
			{name: "https URL with --ca", args: []string{"--ca", filepath.Join(rig.dir, "ca.pem"), "https://" + srv.addr + "/apps/echo"},
				wantCode: 0, wantStdout: "hello\nwörld\n"},
			{name: "untrusted without --ca", args: []string{"wss://" + srv.addr + "/apps/echo"},
				wantCode: 255, wantStderr: []string{"certificate signed by unknown authority", "--ca"}},
			{name: "plain ws to the TLS port", args: []string{"ws://" + srv.addr + "/apps/echo"}, wantCode: 255},
			{name: "a --ca that is not PEM", args: []string{"--ca", filepath.Join(rig.dir, "c.toml"), "wss://" + srv.addr + "/apps/echo"},
				wantCode: 1, wantStderr: []string{"--ca", "c.toml", "no PEM certificate"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				stdout, stderr, code := runCLI(t, cwd, []byte("hello\nwörld\n"), append([]string{"connect"}, tc.args...)...)
				if code != tc.wantCode || stdout != tc.wantStdout {
					t.Errorf("exit %d, stdout %q; want %d, %q; stderr:\n%s", code, stdout, tc.wantCode, tc.wantStdout, stderr)
				}
				for _, w := range tc.wantStderr {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr lacks %q:\n%s", w, stderr)
					}
				}
			})
		}
	})

	t.Run("protocol versions", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name     string
			min, max uint16
			ok       bool
		}{
			{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
			{"TLS 1.1", tls.VersionTLS11, tls.VersionTLS11, false},
			{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
		}
		for _, tc := range tests {
			for _, addr := range []string{srv.addr, srv.admin} {
				t.Run(tc.name+" "+addr, func(t *testing.T) {
					cfg := rig.clientConfig(t, false)
					cfg.MinVersion, cfg.MaxVersion = tc.min, tc.max
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
					if err == nil {
						defer c.Close()
					}
					if (err == nil) != tc.ok {
						t.Errorf("handshake error %v, want accepted: %v", err, tc.ok)
					}
				})
			}
		}
	})

	t.Run("HTTP/1.1 only", func(t *testing.T) {
		t.Parallel()
		cfg := rig.clientConfig(t, false)
		cfg.NextProtos = []string{"h2", "http/1.1"}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", srv.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1", p)
		}
		tr := &http.Transport{TLSClientConfig: rig.clientConfig(t, false), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: ioTimeout}).Get("https://" + srv.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
			t.Errorf("GET /: %s over %s, want 200 over HTTP/1.1", resp.Status, resp.Proto)
		}
	})
}

// Ensure SIGHUP swaps the certificate for new connections while a session
// opened before goes on; that broken files keep the old certificate, with
// the reason logged; and that the server reloads from the paths it
// started with, naming changed paths as needing a restart.
func TestTLSReloadCertificate(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	path := filepath.Join(rig.dir, "c.toml")
	conf := func(cert, key string) string {
		return "sandbox = \"off\"\ntls_cert = \"" + cert + "\"\ntls_key = \"" + key + "\"\n" + tlsEchoApp
	}
	writeFile(t, path, conf("cert.pem", "key.pem"))
	srv := startTLSServer(t, rig.dir, "--config", path)
	roots := rig.clientConfig(t, false)
	d := websocket.Dialer{TLSClientConfig: roots, HandshakeTimeout: ioTimeout}
	session, _, err := d.Dial("wss://"+srv.addr+"/apps/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	echo := func(line string) {
		t.Helper()
		if err := session.WriteMessage(websocket.TextMessage, []byte(line)); err != nil {
			t.Fatalf("the session opened before the reloads: %v", err)
		}
		if _, m := readWS(t, session); string(m) != line {
			t.Fatalf("the session opened before the reloads: sent %q, got %q", line, m)
		}
	}
	echo("before")
	serials := func(want int64) {
		t.Helper()
		for _, addr := range []string{srv.addr, srv.admin} {
			if got := peerSerial(t, addr, roots); got != want {
				t.Errorf("%s: certificate serial %d, want %d", addr, got, want)
			}
		}
	}
	serials(1)

	rig.writeServer(t, "cert.pem", "key.pem", 2)
	srv.signal(syscall.SIGHUP)
	waitLogged(t, srv, `msg="certificate reloaded" listener=both serial=2`, 1)
	waitLogged(t, srv, `msg=reloaded`, 1)
	serials(2)
	echo("after a reload")

	good, err := os.ReadFile(filepath.Join(rig.dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rig.dir, "cert.pem"), "not a certificate\n")
	srv.signal(syscall.SIGHUP)
	waitLogged(t, srv, `msg="certificate reload failed: still serving the previous one" listener=both err=".*cert\.pem: no PEM certificate`, 1)
	waitLogged(t, srv, `reload refused: still running`, 1)
	serials(2)
	echo("after a broken reload")

	// New paths in the file: the listeners keep reading the old ones.
	testpki.WriteFile(t, rig.dir, "cert.pem", good)
	rig.writeServer(t, "cert3.pem", "key3.pem", 3)
	writeFile(t, path, conf("cert3.pem", "key3.pem"))
	srv.signal(syscall.SIGHUP)
	waitLogged(t, srv, `need a restart and are not applied" keys=tls_cert,tls_key`, 1)
	serials(2)
	echo("after a change of paths")
	if log := srv.stderr.String(); strings.Contains(log, "listener=admin") || strings.Contains(log, "listener=public") {
		t.Errorf("the listeners, on one certificate, reloaded it apart:\n%s", log)
	}
}

// Ensure admin_client_ca makes the admin listener ask every client for a
// certificate from that CA, and only the admin listener; and that
// chimirror jobs, reading the same config, finds the server over https
// under base_path with its --cert.
func TestTLSAdminClientCA(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	cfg := writeFile(t, filepath.Join(rig.dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"data\"\nbase_path = \"/cm\"\n"+
		"tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nadmin_client_ca = \"client-ca.pem\"\n"+tlsEchoApp)
	srv := startTLSServer(t, rig.dir, "--config", cfg)
	otherCA := testpki.NewCA(t, "another CA")
	cert, key := otherCA.Client(t, 7, "stranger")
	stranger, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}

	get := func(t *testing.T, url string, tc *tls.Config) (int, error) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: ioTimeout}).Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	healthz := "https://" + srv.admin + "/cm/api/v1/healthz"
	tests := []struct {
		name    string
		url     string
		cfg     func(t *testing.T) *tls.Config
		wantErr string // "": want 200
	}{
		{"admin, no client certificate, TLS 1.3", healthz, func(t *testing.T) *tls.Config { return rig.clientConfig(t, false) }, "certificate required"},
		{"admin, no client certificate, TLS 1.2", healthz, func(t *testing.T) *tls.Config {
			c := rig.clientConfig(t, false)
			c.MaxVersion = tls.VersionTLS12
			return c
		}, "handshake failure"},
		{"admin, a certificate from another CA", healthz, func(t *testing.T) *tls.Config {
			c := rig.clientConfig(t, false)
			// Sent whatever CAs the server names: Go's own choice
			// would send none of another CA's.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }
			return c
		}, "unknown certificate authority"},
		{"admin, the client certificate", healthz, func(t *testing.T) *tls.Config { return rig.clientConfig(t, true) }, ""},
		{"public, no client certificate", "https://" + srv.addr + "/cm/", func(t *testing.T) *tls.Config { return rig.clientConfig(t, false) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, err := get(t, tc.url, tc.cfg(t))
			switch {
			case tc.wantErr == "" && (err != nil || status != http.StatusOK):
				t.Errorf("GET %s: %d %v, want 200", tc.url, status, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("GET %s: %d %v, want refused: %s", tc.url, status, err, tc.wantErr)
			}
		})
	}

	stdout, stderr, code := runCLI(t, rig.dir, []byte("x\n"), "connect", "--ca", "ca.pem", "wss://"+srv.addr+"/cm/apps/echo")
	if code != 0 || stdout != "x\n" {
		t.Fatalf("connect: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	t.Run("chimirror jobs", func(t *testing.T) {
		tests := []struct {
			name       string
			args       []string
			wantCode   int
			wantStdout string
			wantStderr string
		}{
			{name: "with --cert and --key", args: []string{"--cert", "client.pem", "--key", "client-key.pem"},
				wantCode: 0, wantStdout: "JOB00000001  echo"},
			{name: "without a client certificate", wantCode: 1, wantStderr: "--cert and --key"},
			{name: "--cert without --key", args: []string{"--cert", "client.pem"}, wantCode: 1, wantStderr: "--cert and --key: give both"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"jobs", "--config", cfg, "--admin", srv.admin}, tc.args...)
				stdout, stderr, code := runCLI(t, rig.dir, nil, args...)
				if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
					t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
				}
			})
		}
	})
}

// Ensure chimirror jobs trusts the config's own admin certificate (a
// self-signed one, as operators make) without any flag.
func TestTLSJobsSelfSigned(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	self := testpki.NewCA(t, "self")
	cert, key := self.Server(t, 9)
	testpki.WriteFile(t, rig.dir, "admin.pem", cert)
	testpki.WriteFile(t, rig.dir, "admin-key.pem", key)
	cfg := writeFile(t, filepath.Join(rig.dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"data\"\n"+
		"tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nadmin_tls_cert = \"admin.pem\"\nadmin_tls_key = \"admin-key.pem\"\n"+tlsEchoApp)
	srv := startTLSServer(t, rig.dir, "--config", cfg)
	if got := peerSerial(t, srv.admin, &tls.Config{RootCAs: self.Pool()}); got != 9 {
		t.Errorf("admin certificate serial %d, want 9 (admin_tls_cert)", got)
	}
	stdout, stderr, code := runCLI(t, t.TempDir(), nil, "jobs", "--config", cfg, "--admin", srv.admin)
	if code != 0 || !strings.Contains(stdout, "no jobs (server https://"+srv.admin+")") {
		t.Errorf("jobs: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Ensure every TLS problem in a config is reported as FILE:LINE: key:
// message by config check (and so by serve), and that admin_listen off
// loopback is refused without admin TLS and accepted with it.
func TestTLSConfigProblems(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	_, otherKey := rig.ca.Server(t, 50)
	testpki.WriteFile(t, rig.dir, "other-key.pem", otherKey)
	testpki.WriteFile(t, rig.dir, "garbage.pem", []byte("-----BEGIN NOTHING-----\n"))
	const head = "sandbox = \"off\"\n"
	tests := []struct {
		name, toml string
		want       string // a regexp for the one problem line after "FILE:"; "" for ok
	}{
		{"tls_cert without tls_key", "tls_cert = \"cert.pem\"\n", `2: tls_cert: set without tls_key: give both, or neither`},
		{"tls_key without tls_cert", "tls_key = \"key.pem\"\n", `2: tls_key: set without tls_cert: give both, or neither`},
		{"admin_tls_cert without admin_tls_key", "admin_tls_cert = \"cert.pem\"\n", `2: admin_tls_cert: set without admin_tls_key: give both, or neither`},
		{"a missing certificate", "tls_cert = \"nope.pem\"\ntls_key = \"key.pem\"\n",
			`2: tls_cert: open .*/nope\.pem: no such file or directory`},
		{"a garbage certificate", "tls_cert = \"garbage.pem\"\ntls_key = \"key.pem\"\n",
			`2: tls_cert: .*/garbage\.pem: no PEM certificate \(-----BEGIN CERTIFICATE-----\) in it`},
		{"a garbage key", "tls_cert = \"cert.pem\"\ntls_key = \"garbage.pem\"\n",
			`3: tls_key: .*/garbage\.pem: tls: failed to find any PEM data in key input`},
		{"a key of another certificate", "tls_cert = \"cert.pem\"\ntls_key = \"other-key.pem\"\n",
			`3: tls_key: .*/other-key\.pem: tls: private key does not match public key`},
		{"a broken admin certificate", "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nadmin_tls_cert = \"garbage.pem\"\nadmin_tls_key = \"key.pem\"\n",
			`4: admin_tls_cert: .*/garbage\.pem: no PEM certificate .*`},
		{"admin_client_ca without TLS", "admin_client_ca = \"client-ca.pem\"\n",
			`2: admin_client_ca: mutual TLS needs admin TLS: set tls_cert and tls_key, or admin_tls_cert and admin_tls_key`},
		{"a garbage admin_client_ca", "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nadmin_client_ca = \"garbage.pem\"\n",
			`4: admin_client_ca: .*/garbage\.pem: no PEM certificate .*`},
		{"public admin_listen without TLS", "admin_listen = \"0.0.0.0:8081\"\nadmin_public = true\n",
			`2: admin_listen: "0\.0\.0\.0:8081" with admin_public = true needs TLS: .*`},
		{"public admin_listen with a broken admin certificate: that problem only",
			"admin_listen = \"0.0.0.0:8081\"\nadmin_public = true\nadmin_tls_cert = \"garbage.pem\"\nadmin_tls_key = \"key.pem\"\n",
			`4: admin_tls_cert: .*/garbage\.pem: no PEM certificate .*`},
		{"public admin_listen with TLS", "admin_listen = \"0.0.0.0:8081\"\nadmin_public = true\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n", ""},
		{"public admin_listen with admin TLS and mutual TLS", "admin_listen = \"0.0.0.0:8081\"\nadmin_public = true\n" +
			"admin_tls_cert = \"cert.pem\"\nadmin_tls_key = \"key.pem\"\nadmin_client_ca = \"client-ca.pem\"\n", ""},
		{"absolute paths", "tls_cert = \"" + filepath.Join(rig.dir, "cert.pem") + "\"\ntls_key = \"" + filepath.Join(rig.dir, "key.pem") + "\"\n", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, filepath.Join(rig.dir, "c"+strconv.Itoa(i)+".toml"), head+tc.toml+tlsEchoApp)
			stdout, stderr, code := runCLI(t, t.TempDir(), nil, "config", "check", file)
			if tc.want == "" {
				if code != 0 || stdout != file+": ok\n" {
					t.Errorf("exit %d, stdout %q, stderr %q; want ok", code, stdout, stderr)
				}
				return
			}
			re := regexp.MustCompile("^" + regexp.QuoteMeta(file) + ":" + tc.want + "\n$")
			if code != 1 || !re.MatchString(stderr) {
				t.Errorf("exit %d, stderr %q; want 1 and just %s:%s", code, stderr, file, tc.want)
			}
		})
	}
}

// Ensure a running server's TLS keys are hidden from its jobs, as its
// config and data dir are.
func TestTLSKeyHidden(t *testing.T) {
	t.Parallel()
	rig := newTLSRig(t)
	rig.writeServer(t, "admin.pem", "admin-key.pem", 2)
	c, err := parseConfig(filepath.Join(rig.dir, "c.toml"), []byte("sandbox = \"off\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n"+
		"admin_tls_cert = \"admin.pem\"\nadmin_tls_key = \"admin-key.pem\"\n"+tlsEchoApp), rig.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range []func(*config){func(*config) {}, func(c *config) { c.setDataDir(t.TempDir()) }} {
		check(c)
		for _, key := range []string{"key.pem", "admin-key.pem"} {
			if !strings.Contains(strings.Join(c.Sup.Hide, "\n"), filepath.Join(rig.dir, key)) {
				t.Errorf("%s is not hidden from jobs: %q", key, c.Sup.Hide)
			}
		}
	}
}

package web

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/testpki"
	"github.com/chimirror/chimirror/supervisor"
)

// keyPairFiles writes a server certificate with serial, signed by ca, and
// its key into dir; it returns their paths.
func keyPairFiles(t *testing.T, ca *testpki.CA, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	cert, key := ca.Server(t, serial)
	return testpki.WriteFile(t, dir, "cert.pem", cert), testpki.WriteFile(t, dir, "key.pem", key)
}

func servedSerial(t *testing.T, kp *KeyPair) int64 {
	t.Helper()
	c, err := kp.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

// Ensure a KeyPair serves what it last loaded, and that a reload from
// broken files fails naming the file at fault and keeps the certificate.
func TestKeyPairReload(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := keyPairFiles(t, ca, dir, 1)
	kp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, kp); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	keyPairFiles(t, ca, dir, 2)
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, kp); got != 2 {
		t.Fatalf("after a reload: serial %d, want 2", got)
	}
	if kp.Leaf().SerialNumber.Int64() != 2 {
		t.Errorf("Leaf serial %d, want 2", kp.Leaf().SerialNumber.Int64())
	}

	_, otherKey := ca.Server(t, 3)
	tests := []struct {
		name             string
		cert, key        []byte // nil: the file is removed
		wantFile, substr string
		notExist         bool
	}{
		{name: "no certificate file", key: otherKey, wantFile: certFile, notExist: true},
		{name: "no key file", cert: ca.PEM, wantFile: keyFile, notExist: true},
		{name: "not PEM", cert: []byte("garbage"), key: otherKey, wantFile: certFile, substr: "no PEM certificate"},
		{name: "a bad certificate", cert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key: otherKey,
			wantFile: certFile, substr: "x509:"},
		{name: "a key of another certificate", cert: ca.PEM, key: otherKey, wantFile: keyFile, substr: "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for path, data := range map[string][]byte{certFile: tc.cert, keyFile: tc.key} {
				if data == nil {
					remove(t, path)
				} else {
					testpki.WriteFile(t, dir, filepath.Base(path), data)
				}
			}
			err := kp.Reload()
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != tc.wantFile || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("Reload: %v, want a FileError of %s saying %q", err, tc.wantFile, tc.substr)
			}
			if tc.notExist != errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), tc.wantFile) != 1 {
				t.Errorf("Reload: %q: want the path once, and fs.ErrNotExist: %v", err, tc.notExist)
			}
			if got := servedSerial(t, kp); got != 2 {
				t.Errorf("after a failed reload: serial %d, want 2 still", got)
			}
		})
	}
}

// Ensure LoadCertPool takes a PEM bundle and refuses a file without one.
func TestLoadCertPool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := testpki.NewCA(t, "a"), testpki.NewCA(t, "b")
	tests := []struct {
		name   string
		data   []byte
		substr string // "": no error
	}{
		{"a bundle", append(append([]byte{}, a.PEM...), b.PEM...), ""},
		{"not PEM", []byte("hello"), "no PEM certificate"},
		{"a key only", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := testpki.WriteFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".pem", tc.data)
			pool, err := LoadCertPool(path)
			if tc.substr == "" {
				if err != nil || pool == nil {
					t.Fatalf("LoadCertPool: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.substr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadCertPool: %v, want %q naming %s", err, tc.substr, path)
			}
		})
	}
	if _, err := LoadCertPool(filepath.Join(dir, "none.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// Ensure a real server behind an Edge with TLSConfig runs a WebSocket
// session over wss, swaps certificates for new connections only, offers
// HTTP/1.1 alone, and refuses TLS below 1.2.
func TestTLSEdgeSession(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	kp, err := LoadKeyPair(keyPairFiles(t, ca, dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{shApp("echo", "exec cat")}}, Options{Edge: Edge{TLS: TLSConfig(kp, nil)}})
	addr := strings.TrimPrefix(s.URL, "ws://")
	roots := &tls.Config{RootCAs: ca.Pool()}
	d := websocket.Dialer{TLSClientConfig: roots, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/apps/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	echo := func(line string) {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(line)); err != nil {
			t.Fatal(err)
		}
		if err := ws.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != line {
			t.Fatalf("sent %q, got %q %v", line, m, err)
		}
	}
	echo("over wss")

	keyPairFiles(t, ca, dir, 2)
	if err := kp.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, addr, roots).PeerCertificates[0].SerialNumber.Int64(); got != 2 {
		t.Errorf("a new connection after the reload got serial %d, want 2", got)
	}
	echo("after the reload")

	tests := []struct {
		name     string
		min, max uint16
		protos   []string
		wantErr  string // "": accepted
		wantALPN string
	}{
		{name: "TLS 1.0", min: tls.VersionTLS10, max: tls.VersionTLS10, wantErr: "protocol version"},
		{name: "TLS 1.1", min: tls.VersionTLS11, max: tls.VersionTLS11, wantErr: "protocol version"},
		{name: "TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12},
		{name: "TLS 1.3 offering h2", protos: []string{"h2", "http/1.1"}, wantALPN: "http/1.1"},
		{name: "h2 alone", protos: []string{"h2"}, wantErr: "no application protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := roots.Clone()
			cfg.MinVersion, cfg.MaxVersion, cfg.NextProtos = tc.min, tc.max, tc.protos
			st, err := tryHandshake(addr, cfg)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("handshake: %v, want refused: %s", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Errorf("handshake: %v", err)
			case err == nil && st.NegotiatedProtocol != tc.wantALPN:
				t.Errorf("negotiated %q, want %q", st.NegotiatedProtocol, tc.wantALPN)
			}
		})
	}
}

// Ensure TLSConfig with client CAs refuses a client without a certificate
// from them, and serves one with.
func TestTLSEdgeClientCA(t *testing.T) {
	t.Parallel()
	ca, clientCA, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "client CA"), testpki.NewCA(t, "other")
	kp, err := LoadKeyPair(keyPairFiles(t, ca, t.TempDir(), 1))
	if err != nil {
		t.Fatal(err)
	}
	caFile := testpki.WriteFile(t, t.TempDir(), "clients.pem", clientCA.PEM)
	cas, err := LoadCAPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	edge := Edge{TLS: TLSConfig(kp, cas)}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = edge.httpServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := connTLS(r)
		if st == nil || len(st.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusInternalServerError)
			return
		}
		if _, err := io.WriteString(w, st.PeerCertificates[0].Subject.CommonName); err != nil {
			t.Errorf("write the answer: %v", err)
		}
	}), testLogger(t))
	ts.Listener = edge.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(ts.Close)
	url := "https://" + ts.Listener.Addr().String() + "/"

	cert := func(ca *testpki.CA, name string) []tls.Certificate {
		c, k := ca.Client(t, 5, name)
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{kp}
	}
	tests := []struct {
		name     string
		certs    []tls.Certificate
		max      uint16
		wantErr  string
		wantBody string
	}{
		{name: "no certificate, TLS 1.3", wantErr: "certificate required"},
		{name: "no certificate, TLS 1.2", max: tls.VersionTLS12, wantErr: "handshake failure"},
		{name: "another CA's", certs: cert(other, "stranger"), wantErr: "unknown certificate authority"},
		{name: "the client CA's", certs: cert(clientCA, "operator"), wantBody: "operator"},
		// The bundle now names the other CA alone: a reload revokes.
		{name: "reloaded: the old CA's", certs: cert(clientCA, "operator"), wantErr: "unknown certificate authority"},
		{name: "reloaded: the new CA's", certs: cert(other, "newcomer"), wantBody: "newcomer"},
	}
	for _, tc := range tests {
		if strings.HasPrefix(tc.name, "reloaded") && cas.Path() == caFile {
			if err := os.WriteFile(caFile, other.PEM, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := cas.Reload(); err != nil {
				t.Fatal(err)
			}
			caFile = "" // once
		}
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: ca.Pool(), MaxVersion: tc.max}
			if tc.certs != nil {
				// Sent whatever CAs the server names: Go's own choice
				// would send none of another CA's.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.certs[0], nil }
			}
			tr := &http.Transport{TLSClientConfig: cfg}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
			if tc.wantErr != "" {
				if err == nil {
					resp.Body.Close()
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GET: %v, want refused: %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != tc.wantBody {
				t.Fatalf("GET: %s %q %v, want 200 %q", resp.Status, body, err, tc.wantBody)
			}
		})
	}
}

func tryHandshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func handshake(t *testing.T, addr string, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	st, err := tryHandshake(addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	return st
}

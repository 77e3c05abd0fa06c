package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// Ensure the edge's keys are checked at load, each problem at its line:
// proxies, hosts and the base path; and an admin listener off loopback.
func TestConfigEdgeProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := "[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n"
	file := func(name, body string) string {
		return writeFile(t, filepath.Join(dir, name), "sandbox = \"off\"\n"+body+"\n"+app)
	}
	public := file("public.toml", `admin_listen = "0.0.0.0:8081"`)
	publicNoTLS := file("public-notls.toml", "admin_listen = \"0.0.0.0:8081\"\nadmin_public = true")
	proxies := file("proxies.toml", `trusted_proxies = ["127.0.0.1/32", "ten.0.0.0/8"]`)
	hosts := file("hosts.toml", `hosts = ["jobs.example.com:8080"]`)
	base := file("base.toml", `base_path = "chimirror"`)
	everyone := file("everyone.toml", `trusted_proxies = ["0.0.0.0/0"]`)
	ok := file("ok.toml", "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::ffff:192.0.2.0/120\"]\nhosts = [\"jobs.example.com\"]\nbase_path = \"/chimirror/\"\nbody_timeout = \"5s\"\nidle_timeout = \"1m\"")
	runCLICases(t, []cliCase{
		{name: "admin off loopback", args: []string{"config", "check", public}, wantCode: 1,
			wantStderr: public + `:2: admin_listen: "0.0.0.0:8081" is not loopback`},
		{name: "admin public without TLS", args: []string{"config", "check", publicNoTLS}, wantCode: 1,
			wantStderr: publicNoTLS + `:2: admin_listen: "0.0.0.0:8081" with admin_public = true needs TLS`},
		{name: "a bad proxy", args: []string{"config", "check", proxies}, wantCode: 1,
			wantStderr: proxies + `:2: trusted_proxies: "ten.0.0.0/8": want an address or a CIDR prefix`},
		{name: "every address a proxy", args: []string{"config", "check", everyone}, wantCode: 1,
			wantStderr: everyone + `:2: trusted_proxies: "0.0.0.0/0" trusts every client to name itself`},
		{name: "a host with a port", args: []string{"config", "check", hosts}, wantCode: 1,
			wantStderr: hosts + `:2: hosts: "jobs.example.com:8080": want a host name`},
		{name: "a relative base path", args: []string{"config", "check", base}, wantCode: 1,
			wantStderr: base + `:2: base_path: "chimirror": want a path like "/chimirror"`},
		{name: "all of them right", args: []string{"config", "check", ok}, wantCode: 0, wantStdout: ok + ": ok\n"},
		{name: "--admin-listen off loopback", args: []string{"serve", "--admin-listen", "0.0.0.0:0", "--", "cat"}, wantCode: 1,
			wantStderr: `admin_listen: "0.0.0.0:0" is not loopback`},
	})
}

// Ensure an existing data dir open to other users is made private before
// the ledger and the admin token go into it, and the fix is logged.
func TestDataDirMadePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "var")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"off\"\ndata_dir = \"var\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	s := startServer(t, dir, "--config", cfg)
	st, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o700 {
		t.Errorf("data_dir mode %#o, want 0700", mode)
	}
	if code := s.stop(syscall.SIGTERM, startTimeout); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	if !strings.Contains(s.stderr.String(), "data_dir was open to other users; made private") {
		t.Errorf("the fix was not logged:\n%s", s.stderr)
	}
}

// Ensure chimirror token makes a fresh 256-bit token each time and prints
// the SHA-256 that the config holds for it.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^token: ([A-Za-z0-9_-]{43})\ntoken_sha256 = "([0-9a-f]{64})"`)
	seen := map[string]bool{}
	for range 2 {
		stdout, stderr, code := runCLI(t, t.TempDir(), nil, "token")
		m := re.FindStringSubmatch(stdout)
		if code != 0 || m == nil {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if sum := sha256.Sum256([]byte(m[1])); hex.EncodeToString(sum[:]) != m[2] {
			t.Fatalf("the printed hash is not the token's SHA-256: %q", stdout)
		}
		if seen[m[1]] {
			t.Fatal("the same token twice")
		}
		seen[m[1]] = true
	}
	stdout, _, code := runCLI(t, t.TempDir(), nil, "token", "--label", "alice")
	if code != 0 || !regexp.MustCompile(`\nadmin_tokens_sha256 = \["alice:[0-9a-f]{64}"\]\n$`).MatchString(stdout) {
		t.Fatalf("--label: exit %d, stdout %q", code, stdout)
	}
}

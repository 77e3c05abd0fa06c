package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ensure SIGHUP applies a valid config to new jobs only, and that an invalid
// one keeps the old set and logs every problem with its line.
func TestServeReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.toml")
	writeFile(t, path, "sandbox = \"off\"\n[[app]]\nname = \"one\"\ncommand = [\"cat\"]\n")
	srv := startServer(t, dir, "--config", path)
	running := dialWS(t, srv.url("ws", "/apps/one")) // started before the reload

	writeFile(t, path, "sandbox = \"off\"\n[[app]]\nname = \"two\"\ncommand = [\"cat\"]\n")
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`msg=reloaded .*apps=two`), ioTimeout, srv.done); !ok {
		t.Fatalf("no reload logged:\n%s", srv.stderr)
	}
	if status, _, _ := httpGet(t, srv.url("http", "/apps/two")); status != http.StatusUpgradeRequired {
		t.Errorf("new app two: %d, want 426 (served)", status)
	}
	if status, _, _ := httpGet(t, srv.url("http", "/apps/one")); status != http.StatusNotFound {
		t.Errorf("removed app one: %d, want 404", status)
	}
	if err := running.WriteMessage(1, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if err := running.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, m, err := running.ReadMessage(); err != nil || string(m) != "still here" {
		t.Fatalf("the job started before the reload: %q %v", m, err)
	}

	writeFile(t, path, "sandbox = \"off\"\nbogus = 1\n[[app]]\nname = \"three\"\ncommand = [\"no-such-program-x\"]\n")
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`reload refused: still running`), ioTimeout, srv.done); !ok {
		t.Fatalf("no refusal logged:\n%s", srv.stderr)
	}
	log := srv.stderr.String()
	for _, want := range []string{`r.toml:2: bogus: unknown key`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if status, _, _ := httpGet(t, srv.url("http", "/apps/two")); status != http.StatusUpgradeRequired {
		t.Errorf("after a refused reload app two: %d, want still served", status)
	}
}

// Ensure a reload applies new admin tokens at once (a removed one is
// refused), keeps the command line's overrides, and names the changed keys
// that need a restart.
func TestServeReloadAdminTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.toml")
	conf := func(token, extra string) string {
		sum := sha256.Sum256([]byte(token))
		return "sandbox = \"off\"\nadmin_tokens_sha256 = [\"ops:" + hex.EncodeToString(sum[:]) + "\"]\n" + extra +
			"[[app]]\nname = \"one\"\ncommand = [\"cat\"]\n"
	}
	writeFile(t, path, conf("old-token-0123456789abcdef0123456789", ""))
	srv := startServer(t, dir, "--config", path) // --listen and --admin-listen 127.0.0.1:0
	status := func(token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+srv.admin+"/api/v1/jobs", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: ioTimeout}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("old-token-0123456789abcdef0123456789"); got != http.StatusOK {
		t.Fatalf("old token before the reload: %d", got)
	}

	writeFile(t, path, conf("new-token-0123456789abcdef0123456789", ""))
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`msg=reloaded`), ioTimeout, srv.done); !ok {
		t.Fatalf("no reload logged:\n%s", srv.stderr)
	}
	if got := status("old-token-0123456789abcdef0123456789"); got != http.StatusUnauthorized {
		t.Errorf("removed token after the reload: %d, want 401", got)
	}
	if got := status("new-token-0123456789abcdef0123456789"); got != http.StatusOK {
		t.Errorf("new token after the reload: %d, want 200", got)
	}
	if strings.Contains(srv.stderr.String(), "need a restart") {
		t.Errorf("the command line's addresses were taken for config changes:\n%s", srv.stderr)
	}

	writeFile(t, path, conf("new-token-0123456789abcdef0123456789", "origins = [\"https://example.com\"]\nretention = \"30d\"\n"))
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`need a restart and are not applied" keys=origins,retention`), ioTimeout, srv.done); !ok {
		t.Fatalf("the keys needing a restart were not named:\n%s", srv.stderr)
	}
}

// Ensure tenant sections are checked like the rest.
func TestConfigTenants(t *testing.T) {
	const good = "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name, toml, want string
	}{
		{"valid", "[[app]]\nname=\"a\"\ncommand=[\"cat\"]\n[[tenant]]\nname=\"t\"\ntoken_sha256=\"" + good + "\"\npolicy=\"strict\"\nmax_sessions=3\n", ""},
		{"bad hash", "[[app]]\nname=\"a\"\ncommand=[\"cat\"]\n[[tenant]]\nname=\"t\"\ntoken_sha256=\"abc\"\n", "f.toml:6: tenant[0].token_sha256: want the 64 hex digits"},
		{"public", "[[app]]\nname=\"a\"\ncommand=[\"cat\"]\n[[tenant]]\nname=\"public\"\ntoken_sha256=\"" + good + "\"\n", "tenant[0].name: \"public\" is not a valid tenant name"},
		{"unknown policy", "[[app]]\nname=\"a\"\ncommand=[\"cat\"]\n[[tenant]]\nname=\"t\"\ntoken_sha256=\"" + good + "\"\npolicy=\"nope\"\n", "f.toml:7: tenant[0].policy: unknown policy \"nope\""},
		{"same token", "[[app]]\nname=\"a\"\ncommand=[\"cat\"]\n[[tenant]]\nname=\"t\"\ntoken_sha256=\"" + good + "\"\n[[tenant]]\nname=\"u\"\ntoken_sha256=\"" + good + "\"\n", "tenant[1].token_sha256: the same token as tenant[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig("f.toml", []byte(tc.toml), ".")
			if tc.want == "" {
				if err != nil || len(c.Sup.Tenants) != 1 || c.Sup.Tenants[0].Policy == nil || c.Sup.Tenants[0].MaxSessions != 3 {
					t.Fatalf("err %v, config %+v", err, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

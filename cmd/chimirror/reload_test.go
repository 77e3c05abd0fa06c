package main

import (
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

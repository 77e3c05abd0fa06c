package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// sharedDirRig is a config dir, open to jobs' uids, holding dir "shared"
// and policy dir "pol" with policy "p": the shared dir read-only in its
// view, and rest.
func sharedDirRig(t *testing.T, rest string) (dir, shared string) {
	t.Helper()
	dir = t.TempDir()
	for d := dir; d != "/tmp"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shared = filepath.Join(dir, "shared")
	for _, d := range []string{filepath.Join(dir, "pol"), shared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "pol", "p.toml"), fmt.Sprintf("ro = [%q]\n%s", shared, rest))
	return dir, shared
}

// Ensure --data-dir moves what jobs must not see with the data dir: an
// app's dir inside it is refused, and a view that binds it shows it masked.
func TestDataDirFlagHidden(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	t.Run("an app's dir", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeFile(t, filepath.Join(dir, "c.toml"), "sandbox = \"on\"\n[[app]]\nname = \"a\"\ncommand = [\"cat\"]\ndir = \"app\"\n")
		_, stderr, code := runCLI(t, dir, nil, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--config", cfg, "--data-dir", filepath.Join(dir, "app"))
		if code != 1 || !regexp.MustCompile(`c\.toml:5: app\[0\]\.dir: ".*/app" holds the server's own files`).MatchString(stderr) {
			t.Fatalf("exit %d, stderr:\n%s\nwant the app's dir refused", code, stderr)
		}
	})
	t.Run("inside a policy's view", func(t *testing.T) {
		t.Parallel()
		dir, shared := sharedDirRig(t, "")
		cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf("sandbox = \"on\"\npolicy_dir = \"pol\"\n"+
			"[[app]]\nname = \"a\"\ncommand = [\"stat\", \"-c\", \"%%a\", \"%s/data\"]\npolicy = \"p\"\nenv = [\"PATH\"]\n", shared))
		srv := startServer(t, dir, "--config", cfg, "--data-dir", filepath.Join(shared, "data"))
		if _, err := os.Stat(filepath.Join(shared, "data", "ledger.db")); err != nil {
			t.Fatalf("the server's ledger is not in --data-dir: %v", err)
		}
		c := dialWS(t, srv.url("ws", "/apps/a"))
		// The data dir is 0700: a job can tell it from a mask (mode 0)
		// only by its mode.
		if _, p := readWS(t, c); string(p) != "0" {
			t.Errorf("the job sees the data dir with mode %s, want 0 (masked)", p)
		}
	})
}

// Ensure a reload is checked against the id ranges the server runs with,
// which need a restart to change: a file whose own ranges would hold its
// max_sessions, but the running ones would not, is refused.
func TestReloadChecksRunningIDs(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "r.toml")
	const app = "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n"
	writeFile(t, path, "sandbox = \"on\"\ndynamic_uids = \"70000-70109\"\nmax_sessions = 100\n"+app)
	srv := startServer(t, dir, "--config", path)
	writeFile(t, path, "sandbox = \"on\"\ndynamic_uids = \"70000-79999\"\nmax_sessions = 1000\n"+app)
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`reload refused: still running`), ioTimeout, srv.done); !ok {
		t.Fatalf("no refusal logged:\n%s", srv.stderr)
	}
	if log := srv.stderr.String(); !strings.Contains(log, "but dynamic_uids 70000-70109 holds 110") {
		t.Errorf("the refusal does not name the running range:\n%s", log)
	}
	linesEcho(t, srv.url("ws", "/apps/a"))
}

// Ensure a reload whose file moves data_dir (which needs a restart) keeps
// hiding the data dir the server still runs with.
func TestReloadKeepsDataDirHidden(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir, shared := sharedDirRig(t, "initiators = 0\n")
	body := func(data string) string {
		return fmt.Sprintf("sandbox = \"on\"\npolicy_dir = \"pol\"\ndata_dir = %q\n"+
			"[[app]]\nname = \"a\"\ncommand = [\"stat\", \"-c\", \"%%a\", \"%s/data\"]\npolicy = \"p\"\nenv = [\"PATH\"]\n", data, shared)
	}
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), body(filepath.Join(shared, "data")))
	srv := startServer(t, dir, "--config", cfg)
	if _, p := readWS(t, dialWS(t, srv.url("ws", "/apps/a"))); string(p) != "0" {
		t.Fatalf("before the reload the job sees the data dir with mode %s, want 0 (masked)", p)
	}
	writeFile(t, cfg, body(filepath.Join(dir, "elsewhere")))
	srv.signal(syscall.SIGHUP)
	if _, ok := srv.stderr.waitMatch(regexp.MustCompile(`msg=reloaded`), ioTimeout, srv.done); !ok {
		t.Fatalf("no reload logged:\n%s", srv.stderr)
	}
	if _, p := readWS(t, dialWS(t, srv.url("ws", "/apps/a"))); string(p) != "0" {
		t.Errorf("after a reload that moves data_dir, the data dir in use shows mode %s to jobs, want 0 (masked)", p)
	}
	if _, err := os.Stat(filepath.Join(dir, "elsewhere")); err == nil {
		t.Errorf("the reload made the new data_dir, which needs a restart")
	}
}

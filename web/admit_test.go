package web

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
)

// TestCannotStart: a job that cannot start for a reason no retry fixes (its
// program gone, not executable, not a program at all; its dir gone) is
// refused 500, saying what is wrong, with no Retry-After; a busy server
// still answers 429 with one. Each app worked when the server started.
func TestCannotStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		breaks    func(t *testing.T, prog, dir string)
		plainOnly string // why the sandboxed runner skips the row
		want      []string
	}{
		{name: "program deleted", breaks: func(t *testing.T, prog, _ string) { remove(t, prog) },
			want: []string{"program", "no such file"}},
		{name: "program no longer executable", breaks: func(t *testing.T, prog, _ string) {
			if err := os.Chmod(prog, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"program", "not executable"}},
		{name: "program replaced by a directory", breaks: func(t *testing.T, prog, _ string) {
			remove(t, prog)
			if err := os.Mkdir(prog, 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"program", "not a regular file"}},
		{name: "program of no format the kernel runs", breaks: func(t *testing.T, prog, _ string) {
			if err := os.WriteFile(prog, []byte{0, 1, 2, 3, 4, 5, 6, 7}, 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"exec format error"}},
		{name: "a script whose interpreter is gone", breaks: func(t *testing.T, prog, _ string) {
			if err := os.WriteFile(prog, []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"no such file"}},
		{name: "dir deleted", breaks: func(t *testing.T, _, dir string) { remove(t, dir) },
			want: []string{"dir", "no such file"}},
	}
	for _, r := range runners {
		if r.userns {
			continue // nothing here depends on the ids
		}
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					if r.sandbox && tc.plainOnly != "" {
						t.Skip(tc.plainOnly)
					}
					prog, dir := filepath.Join(t.TempDir(), "prog"), t.TempDir()
					if err := os.WriteFile(prog, []byte("#!/bin/sh\necho started\n"), 0o755); err != nil {
						t.Fatal(err)
					}
					app := supervisor.App{Name: "prog", Path: prog, Args: []string{"prog"}, Dir: dir, ReadOnly: []string{prog}}
					s := admitServer(t, r.sandbox, app)
					ws, err := s.tryDial("/apps/prog", nil, ProtoV1)
					if err != nil {
						t.Fatalf("before: %v", err)
					}
					if got := readSession(t, ws, 10*time.Second); string(got.stdout) != "started\n" {
						t.Fatalf("before: stdout %q, stderr %q", got.stdout, got.stderr)
					}
					ws.Close()
					tc.breaks(t, prog, dir)
					_, err = s.tryDial("/apps/prog", nil, ProtoV1)
					var de *dialError
					if !errors.As(err, &de) || de.status != http.StatusInternalServerError {
						t.Fatalf("dial: %v (%+v), want refused 500", err, de)
					}
					if ra := de.header.Get("Retry-After"); ra != "" {
						t.Errorf("Retry-After: %s on a refusal no retry can fix", ra)
					}
					body, code := upgradeRequest(t, s, "/apps/prog")
					if code != http.StatusInternalServerError {
						t.Errorf("again: %d %q, want 500", code, body)
					}
					t.Logf("refused: %s", body)
					for _, w := range tc.want { // the C init's strerror capitalises
						if !strings.Contains(strings.ToLower(body), w) {
							t.Errorf("body %q does not say %q", body, w)
						}
					}
				})
			}
		})
	}
	t.Run("busy is still 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		cfg := supervisor.Config{MaxSessions: 1, Apps: []supervisor.App{{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}}}
		s := startServer(t, cfg, Options{})
		s.dial("/apps/cat", ProtoV1) // takes the only slot
		_, err := s.tryDial("/apps/cat", nil, ProtoV1)
		var de *dialError
		if !errors.As(err, &de) || de.status != http.StatusTooManyRequests || de.header.Get("Retry-After") == "" {
			t.Fatalf("dial: %v, want 429 with Retry-After", err)
		}
	})
}

// admitServer serves app, sandboxed under a small policy or plain.
func admitServer(t *testing.T, sandboxed bool, app supervisor.App) *testServer {
	t.Helper()
	if sandboxed {
		if err := sandbox.Available(); err != nil {
			t.Skipf("sandboxed runner needs root and cgroups: %v", err)
		}
		pol, ps := policies.Parse("admit.toml", []byte("memory = \"64MiB\"\npids = 16\n"))
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		app.Policy = pol
	}
	return startServer(t, supervisor.Config{Sandbox: sandboxed, Apps: []supervisor.App{app}}, Options{})
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

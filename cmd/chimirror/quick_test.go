package main

// End-to-end tests of quick mode as websocketd's users expect it: the
// command at every path with the path as PATH_INFO, --binary, --dir, and a
// quick program that cannot start.

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// refusal is a handshake the server refused.
type refusal struct {
	status int
	header http.Header
	body   string
}

// tryDialWS dials url; on a refused handshake it returns the refusal.
func tryDialWS(t *testing.T, url string) (*websocket.Conn, *refusal) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: ioTimeout}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		body, rerr := io.ReadAll(resp.Body) // gorilla keeps the start of it
		if rerr != nil {
			t.Fatalf("dial %s: read the refusal: %v", url, rerr)
		}
		return nil, &refusal{resp.StatusCode, resp.Header, string(body)}
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// firstLine dials url (text lines) and returns the job's first line.
func firstLine(t *testing.T, url string) string {
	t.Helper()
	c, ref := tryDialWS(t, url)
	if ref != nil {
		t.Fatalf("dial %s: refused %d %q", url, ref.status, ref.body)
	}
	_, p := readWS(t, c)
	return string(p)
}

// TestQuickPathInfo: quick mode runs its command at every path, with the
// path as PATH_INFO and SCRIPT_NAME "/", as websocketd does; at
// /apps/NAME it runs as an app, CGI's way. A plain GET off "/" is no page.
func TestQuickPathInfo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, "--", "sh", "-c", `printf '[%s][%s]\n' "$SCRIPT_NAME" "$PATH_INFO"`)
	tests := []struct {
		name, path, want string
	}{
		{"/", "/", "[/][/]"},
		{"a path", "/path/x", "[/][/path/x]"},
		{"decoded", "/a%20b/c?q=1", "[/][/a b/c]"},
		{"another app's path", "/apps/other/x", "[/][/apps/other/x]"},
		{"its own app path", "/apps/sh", "[/apps/sh][]"},
		{"below its own app path", "/apps/sh/more/x", "[/apps/sh][/more/x]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := firstLine(t, srv.url("ws", tc.path)); got != tc.want {
				t.Errorf("job at %s sees %s, want %s", tc.path, got, tc.want)
			}
		})
	}
	if status, _, _ := httpGet(t, srv.url("http", "/path/x")); status != http.StatusNotFound {
		t.Errorf("plain GET /path/x: %d, want 404", status)
	}
}

// TestQuickBinary: serve --binary -- CMD exchanges raw binary messages.
func TestQuickBinary(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), "--binary", "--", "cat")
	c := dialWS(t, srv.url("ws", "/"))
	payload := []byte{0, 1, 2, 0xff, '\n', 'x', 0xc3}
	if err := c.WriteMessage(websocket.BinaryMessage, payload); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(payload) {
		mt, p := readWS(t, c)
		if mt != websocket.BinaryMessage {
			t.Fatalf("message of type %d %q, want binary", mt, p)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("got %q, want %q back", got, payload)
	}
}

// TestQuickDir: serve --dir DIR serves each executable file directly in
// DIR at /NAME (and /apps/NAME), as websocketd's --dir does; what it
// cannot serve is skipped, with a warning for what looks meant to be served.
func TestQuickDir(t *testing.T) {
	t.Parallel()
	dir, progs := t.TempDir(), t.TempDir()
	writeScript(t, filepath.Join(progs, "where"), `printf '[%s][%s]\n' "$SCRIPT_NAME" "$PATH_INFO"`)
	writeScript(t, filepath.Join(progs, "hello.sh"), `echo hello`)
	writeScript(t, filepath.Join(progs, "Bad Name"), `echo bad`)
	writeScript(t, filepath.Join(progs, ".hidden"), `echo hidden`)
	writeFile(t, filepath.Join(progs, "notes.txt"), "not a program\n")
	if err := os.Mkdir(filepath.Join(progs, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeScript(t, filepath.Join(progs, "sub", "deeper"), `echo deeper`)
	if err := os.Symlink(filepath.Join(progs, "hello.sh"), filepath.Join(progs, "hi")); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, dir, "--dir", progs)
	if got := srv.apps(); got != "hello.sh,hi,where" {
		t.Errorf("startup line lists apps {%s}, want {hello.sh,hi,where}", got)
	}
	tests := []struct {
		name, path, want string
	}{
		{"/NAME", "/where", "[/where][]"},
		{"/NAME/path", "/where/a/b", "[/where][/a/b]"},
		{"/apps/NAME/path", "/apps/where/a", "[/apps/where][/a]"},
		{"another program", "/hello.sh", "hello"},
		{"a symlink to a program", "/hi", "hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := firstLine(t, srv.url("ws", tc.path)); got != tc.want {
				t.Errorf("job at %s says %s, want %s", tc.path, got, tc.want)
			}
		})
	}
	for _, path := range []string{"/notes.txt", "/sub/deeper", "/Bad%20Name", "/.hidden", "/nope"} {
		if _, ref := tryDialWS(t, srv.url("ws", path)); ref == nil || ref.status != http.StatusNotFound {
			t.Errorf("dial %s: %+v, want refused 404", path, ref)
		}
	}
	stderr := srv.stderr.String()
	for _, want := range []string{"Bad Name", `\"sub\": a sub-directory`} {
		if !strings.Contains(stderr, want) || !strings.Contains(stderr, "level=WARN") {
			t.Errorf("no warning naming %s:\n%s", want, stderr)
		}
	}
	var warnings []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "level=WARN") {
			warnings = append(warnings, l)
		}
	}
	for _, quiet := range []string{"notes.txt", ".hidden"} {
		if strings.Contains(strings.Join(warnings, "\n"), quiet) {
			t.Errorf("a warning names %s, which is no program to serve:\n%s", quiet, stderr)
		}
	}
}

// TestQuickCommandLine: what quick mode's flags refuse.
func TestQuickCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	progs, empty := t.TempDir(), t.TempDir()
	writeScript(t, filepath.Join(progs, "p"), "cat")
	writeFile(t, filepath.Join(empty, "notes.txt"), "x\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"--dir with a command", []string{"--dir", progs, "--", "cat"}, "--dir and -- COMMAND"},
		{"--binary without a command", []string{"--binary"}, "--binary"},
		{"--dir that does not exist", []string{"--dir", filepath.Join(dir, "nope")}, "no such file or directory"},
		{"--dir with no programs", []string{"--dir", empty}, "no executable"},
		{"--dir of a file", []string{"--dir", filepath.Join(progs, "p")}, "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)
			_, stderr, code := runCLI(t, dir, nil, args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", code, stderr, tc.want)
			}
		})
	}
}

// maxPrepared bounds the sandboxes quick mode's default policy keeps
// prepared (initiators = 8, and a pool holds 2 more), with room to spare.
const maxPrepared = 16

// TestQuickCannotStart: a quick program that is gone, or no longer
// executable, when a client comes is refused 500, saying why, and with no
// Retry-After: a retry cannot help. (Jobs are sandboxed where the host
// allows, so the sandbox's own report of the failure is what is classified.)
func TestQuickCannotStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		breaks func(t *testing.T, prog string)
		want   string
	}{
		{"deleted", func(t *testing.T, prog string) {
			if err := os.Remove(prog); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
		{"no longer executable", func(t *testing.T, prog string) {
			if err := os.Chmod(prog, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not executable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prog := writeScript(t, filepath.Join(t.TempDir(), "prog"), "echo started")
			srv := startServer(t, t.TempDir(), "--", prog)
			if got := firstLine(t, srv.url("ws", "/")); got != "started" {
				t.Fatalf("before: %q, want started", got)
			}
			tc.breaks(t, prog)
			// A sandbox prepared before the change holds the old file
			// bound, and runs it: the pool must drain first.
			var ref *refusal
			for range maxPrepared {
				var c *websocket.Conn
				if c, ref = tryDialWS(t, srv.url("ws", "/")); ref != nil {
					break
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if ref == nil {
				t.Fatalf("%d jobs started after the program broke", maxPrepared)
			}
			if ref.status != http.StatusInternalServerError || !strings.Contains(ref.body, prog) || !strings.Contains(ref.body, tc.want) {
				t.Errorf("refused %d %q; want 500 naming %s, saying %q", ref.status, ref.body, prog, tc.want)
			}
			if ra := ref.header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After: %s on a refusal no retry can fix", ra)
			}
		})
	}
}

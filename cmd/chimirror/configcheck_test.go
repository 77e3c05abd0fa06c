package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Ensure config check judges a config as serve would load it: ok, every
// problem as FILE:LINE: key: message, or usage.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good.toml"), "sandbox = \"off\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	bad := writeFile(t, filepath.Join(dir, "bad.toml"), "sandbox = \"off\"\nlisten = 8080\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\n")
	semantic := writeFile(t, filepath.Join(dir, "semantic.toml"), "sandbox = \"off\"\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\nexit_signal = \"STOP\"\n")
	runCLICases(t, []cliCase{
		{name: "a valid file", args: []string{"config", "check", good}, wantCode: 0, wantStdout: good + ": ok\n"},
		{name: "the embedded default", args: []string{"config", "check"}, wantCode: 0, wantStdout: embeddedSource + ": ok\n"},
		{name: "a wrong type", args: []string{"config", "check", bad}, wantCode: 1, wantStderr: bad + ":2: listen: must be a string, not an integer\n"},
		{name: "a semantic problem", args: []string{"config", "check", semantic}, wantCode: 1, wantStderr: semantic + `:5: app[0].exit_signal: "STOP" only pauses a job`},
		{name: "a missing file", args: []string{"config", "check", filepath.Join(dir, "none.toml")}, wantCode: 1, wantStderr: "no such file or directory"},
		{name: "two files", args: []string{"config", "check", good, bad}, wantCode: 2, wantStderr: "one FILE at most"},
		{name: "no subcommand", args: []string{"config"}, wantCode: 2, wantStderr: "Usage:\n  chimirror config check"},
		{name: "an unknown subcommand", args: []string{"config", "lint"}, wantCode: 2, wantStderr: `unknown command "lint"`},
	})
}

// Ensure --log-format json makes every log line one JSON object, and that
// an unknown format is refused before anything starts.
func TestServeLogFormat(t *testing.T) {
	t.Parallel()
	runCLICases(t, []cliCase{
		{name: "an unknown format", args: []string{"serve", "--log-format", "xml"}, wantCode: 1, wantStderr: `--log-format: "xml": use text or json`},
	})
	s := startServer(t, t.TempDir(), "--log-format", "json")
	if code := s.stop(syscall.SIGTERM, startTimeout); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	var logged, serving int
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			if line != "" && !strings.HasPrefix(line, "chimirror: ") {
				t.Errorf("a log line that is not JSON: %q", line)
			}
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON object: %q: %v", line, err)
			continue
		}
		logged++
		if rec["msg"] == "chimirror serving" && rec["level"] == "INFO" {
			serving++
		}
	}
	if logged == 0 || serving != 1 {
		t.Errorf("%d JSON lines, %d of them the serving line; want some, and one:\n%s", logged, serving, s.stderr)
	}
}

// Ensure quick mode with --config takes only the file's server settings: a
// file without any [[app]] serves the command (websocketd users' setup).
func TestServeQuickModeServerOnlyConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "server.toml"), "sandbox = \"off\"\nmax_sessions = 7\n")
	s := startServer(t, dir, "--config", cfg, "--", "cat")
	if got := s.apps(); got != "cat" {
		t.Fatalf("apps %q, want cat", got)
	}
	stdout, stderr, code := runCLI(t, dir, []byte("hello\n"), "connect", s.url("ws", "/apps/cat"))
	if code != 0 || stdout != "hello\n" {
		t.Errorf("connect: exit %d, stdout %q, stderr %q; want the line echoed", code, stdout, stderr)
	}
	if code := s.stop(syscall.SIGTERM, startTimeout); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}

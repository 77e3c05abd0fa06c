package main

// End-to-end tests of `chimirror policy`, through the binary TestMain builds
// (harness in main_test.go), on the fixtures in testdata/policies.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// policyFixture is the absolute path of a file in testdata/policies: the
// binary runs in a temporary directory.
func policyFixture(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "policies", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyCheck: valid files print "FILE: ok" and exit 0; any invalid file
// prints every problem of every file to stderr and exits 1.
func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	full := policyFixture(t, "valid/full.toml")
	empty := policyFixture(t, "valid/empty.toml")
	many := policyFixture(t, "invalid/many.toml")
	unknownKey := policyFixture(t, "invalid/unknown-key.toml")
	syntax := policyFixture(t, "invalid/syntax.toml")
	missing := filepath.Join(t.TempDir(), "missing.toml")
	uncompilable := policyFixture(t, "uncompilable/seccomp.toml")
	viewPaths := policyFixture(t, "invalid/view-paths.toml")
	// A config whose app runs a program outside the sandbox's view.
	cfgDir := t.TempDir()
	outside := writeFile(t, filepath.Join(cfgDir, "prog.sh"), "#!/bin/sh\necho hi\n")
	if err := os.Chmod(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	outsideCfg := writeFile(t, filepath.Join(cfgDir, "outside.toml"), "sandbox = \"on\"\n[[app]]\nname = \"prog\"\ncommand = [\"./prog.sh\"]\n")
	insideCfg := writeFile(t, filepath.Join(cfgDir, "inside.toml"), "sandbox = \"on\"\n[[app]]\nname = \"prog\"\ncommand = [\"./prog.sh\"]\ndir = \".\"\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		// wantStderr are regexps, each matching one whole line; exactly
		// these lines must be printed.
		wantStderr []string
	}{
		{
			name:       "built-ins",
			args:       nil,
			wantCode:   0,
			wantStdout: "builtin:default.toml: ok (replay_bytes 256KiB, detach_timeout -)\nbuiltin:strict.toml: ok (replay_bytes 256KiB, detach_timeout -)\n",
		},
		{
			name:       "valid files",
			args:       []string{full, empty},
			wantCode:   0,
			wantStdout: full + ": ok (replay_bytes 1MiB, detach_timeout 1m30s)\n" + empty + ": ok (replay_bytes 256KiB, detach_timeout -)\n",
		},
		{
			name:     "one invalid file: every problem",
			args:     []string{many},
			wantCode: 1,
			wantStderr: []string{
				regexp.QuoteMeta(many) + `:4: tmp_size: "1GiB" is larger than memory "64MiB": .*`,
				regexp.QuoteMeta(many) + `:6: cpu_time: "10m" can never be used up: .*`,
				regexp.QuoteMeta(many) + `:7: idle_timeout: bad duration "1y": .*`,
				regexp.QuoteMeta(many) + `:8: user: unknown user "no-such-user-chimirror"`,
				regexp.QuoteMeta(many) + `:9: exit_signal: unknown signal "FOO" .*`,
				regexp.QuoteMeta(many) + `:10: colour: unknown key`,
				regexp.QuoteMeta(many) + `:13: rlimits.stack: bad size "8XB": unknown unit "XB" .*`,
			},
		},
		{
			name:       "valid and invalid files: ok lines and every problem of every file",
			args:       []string{unknownKey, full, syntax},
			wantCode:   1,
			wantStdout: full + ": ok (replay_bytes 1MiB, detach_timeout 1m30s)\n",
			wantStderr: []string{
				regexp.QuoteMeta(unknownKey) + `:2: cpus: unknown key`,
				regexp.QuoteMeta(syntax) + `:2: memory: basic strings cannot have new lines`,
			},
		},
		{
			name:       "missing file",
			args:       []string{missing, full},
			wantCode:   1,
			wantStdout: full + ": ok (replay_bytes 1MiB, detach_timeout 1m30s)\n",
			wantStderr: []string{regexp.QuoteMeta(missing) + `: open ` + regexp.QuoteMeta(missing) + `: no such file or directory`},
		},
	}
	tests = append(tests, []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{
			name:       "a seccomp profile that cannot be compiled",
			args:       []string{uncompilable},
			wantCode:   1,
			wantStderr: []string{regexp.QuoteMeta(uncompilable) + `:2: seccomp: seccomp: syscalls\[0\]: unknown syscall "opne"`},
		},
		{
			name:     "paths a view may not bind",
			args:     []string{viewPaths},
			wantCode: 1,
			wantStderr: []string{
				regexp.QuoteMeta(viewPaths) + `:2: ro: "relative/path" is a relative path: give it from /`,
				regexp.QuoteMeta(viewPaths) + `:2: ro: "/no/such/path-chimirror": does not exist`,
				regexp.QuoteMeta(viewPaths) + `:2: ro: "/proc/self": the sandbox makes /proc itself .*`,
				regexp.QuoteMeta(viewPaths) + `:2: ro: "/usr/../etc" is not a clean path .*`,
				regexp.QuoteMeta(viewPaths) + `:3: rw: "/" is the host's whole filesystem: .*`,
				regexp.QuoteMeta(viewPaths) + `:4: tmpfs: "/dev/shm/x": the sandbox makes /dev itself .*`,
				regexp.QuoteMeta(viewPaths) + `:4: tmpfs: must be a list of absolute paths .*`,
			},
		},
	}...)
	if sandbox.Available() == nil { // the view is checked where jobs are sandboxed
		tests = append(tests, []struct {
			name       string
			args       []string
			wantCode   int
			wantStdout string
			wantStderr []string
		}{
			{
				name:     "a config whose app is outside the view",
				args:     []string{"--config", outsideCfg},
				wantCode: 1,
				wantStderr: []string{regexp.QuoteMeta(outsideCfg) + `:4: app\[0\].command: ` + regexp.QuoteMeta(outside) +
					` is outside the sandbox's view under policy "default": add its directory to the policy's ro, or make it the app's dir`},
			},
			{
				name:       "the same app with its dir",
				args:       []string{"--config", insideCfg},
				wantCode:   0,
				wantStdout: insideCfg + ": ok\n",
			},
		}...)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, t.TempDir(), nil, append([]string{"policy", "check"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			if stdout != tc.wantStdout {
				t.Errorf("stdout %q, want %q", stdout, tc.wantStdout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if stderr == "" {
				lines = nil
			}
			if len(lines) != len(tc.wantStderr) {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(tc.wantStderr), stderr)
			}
			for i, w := range tc.wantStderr {
				if !regexp.MustCompile("^" + w + "$").MatchString(lines[i]) {
					t.Errorf("stderr line %d:\n  %s\nwant\n  %s", i+1, lines[i], w)
				}
			}
		})
	}
}

// TestPolicyList: the policies in force, one row each, with their limits.
func TestPolicyList(t *testing.T) {
	t.Parallel()
	override := policyFixture(t, "override")
	broken := t.TempDir()
	writeFile(t, filepath.Join(broken, "strict.toml"), "cpu = -1\n")
	withDir := writeFile(t, filepath.Join(t.TempDir(), "c.toml"), fmt.Sprintf("sandbox = \"off\"\npolicy_dir = %q\n[[app]]\nname = \"cat\"\ncommand = [\"cat\"]\npolicy = \"batch\"\n", override))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		// wantRows are the whitespace-separated fields of each line
		wantRows   [][]string
		wantStderr string // substring
	}{
		{
			name:     "built-ins",
			wantCode: 0,
			wantRows: [][]string{
				{"NAME", "CPU", "MEMORY", "PIDS", "WALL", "CPU-TIME", "IDLE", "OUTPUT", "TMP", "NETWORK", "USER", "SECCOMP", "SOURCE"},
				{"default", "1", "512MiB", "256", "1h", "-", "10m", "1GiB", "64MiB", "no", "dynamic", "default", "builtin:default.toml"},
				{"strict", "0.5", "64MiB", "32", "5m", "30s", "1m", "16MiB", "8MiB", "no", "dynamic", "default", "builtin:strict.toml"},
			},
		},
		{
			name:     "operator directory",
			args:     []string{"--dir", override},
			wantCode: 0,
			wantRows: [][]string{
				{"NAME", "CPU", "MEMORY", "PIDS", "WALL", "CPU-TIME", "IDLE", "OUTPUT", "TMP", "NETWORK", "USER", "SECCOMP", "SOURCE"},
				{"batch", "4", "8GiB", "-", "12h", "-", "-", "-", "-", "no", "dynamic", "default", filepath.Join(override, "batch.toml")},
				{"default", "2", "-", "-", "-", "-", "-", "-", "-", "no", "dynamic", "default", filepath.Join(override, "default.toml")},
				{"strict", "0.5", "64MiB", "32", "5m", "30s", "1m", "16MiB", "8MiB", "no", "dynamic", "default", "builtin:strict.toml"},
			},
		},
		{
			name:     "the config's policy_dir",
			args:     []string{"--config", withDir},
			wantCode: 0,
			wantRows: [][]string{
				{"NAME", "CPU", "MEMORY", "PIDS", "WALL", "CPU-TIME", "IDLE", "OUTPUT", "TMP", "NETWORK", "USER", "SECCOMP", "SOURCE"},
				{"batch", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", filepath.Join(override, "batch.toml")},
				{"default", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", filepath.Join(override, "default.toml")},
				{"strict", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", "builtin:strict.toml"},
			},
		},
		{
			name:       "broken operator file",
			args:       []string{"--dir", broken},
			wantCode:   1,
			wantStderr: filepath.Join(broken, "strict.toml") + ":1: cpu: -1 must not be negative\n",
		},
		{
			name:       "stray argument",
			args:       []string{"extra"},
			wantCode:   2,
			wantStderr: `unexpected argument "extra"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, t.TempDir(), nil, append([]string{"policy", "list"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantStderr)
			}
			var rows [][]string
			for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
				if l != "" {
					rows = append(rows, strings.Fields(l))
				}
			}
			if len(rows) != len(tc.wantRows) {
				t.Fatalf("%d lines, want %d:\n%s", len(rows), len(tc.wantRows), stdout)
			}
			for i, want := range tc.wantRows {
				if len(rows[i]) != len(want) {
					t.Errorf("line %d: %q, want %q", i+1, rows[i], want)
					continue
				}
				for j := range want {
					if want[j] != "*" && rows[i][j] != want[j] {
						t.Errorf("line %d: %q, want %q", i+1, rows[i], want)
						break
					}
				}
			}
		})
	}
}

// TestPolicyCommandLine: usage and mistakes on the command line.
func TestPolicyCommandLine(t *testing.T) {
	t.Parallel()
	tests := []cliCase{
		{name: "no subcommand", args: []string{"policy"}, wantCode: 2, wantStderr: "Usage:\n  chimirror policy check"},
		{name: "unknown subcommand", args: []string{"policy", "frob"}, wantCode: 2, wantStderr: `chimirror policy: unknown command "frob"`},
		{name: "help", args: []string{"policy", "--help"}, wantCode: 0, wantStdout: "chimirror policy list [--dir DIR | --config FILE]"},
		{name: "check --help", args: []string{"policy", "check", "--help"}, wantCode: 0, wantStderr: "chimirror policy check [FILE...]"},
		{name: "check with a bad flag", args: []string{"policy", "check", "--bogus"}, wantCode: 2, wantStderr: "flag provided but not defined: -bogus"},
		{name: "listed in the main usage", args: []string{"help"}, wantCode: 0, wantStdout: "chimirror policy check [FILE...]"},
	}
	runCLICases(t, tests)
}

// TestPolicyCheckFixtures: every fixture is judged by the binary as by its
// directory's name, so the fixtures and the command agree.
func TestPolicyCheckFixtures(t *testing.T) {
	t.Parallel()
	for _, kind := range []struct {
		dir      string
		wantCode int
	}{{"valid", 0}, {"invalid", 1}} {
		files, err := filepath.Glob(policyFixture(t, filepath.Join(kind.dir, "*.toml")))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no fixtures in %s", kind.dir)
		}
		for _, f := range files {
			t.Run(kind.dir+"/"+filepath.Base(f), func(t *testing.T) {
				t.Parallel()
				stdout, stderr, code := runCLI(t, t.TempDir(), nil, "policy", "check", f)
				if code != kind.wantCode {
					t.Errorf("exit code %d, want %d; stdout %q, stderr %q", code, kind.wantCode, stdout, stderr)
				}
				if kind.wantCode != 0 && !strings.HasPrefix(stderr, f+":") {
					t.Errorf("stderr does not start with %s: %q", f, stderr)
				}
			})
		}
	}
}

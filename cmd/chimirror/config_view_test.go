package main

// In-process tests of parseConfig and quickConfig: id ranges, pass_headers,
// what a sandboxed job can see of its app, and the server's own files that
// every job's view hides. No server process is started.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/tomlstrict"
)

// problemLines renders parseConfig's error as "LINE: KEY: MSG" lines (the
// line 0 when the problem has none), failing the test on any other error or
// on a problem of another file.
func problemLines(t *testing.T, file string, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ps tomlstrict.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("parseConfig: %v (%T), want tomlstrict.Problems", err, err)
	}
	lines := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.File != file {
			t.Errorf("problem %q names file %q, want %q", p, p.File, file)
		}
		if p.Key == "" {
			lines = append(lines, fmt.Sprintf("%d: %s", p.Line, p.Msg))
		} else {
			lines = append(lines, fmt.Sprintf("%d: %s: %s", p.Line, p.Key, p.Msg))
		}
	}
	return lines
}

// sameProblems fails unless got and want hold the same lines, in any order.
func sameProblems(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("problems:\n  got  %q\n  want %q", got, want)
	}
}

// requireSandboxHere skips a test that needs jobs to be sandboxed on this
// host (root with cgroups), naming what is missing.
func requireSandboxHere(t *testing.T) {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		t.Skipf("needs the sandbox (root with cgroups): %v", err)
	}
}

// writeExec writes an executable shell script.
func writeExec(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func mkdir(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

const catApp = "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\n"

// TestIDRangeProblems: dynamic_uids and user_namespace_uids are checked for
// their form, order, root, overlap and size wherever the config loads; a
// bad value falls back to the default.
func TestIDRangeProblems(t *testing.T) {
	t.Parallel()
	def, defNS := sandbox.DefaultDynamicIDs, sandbox.DefaultUserNamespaceIDs
	const form = `want a range of ids like "61184-65519"`
	const root = `root (0) and 4294967295 are not ids a job may get`
	tests := []struct {
		name        string
		keys        string // from line 2; line 1 is sandbox = "off"
		want        []string
		dyn, userns sandbox.IDRange
	}{
		{name: "defaults when absent", dyn: def, userns: defNS},
		{name: "the defaults written out", keys: "dynamic_uids = \"61184-65519\"\nuser_namespace_uids = \"524288-1879048191\"\n", dyn: def, userns: defNS},
		{name: "dynamic missing its end", keys: "dynamic_uids = \"1-\"\n",
			want: []string{`2: dynamic_uids: "1-": ` + form}, dyn: def, userns: defNS},
		{name: "user namespace not numbers", keys: "user_namespace_uids = \"a-b\"\n",
			want: []string{`2: user_namespace_uids: "a-b": ` + form}, dyn: def, userns: defNS},
		{name: "no dash", keys: "dynamic_uids = \"70000\"\n",
			want: []string{`2: dynamic_uids: "70000": ` + form}, dyn: def, userns: defNS},
		{name: "negative first", keys: "dynamic_uids = \"-1-5\"\n",
			want: []string{`2: dynamic_uids: "-1-5": ` + form}, dyn: def, userns: defNS},
		{name: "beyond 32 bits", keys: "dynamic_uids = \"4294967296-4294967297\"\n",
			want: []string{`2: dynamic_uids: "4294967296-4294967297": ` + form}, dyn: def, userns: defNS},
		{name: "ends before it starts", keys: "dynamic_uids = \"70010-70000\"\n",
			want: []string{`2: dynamic_uids: "70010-70000": the range ends before it starts`}, dyn: def, userns: defNS},
		{name: "user namespace ends before it starts", keys: "user_namespace_uids = \"2000000-1000000\"\n",
			want: []string{`2: user_namespace_uids: "2000000-1000000": the range ends before it starts`}, dyn: def, userns: defNS},
		{name: "dynamic includes root", keys: "dynamic_uids = \"0-100\"\n",
			want: []string{`2: dynamic_uids: "0-100": ` + root}, dyn: def, userns: defNS},
		{name: "only root", keys: "dynamic_uids = \"0-0\"\n",
			want: []string{`2: dynamic_uids: "0-0": ` + root}, dyn: def, userns: defNS},
		{name: "user namespace includes root", keys: "user_namespace_uids = \"0-100000\"\n",
			want: []string{`2: user_namespace_uids: "0-100000": ` + root}, dyn: def, userns: defNS},
		{name: "includes the invalid id 2^32-1", keys: "dynamic_uids = \"70000-4294967295\"\n",
			want: []string{`2: dynamic_uids: "70000-4294967295": ` + root}, dyn: def, userns: defNS},
		{name: "spaces around the numbers", keys: "dynamic_uids = \" 70000 - 70099 \"\n",
			dyn: sandbox.IDRange{First: 70000, Count: 100}, userns: defNS},
		{name: "a single id", keys: "dynamic_uids = \"70000-70000\"\n",
			dyn: sandbox.IDRange{First: 70000, Count: 1}, userns: defNS},
		{name: "overlapping ranges", keys: "dynamic_uids = \"100000-200000\"\nuser_namespace_uids = \"150000-300000\"\n",
			want: []string{`3: user_namespace_uids: 150000-300000 overlaps dynamic_uids 100000-200000`},
			dyn:  sandbox.IDRange{First: 100000, Count: 100001}, userns: sandbox.IDRange{First: 150000, Count: 150001}},
		{name: "ranges sharing one id", keys: "dynamic_uids = \"100000-200000\"\nuser_namespace_uids = \"200000-300000\"\n",
			want: []string{`3: user_namespace_uids: 200000-300000 overlaps dynamic_uids 100000-200000`},
			dyn:  sandbox.IDRange{First: 100000, Count: 100001}, userns: sandbox.IDRange{First: 200000, Count: 100001}},
		{name: "adjacent ranges", keys: "dynamic_uids = \"100000-199999\"\nuser_namespace_uids = \"200000-300000\"\n",
			dyn: sandbox.IDRange{First: 100000, Count: 100000}, userns: sandbox.IDRange{First: 200000, Count: 100001}},
		{name: "dynamic inside the default user namespace range", keys: "dynamic_uids = \"600000-600099\"\n",
			want: []string{`0: user_namespace_uids: 524288-1879048191 overlaps dynamic_uids 600000-600099`},
			dyn:  sandbox.IDRange{First: 600000, Count: 100}, userns: defNS},
		{name: "user namespace range one short of a block", keys: "user_namespace_uids = \"1000000-1065534\"\n",
			want: []string{`2: user_namespace_uids: 1000000-1065534 holds fewer than the 65536 ids one job's user namespace takes`},
			dyn:  def, userns: sandbox.IDRange{First: 1000000, Count: 65535}},
		{name: "user namespace range of one id", keys: "user_namespace_uids = \"1000000-1000000\"\n",
			want: []string{`2: user_namespace_uids: 1000000-1000000 holds fewer than the 65536 ids one job's user namespace takes`},
			dyn:  def, userns: sandbox.IDRange{First: 1000000, Count: 1}},
		{name: "user namespace range of exactly one block", keys: "user_namespace_uids = \"1000000-1065535\"\n",
			dyn: def, userns: sandbox.IDRange{First: 1000000, Count: 65536}},
		{name: "both bad at once", keys: "dynamic_uids = \"x\"\nuser_namespace_uids = \"9-1\"\n",
			want: []string{`2: dynamic_uids: "x": ` + form, `3: user_namespace_uids: "9-1": the range ends before it starts`},
			dyn:  def, userns: defNS},
		// Unsandboxed jobs get no ids from the ranges: accounts in them are
		// no problem then.
		{name: "an account's id with the sandbox off", keys: "dynamic_uids = \"65000-65600\"\n",
			dyn: sandbox.IDRange{First: 65000, Count: 601}, userns: defNS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := "sandbox = \"off\"\n" + tc.keys + catApp
			c, err := parseConfig("ids.toml", []byte(data), t.TempDir())
			sameProblems(t, problemLines(t, "ids.toml", err), tc.want)
			if c == nil {
				t.Fatal("no config returned")
			}
			if c.Runner.DynamicIDs != tc.dyn {
				t.Errorf("DynamicIDs %v (%+v), want %v", c.Runner.DynamicIDs, c.Runner.DynamicIDs, tc.dyn)
			}
			if c.Runner.UserNamespaceIDs != tc.userns {
				t.Errorf("UserNamespaceIDs %v (%+v), want %v", c.Runner.UserNamespaceIDs, c.Runner.UserNamespaceIDs, tc.userns)
			}
		})
	}
}

// TestIDRangeAccounts: with jobs sandboxed, a range holding an account's id
// is refused, naming the account: a job given that id would be it.
func TestIDRangeAccounts(t *testing.T) {
	t.Parallel()
	requireSandboxHere(t)
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skipf("no account with id 65534 here: %v", err)
	}
	if err := sandbox.CheckIDRange(sandbox.DefaultDynamicIDs); err != nil {
		t.Skipf("this host has accounts in the default dynamic range: %v", err)
	}
	if err := sandbox.CheckIDRange(sandbox.DefaultUserNamespaceIDs); err != nil {
		t.Skipf("this host has accounts in the default user namespace range: %v", err)
	}
	clash := func(r string) string {
		return fmt.Sprintf("user %q in /etc/passwd has id 65534, inside %s", nobody.Username, r)
	}
	tests := []struct {
		name string
		keys string // from line 2; line 1 is sandbox = "on"; max_sessions = 1 follows
		// want maps "LINE: KEY" to what its problems' messages must
		// contain (each part in one of them); no other key may have one.
		want map[string][]string
	}{
		{name: "defaults hold no account"},
		{name: "dynamic range holding nobody", keys: "dynamic_uids = \"65000-65600\"\n",
			want: map[string][]string{"2: dynamic_uids": {clash("65000-65600")}}},
		{name: "nobody the last id of the range", keys: "dynamic_uids = \"65524-65534\"\n",
			want: map[string][]string{"2: dynamic_uids": {clash("65524-65534")}}},
		{name: "nobody the first id of the range", keys: "dynamic_uids = \"65534-65544\"\n",
			want: map[string][]string{"2: dynamic_uids": {clash("65534-65544")}}},
		{name: "just below nobody", keys: "dynamic_uids = \"65520-65533\"\n"},
		{name: "user namespace range holding nobody", keys: "dynamic_uids = \"200000-200999\"\nuser_namespace_uids = \"60000-130000\"\n",
			want: map[string][]string{"3: user_namespace_uids": {clash("60000-130000")}}},
		{name: "root's neighbours", keys: "dynamic_uids = \"1-999\"\n",
			want: map[string][]string{"2: dynamic_uids": {`user "daemon" in /etc/passwd has id 1, inside 1-999`}}},
		{name: "an account in one range while the other is too small",
			keys: "dynamic_uids = \"65000-65600\"\nuser_namespace_uids = \"1000000-1000009\"\n",
			want: map[string][]string{
				"2: dynamic_uids":        {clash("65000-65600")},
				"3: user_namespace_uids": {"1000000-1000009 holds fewer than the 65536 ids"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.name == "root's neighbours" {
				if u, err := user.LookupId("1"); err != nil || u.Username != "daemon" {
					t.Skip("no account daemon with id 1 here")
				}
			}
			// max_sessions after the keys: ranges of 11 hold its job and a pool
			// of 8 initiators (10 held).
			data := "sandbox = \"on\"\n" + tc.keys + "max_sessions = 1\n" + catApp
			_, err := parseConfig("ids.toml", []byte(data), t.TempDir())
			lines := problemLines(t, "ids.toml", err)
			got := map[string][]string{} // every problem at each LINE: KEY
			for _, l := range lines {
				// LINE: KEY: MSG, KEY without ": "
				i := strings.Index(l, ": ")
				j := strings.Index(l[i+2:], ": ")
				if j < 0 {
					t.Errorf("unexpected problem %q", l)
					continue
				}
				at, msg := l[:i+2+j], l[i+2+j+2:]
				got[at] = append(got[at], msg)
			}
			var failed []string
			for at, parts := range tc.want {
				msgs, ok := got[at]
				if !ok {
					failed = append(failed, fmt.Sprintf("no problem at %s", at))
					continue
				}
				for _, p := range parts {
					if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, p) }) {
						failed = append(failed, fmt.Sprintf("%s: %q lacks %q", at, msgs, p))
					}
				}
				if len(msgs) > maxClashes+1 {
					failed = append(failed, fmt.Sprintf("%s: %d problems, want at most %d (the rest counted): %q", at, len(msgs), maxClashes+1, msgs))
				}
			}
			for at := range got {
				if _, ok := tc.want[at]; !ok {
					failed = append(failed, fmt.Sprintf("unexpected problem at %s: %q", at, got[at]))
				}
			}
			for _, f := range failed {
				t.Error(f)
			}
		})
	}
}

// TestIDRangeAccountsOneLineEach: an account clash is printed as
// FILE:LINE: KEY: message, like every problem, so each of its lines must
// carry that prefix: one problem per clashing account, no newline inside.
func TestIDRangeAccountsOneLineEach(t *testing.T) {
	t.Parallel()
	requireSandboxHere(t)
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skipf("no account with id 65534 here: %v", err)
	}
	data := "sandbox = \"on\"\ndynamic_uids = \"65000-65600\"\nmax_sessions = 1\n" + catApp
	_, err = parseConfig("ids.toml", []byte(data), t.TempDir())
	lines := problemLines(t, "ids.toml", err)
	named := false
	for _, l := range lines {
		if !strings.HasPrefix(l, "2: dynamic_uids: ") {
			t.Errorf("unexpected problem %q", l)
		}
		named = named || strings.Contains(l, fmt.Sprintf("user %q in /etc/passwd has id 65534", nobody.Username))
	}
	if !named {
		t.Fatalf("problems %q do not name %s", lines, nobody.Username)
	}
	for _, l := range lines {
		if strings.Contains(l, "\n") {
			t.Errorf("a problem holds a newline, so its second line would print without FILE:LINE: KEY: %q", l)
		}
	}
}

// TestIDRangeMaxSessions: with jobs sandboxed, the ranges must hold an id
// (or a user namespace block) for every job that may run at once plus every
// prepared sandbox.
func TestIDRangeMaxSessions(t *testing.T) {
	t.Parallel()
	const (
		dynMsg = "%d jobs and %d prepared sandboxes may need a dynamic uid each, but dynamic_uids %s holds %d: widen it, or lower max_sessions or initiators"
		nsMsg  = "%d jobs and %d prepared sandboxes may need a user namespace block each, but user_namespace_uids %s holds %d: widen it, or lower max_sessions or initiators"
	)
	// A pool of 8 initiators holds up to 10: two more wait to hand theirs over.
	same := catApp + "[[app]]\nname = \"b\"\ncommand = [\"cat\"]\n"
	two := same + "dir = \"/usr\"\n"
	tests := []struct {
		name    string
		sandbox string
		keys    string // lines 2 and 3 (and on); line 1 is sandbox = ...
		apps    string
		policy  map[string]string // policy dir files, policy_dir = "pol" when set
		want    []string
	}{
		{name: "100 sessions in 10 dynamic ids", sandbox: "on", keys: "dynamic_uids = \"70000-70009\"\nmax_sessions = 100\n", apps: catApp,
			want: []string{"3: max_sessions: " + fmt.Sprintf(dynMsg, 100, 10, "70000-70009", 10)}},
		{name: "exactly enough: 100 sessions and 10 prepared", sandbox: "on", keys: "dynamic_uids = \"70000-70109\"\nmax_sessions = 100\n", apps: catApp},
		{name: "one id short", sandbox: "on", keys: "dynamic_uids = \"70000-70108\"\nmax_sessions = 100\n", apps: catApp,
			want: []string{"3: max_sessions: " + fmt.Sprintf(dynMsg, 100, 10, "70000-70108", 109)}},
		{name: "a pool per app dir", sandbox: "on", keys: "dynamic_uids = \"70000-70110\"\nmax_sessions = 100\n", apps: two,
			want: []string{"3: max_sessions: " + fmt.Sprintf(dynMsg, 100, 20, "70000-70110", 111)}},
		{name: "apps of one policy and dir share a pool", sandbox: "on", keys: "dynamic_uids = \"70000-70109\"\nmax_sessions = 100\n", apps: same},
		{name: "max_sessions absent takes the default", sandbox: "on", keys: "dynamic_uids = \"70000-70999\"\n", apps: catApp,
			want: []string{"0: max_sessions: " + fmt.Sprintf(dynMsg, supervisor.DefaultMaxSessions, 10, "70000-70999", 1000)}},
		{name: "a policy with no initiators", sandbox: "on", keys: "dynamic_uids = \"70000-70099\"\nmax_sessions = 100\n",
			apps:   "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\npolicy = \"lean\"\n",
			policy: map[string]string{"lean.toml": "initiators = 0\n"}},
		{name: "user namespace blocks", sandbox: "on", keys: "user_namespace_uids = \"1000000-1131071\"\nmax_sessions = 3\n",
			apps:   "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\npolicy = \"ns\"\n",
			policy: map[string]string{"ns.toml": "user_namespace = true\ninitiators = 0\n"},
			want:   []string{"3: max_sessions: " + fmt.Sprintf(nsMsg, 3, 0, "1000000-1131071", 2)}},
		{name: "user namespace blocks enough", sandbox: "on", keys: "user_namespace_uids = \"1000000-1131071\"\nmax_sessions = 2\n",
			apps:   "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\npolicy = \"ns\"\n",
			policy: map[string]string{"ns.toml": "user_namespace = true\ninitiators = 0\n"}},
		// A user-namespaced dynamic user takes no dynamic id.
		{name: "user namespaced jobs take no dynamic ids", sandbox: "on", keys: "dynamic_uids = \"70000-70000\"\nmax_sessions = 2\n",
			apps:   "[[app]]\nname = \"a\"\ncommand = [\"cat\"]\npolicy = \"ns\"\n",
			policy: map[string]string{"ns.toml": "user_namespace = true\ninitiators = 0\n"}},
		{name: "sandbox off needs no ids", sandbox: "off", keys: "dynamic_uids = \"70000-70009\"\nmax_sessions = 100\n", apps: catApp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.sandbox == "on" {
				requireSandboxHere(t)
			}
			dir := t.TempDir()
			head := "sandbox = \"" + tc.sandbox + "\"\n" + tc.keys
			if tc.policy != nil {
				mkdir(t, filepath.Join(dir, "pol"))
				for f, body := range tc.policy {
					writeFile(t, filepath.Join(dir, "pol", f), body)
				}
				head += "policy_dir = \"pol\"\n"
			}
			c, err := parseConfig("ids.toml", []byte(head+tc.apps), dir)
			sameProblems(t, problemLines(t, "ids.toml", err), tc.want)
			if c == nil {
				t.Fatal("no config returned")
			}
		})
	}
}

// TestPassHeaders: only the withheld credential headers may be passed,
// canonicalized; Proxy never (httpoxy), anything else is refused.
func TestPassHeaders(t *testing.T) {
	t.Parallel()
	const only = `only Cookie, Authorization and Proxy-Authorization are withheld, so only they can be passed`
	const proxy = `5: app[0].pass_headers: Proxy is never passed: a job would take it for HTTP_PROXY (httpoxy)`
	tests := []struct {
		name  string
		list  string // the value of pass_headers on line 5; "" leaves the key out
		extra string // a second app, from line 6
		pass  []string
		pass2 []string
		want  []string
	}{
		{name: "absent"},
		{name: "empty", list: "[]"},
		{name: "cookie and authorization, any case", list: `["Cookie", "authorization"]`, pass: []string{"Cookie", "Authorization"}},
		{name: "proxy-authorization", list: `["PROXY-AUTHORIZATION"]`, pass: []string{"Proxy-Authorization"}},
		{name: "all three", list: `["cookie", "Authorization", "proxy-Authorization"]`, pass: []string{"Cookie", "Authorization", "Proxy-Authorization"}},
		{name: "proxy refused", list: `["Proxy"]`, want: []string{proxy}},
		{name: "proxy refused in any case", list: `["proxy"]`, want: []string{proxy}},
		{name: "other header refused", list: `["X-Other"]`, want: []string{`5: app[0].pass_headers: "X-Other": ` + only}},
		{name: "underscore spelling refused", list: `["Proxy_Authorization"]`, want: []string{`5: app[0].pass_headers: "Proxy_Authorization": ` + only}},
		{name: "empty name refused", list: `[""]`, want: []string{`5: app[0].pass_headers: "": ` + only}},
		{name: "good ones kept beside bad ones", list: `["Proxy", "Cookie", "X-Other"]`, pass: []string{"Cookie"},
			want: []string{proxy, `5: app[0].pass_headers: "X-Other": ` + only}},
		{name: "second app's problem names it", list: `["Cookie"]`, pass: []string{"Cookie"},
			extra: "[[app]]\nname = \"b\"\ncommand = [\"cat\"]\npass_headers = [\"Host\"]\n",
			want:  []string{`9: app[1].pass_headers: "Host": ` + only}},
		{name: "apps pass their own", list: `["Authorization"]`, pass: []string{"Authorization"},
			extra: "[[app]]\nname = \"b\"\ncommand = [\"cat\"]\npass_headers = [\"cookie\"]\n", pass2: []string{"Cookie"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := "sandbox = \"off\"\n" + catApp
			if tc.list != "" {
				data += "pass_headers = " + tc.list + "\n"
			} else {
				data += "\n"
			}
			data += tc.extra
			c, err := parseConfig("ph.toml", []byte(data), t.TempDir())
			sameProblems(t, problemLines(t, "ph.toml", err), tc.want)
			if c == nil || len(c.Sup.Apps) == 0 {
				t.Fatal("no apps returned")
			}
			if got := c.Sup.Apps[0].PassHeaders; !slices.Equal(got, tc.pass) {
				t.Errorf("app a PassHeaders %q, want %q", got, tc.pass)
			}
			if tc.extra != "" {
				if got := c.Sup.Apps[1].PassHeaders; !slices.Equal(got, tc.pass2) {
					t.Errorf("app b PassHeaders %q, want %q", got, tc.pass2)
				}
			}
		})
	}
}

// TestConfigViewApps: with jobs sandboxed, an app whose program or dir its
// jobs could not see is refused when the config loads.
func TestConfigViewApps(t *testing.T) {
	t.Parallel()
	requireSandboxHere(t)
	const outside = `is outside the sandbox's view under policy %q: add its directory to the policy's ro, or make it the app's dir`
	type env struct {
		cfgDir, progDir, prog string
	}
	// Every config is viewConfig's: sandbox on line 1, one top-level key on
	// line 2, app "a" from line 3 with its command on line 5 and one more
	// key on line 6.
	tests := []struct {
		name             string
		sandbox, top     string
		command, appRest func(e env) string
		extra            string // more tables, from line 7
		setup            func(t *testing.T, e env)
		want             func(e env) []string
		check            func(t *testing.T, e env, c *config)
	}{
		{
			name:    "program in a directory outside the view",
			command: func(e env) string { return e.prog },
			want: func(e env) []string {
				return []string{"5: app[0].command: " + e.prog + " " + fmt.Sprintf(outside, "default")}
			},
		},
		{
			name:    "program outside the view, the sandbox off",
			sandbox: "off",
			command: func(e env) string { return e.prog },
		},
		{
			name:    "program in the app's dir",
			command: func(e env) string { return e.prog },
			appRest: func(e env) string { return "dir = \"" + e.progDir + "\"" },
			check: func(t *testing.T, e env, c *config) {
				if a := c.Sup.Apps[0]; a.Dir != e.progDir || a.Path != e.prog {
					t.Errorf("app Dir %q Path %q, want %q and %q", a.Dir, a.Path, e.progDir, e.prog)
				}
			},
		},
		{
			name:    "relative program in a relative dir",
			setup:   func(t *testing.T, e env) { writeExec(t, filepath.Join(e.cfgDir, "bin", "run.sh")) },
			command: func(e env) string { return "./bin/run.sh" },
			appRest: func(e env) string { return "dir = \"bin\"" },
			check: func(t *testing.T, e env, c *config) {
				if a := c.Sup.Apps[0]; a.Dir != filepath.Join(e.cfgDir, "bin") || a.Path != filepath.Join(e.cfgDir, "bin", "run.sh") {
					t.Errorf("app Dir %q Path %q, want both resolved from the config's directory", a.Dir, a.Path)
				}
			},
		},
		{
			name:    "relative program and no dir",
			setup:   func(t *testing.T, e env) { writeExec(t, filepath.Join(e.cfgDir, "bin", "run.sh")) },
			command: func(e env) string { return "./bin/run.sh" },
			want: func(e env) []string {
				return []string{"5: app[0].command: " + filepath.Join(e.cfgDir, "bin", "run.sh") + " " + fmt.Sprintf(outside, "default")}
			},
		},
		{
			name:    "program in another app's dir",
			appRest: func(e env) string { return "dir = \"" + e.progDir + "\"" },
			extra:   "[[app]]\nname = \"b\"\ncommand = [\"PROG\"]\n",
			want: func(e env) []string {
				return []string{"9: app[1].command: " + e.prog + " " + fmt.Sprintf(outside, "default")}
			},
		},
		{
			// The link is in the view (the app's dir); its target is not.
			name: "program a symlink out of the view",
			setup: func(t *testing.T, e env) {
				mkdir(t, filepath.Join(e.cfgDir, "app"))
				if err := os.Symlink(e.prog, filepath.Join(e.cfgDir, "app", "run")); err != nil {
					t.Fatal(err)
				}
			},
			command: func(e env) string { return "./app/run" },
			appRest: func(e env) string { return "dir = \"app\"" },
			want: func(e env) []string {
				return []string{"5: app[0].command: " + filepath.Join(e.cfgDir, "app", "run") + " " + fmt.Sprintf(outside, "default")}
			},
		},
		{
			name: "a policy's ro shows the program",
			setup: func(t *testing.T, e env) {
				mkdir(t, filepath.Join(e.cfgDir, "pol"))
				writeFile(t, filepath.Join(e.cfgDir, "pol", "wide.toml"), "ro = [\""+e.progDir+"\"]\n")
			},
			top:     "policy_dir = \"pol\"",
			command: func(e env) string { return e.prog },
			appRest: func(e env) string { return "policy = \"wide\"" },
		},
		{
			name: "a tenant's policy does not show it",
			setup: func(t *testing.T, e env) {
				mkdir(t, filepath.Join(e.cfgDir, "pol"))
				writeFile(t, filepath.Join(e.cfgDir, "pol", "wide.toml"), "ro = [\""+e.progDir+"\"]\n")
			},
			top:     "policy_dir = \"pol\"",
			command: func(e env) string { return e.prog },
			appRest: func(e env) string { return "policy = \"wide\"" },
			extra:   "[[tenant]]\nname = \"t\"\ntoken_sha256 = \"" + strings.Repeat("0", 64) + "\"\npolicy = \"strict\"\n",
			want: func(e env) []string {
				return []string{"5: app[0].command: " + e.prog + " " + fmt.Sprintf(outside, "strict")}
			},
		},
		{
			name:    "dir above the data dir",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \".\"" },
		},
		{
			name:    "dir is the data dir",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"data\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "data"))} },
		},
		{
			name:    "dir is the data dir, absolute",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"" + filepath.Join(e.cfgDir, "data") + "\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "data"))} },
		},
		{
			name:    "dir is the default data dir",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "var")) },
			appRest: func(e env) string { return "dir = \"var\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "var"))} },
		},
		{
			name:    "dir below the data dir",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data", "sub")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"data/sub\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "data", "sub"))} },
		},
		{
			name:    "dir is the policy dir",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "pol")) },
			top:     "policy_dir = \"pol\"",
			appRest: func(e env) string { return "dir = \"pol\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "pol"))} },
		},
		{
			name:    "dir is the data dir, the sandbox off",
			sandbox: "off",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"data\"" },
		},
		{
			name: "dir a symlink to the data dir",
			setup: func(t *testing.T, e env) {
				mkdir(t, filepath.Join(e.cfgDir, "data"))
				if err := os.Symlink("data", filepath.Join(e.cfgDir, "link")); err != nil {
					t.Fatal(err)
				}
			},
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"link\"" },
			// The dir is taken where it really is, and named so.
			want: func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "data"))} },
		},
		{
			name:    "the dir's problem is on the dir's line",
			setup:   func(t *testing.T, e env) { mkdir(t, filepath.Join(e.cfgDir, "data")) },
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"data\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "data"))} },
		},
		{
			// The sandbox hides the real path of each Hide entry (it
			// resolves symlinks at each job's start), so this app's dir
			// would be an empty mask in every job.
			name: "dir is where a symlinked data dir points",
			setup: func(t *testing.T, e env) {
				mkdir(t, filepath.Join(e.cfgDir, "real"))
				if err := os.Symlink("real", filepath.Join(e.cfgDir, "data")); err != nil {
					t.Fatal(err)
				}
			},
			top:     "data_dir = \"data\"",
			appRest: func(e env) string { return "dir = \"real\"" },
			want:    func(e env) []string { return []string{ownFilesProblem(filepath.Join(e.cfgDir, "real"))} },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := env{cfgDir: t.TempDir(), progDir: t.TempDir()}
			e.prog = writeExec(t, filepath.Join(e.progDir, "run.sh"))
			if tc.setup != nil {
				tc.setup(t, e)
			}
			mode, top, command, rest := tc.sandbox, tc.top, "cat", ""
			if mode == "" {
				mode = "on"
			}
			if top == "" {
				top = "# no other key"
			}
			if tc.command != nil {
				command = tc.command(e)
			}
			if tc.appRest != nil {
				rest = tc.appRest(e)
			}
			data := "sandbox = \"" + mode + "\"\n" + top + "\n[[app]]\nname = \"a\"\ncommand = [\"" + command + "\"]\n" + rest + "\n" +
				strings.ReplaceAll(tc.extra, "PROG", e.prog)
			file := writeFile(t, filepath.Join(e.cfgDir, "chimirror.toml"), data)
			c, err := parseConfig(file, []byte(data), e.cfgDir)
			got := problemLines(t, file, err)
			var want []string
			if tc.want != nil {
				want = tc.want(e)
			}
			sameProblems(t, got, want)
			if c == nil {
				t.Fatal("no config returned")
			}
			if tc.check != nil {
				tc.check(t, e, c)
			}
		})
	}
}

// ownFilesProblem is the problem of app[0] (dir on line 6) whose dir holds
// the server's own files.
func ownFilesProblem(dir string) string {
	return fmt.Sprintf("6: app[0].dir: %q holds the server's own files, which no job may see", dir)
}

// TestServerPaths: the server's own files (config file, policy dir, data
// dir, the running binary) are in every job's Hide, as absolute paths.
func TestServerPaths(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.Abs(exe)
	if err != nil {
		t.Fatal(err)
	}
	absData := t.TempDir()
	tests := []struct {
		name string
		file func(dir string) string // parseConfig's file argument
		top  string
		// want are the Hide entries besides the binary, relative to the
		// config's directory unless absolute.
		want []string
	}{
		{name: "config, policy dir, data dir", file: func(dir string) string { return filepath.Join(dir, "chimirror.toml") },
			top: "policy_dir = \"pol\"\ndata_dir = \"data\"\n", want: []string{"chimirror.toml", "pol", "data"}},
		{name: "the default data dir and no policy dir", file: func(dir string) string { return filepath.Join(dir, "chimirror.toml") },
			want: []string{"chimirror.toml", "var"}},
		{name: "an absolute data dir", file: func(dir string) string { return filepath.Join(dir, "chimirror.toml") },
			top: "data_dir = \"" + absData + "\"\n", want: []string{"chimirror.toml", absData}},
		{name: "paths with dot-dot cleaned", file: func(dir string) string { return filepath.Join(dir, "chimirror.toml") },
			top: "policy_dir = \"./x/../pol\"\ndata_dir = \"data/.\"\n", want: []string{"chimirror.toml", "pol", "data"}},
		{name: "the embedded default hides no file of its name", file: func(string) string { return "(embedded default)" },
			want: []string{"var"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mkdir(t, filepath.Join(dir, "pol"))
			file := tc.file(dir)
			data := "sandbox = \"off\"\n" + tc.top + catApp
			if filepath.IsAbs(file) {
				writeFile(t, file, data)
			}
			c, err := parseConfig(file, []byte(data), dir)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			want := []string{exe}
			for _, w := range tc.want {
				if !filepath.IsAbs(w) {
					w = filepath.Join(dir, w)
				}
				want = append(want, w)
			}
			for _, h := range c.Sup.Hide {
				if !filepath.IsAbs(h) || filepath.Clean(h) != h {
					t.Errorf("Hide entry %q is not an absolute, clean path", h)
				}
			}
			got := slices.Clone(c.Sup.Hide)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Hide %q, want %q", c.Sup.Hide, want)
			}
			if !filepath.IsAbs(c.DataDir) || !slices.Contains(c.Sup.Hide, c.DataDir) {
				t.Errorf("DataDir %q is not hidden, or not absolute", c.DataDir)
			}
		})
	}
}

// TestQuickView: quick mode lets a sandboxed job see its program read-only
// when the default view does not show it, and adds nothing when it does.
func TestQuickView(t *testing.T) {
	t.Parallel()
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat in PATH")
	}
	if cat, err = filepath.Abs(cat); err != nil {
		t.Fatal(err)
	}
	catReal, err := filepath.EvalSymlinks(cat)
	if err != nil {
		t.Fatal(err)
	}
	def, err := policies.Load("")
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := def.Get("default")
	if !(sandbox.View{RO: pol.ReadOnly}).Visible(catReal) {
		t.Skipf("cat (%s) is outside the default view here", catReal)
	}
	progDir, linkDir := t.TempDir(), t.TempDir()
	prog := writeExec(t, filepath.Join(progDir, "Run Me.sh"))
	toProg := filepath.Join(linkDir, "to-prog")
	toCat := filepath.Join(linkDir, "to-cat")
	for link, target := range map[string]string{toProg: prog, toCat: catReal} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		argv     []string
		appName  string
		path     string   // App.Path
		readOnly []string // App.ReadOnly
	}{
		{name: "cat from PATH", argv: []string{"cat", "-u"}, appName: "cat", path: cat},
		{name: "cat by its path", argv: []string{catReal}, appName: "cat", path: catReal},
		{name: "a script in a temporary dir", argv: []string{prog, "x"}, appName: "run-me.sh", path: prog, readOnly: []string{prog}},
		{name: "a symlink to the script", argv: []string{toProg}, appName: "to-prog", path: prog, readOnly: []string{prog}},
		{name: "a symlink out of the view to cat", argv: []string{toCat}, appName: "to-cat", path: catReal, readOnly: []string{catReal}},
	}
	if _, err := os.Stat("/bin/cat"); err == nil && cat != "/bin/cat" {
		tests = append(tests, struct {
			name     string
			argv     []string
			appName  string
			path     string
			readOnly []string
		}{name: "/bin/cat", argv: []string{"/bin/cat"}, appName: "cat", path: "/bin/cat"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := &config{Listen: defaultListen, Sandbox: "on", Sup: supervisor.Config{Hide: []string{"/nonexistent/chimirror"}}}
			c, err := quickConfig(base, tc.argv)
			if err != nil {
				t.Fatalf("quickConfig: %v", err)
			}
			if len(c.Sup.Apps) != 1 {
				t.Fatalf("%d apps, want 1", len(c.Sup.Apps))
			}
			a := c.Sup.Apps[0]
			if a.Name != tc.appName || c.Web.QuickApp != tc.appName {
				t.Errorf("app name %q, QuickApp %q, want %q", a.Name, c.Web.QuickApp, tc.appName)
			}
			if a.Path != tc.path {
				t.Errorf("Path %q, want %q", a.Path, tc.path)
			}
			if !slices.Equal(a.ReadOnly, tc.readOnly) {
				t.Errorf("ReadOnly %q, want %q", a.ReadOnly, tc.readOnly)
			}
			if !slices.Equal(a.Args, tc.argv) {
				t.Errorf("Args %q, want the command line %q", a.Args, tc.argv)
			}
			if a.Policy == nil || a.Policy.Name != "default" {
				t.Errorf("policy %v, want the built-in default", a.Policy)
			}
			// The job then sees its program, wherever it lives.
			if msgs := outsideView(a, nil, c.Sup.Hide); len(msgs) > 0 {
				t.Errorf("the quick app's own view still lacks its program: %q", msgs)
			}
			if c.Path != "" || c.Source != "quick mode: "+strings.Join(tc.argv, " ") {
				t.Errorf("Path %q Source %q", c.Path, c.Source)
			}
			if !slices.Equal(c.Sup.Hide, base.Sup.Hide) {
				t.Errorf("Hide %q, want the base's %q", c.Sup.Hide, base.Sup.Hide)
			}
		})
	}
}

// TestFixedIDsInRanges: a policy that runs its jobs as a fixed uid or gid
// the id ranges hold would share it with the jobs given it, and own user
// namespaces of a block it starts.
func TestFixedIDsInRanges(t *testing.T) {
	t.Parallel()
	requireSandboxHere(t)
	for _, tc := range []struct{ name, policy, want string }{
		{"a uid among the dynamic ones", "user = \"61190\"\ngroup = \"nogroup\"\n",
			`policy "p" runs jobs as uid 61190, which dynamic_uids 61184-65519 holds`},
		{"a gid among the dynamic ones", "user = \"nobody\"\ngroup = \"61200\"\n",
			`policy "p" runs jobs as gid 61200, which dynamic_uids 61184-65519 holds`},
		{"a uid among the user namespace blocks", "user = \"524288\"\ngroup = \"nogroup\"\n",
			`policy "p" runs jobs as uid 524288, which user_namespace_uids`},
		{"nobody is outside both", "user = \"nobody\"\ngroup = \"nogroup\"\n", ""},
		{"a user namespace's ids are its own", "user = \"61190\"\ngroup = \"61190\"\nuser_namespace = true\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mkdir(t, filepath.Join(dir, "pol"))
			writeFile(t, filepath.Join(dir, "pol", "p.toml"), tc.policy)
			_, err := parseConfig("f.toml", []byte("sandbox = \"on\"\npolicy_dir = \"pol\"\n[[app]]\nname = \"a\"\ncommand = [\"cat\"]\npolicy = \"p\"\n"), dir)
			var want []string
			if tc.want != "" {
				want = []string{"6: app[0].policy: " + tc.want}
			}
			got := problemLines(t, "f.toml", err)
			if len(want) == 1 && len(got) == 1 && strings.HasPrefix(got[0], want[0]) {
				return
			}
			sameProblems(t, got, want)
		})
	}
}

// TestAppPathsThroughLinks: an app's dir and program reached through a
// symlinked directory (/home a link to var/home, say) are taken where they
// really are, as a view binds them, so the job's cwd and program exist in
// its view.
func TestAppPathsThroughLinks(t *testing.T) {
	t.Parallel()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "var", "home")
	writeExec(t, filepath.Join(real, "app", "run.sh"))
	if err := os.Symlink("var/home", filepath.Join(dir, "home")); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig("l.toml", []byte(fmt.Sprintf("sandbox = \"off\"\n[[app]]\nname = \"a\"\ncommand = [%q]\ndir = %q\n",
		filepath.Join(dir, "home", "app", "run.sh"), filepath.Join(dir, "home", "app"))), dir)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Sup.Apps[0]
	if want := filepath.Join(real, "app"); a.Dir != want {
		t.Errorf("dir %q, want %q", a.Dir, want)
	}
	if want := filepath.Join(real, "app", "run.sh"); a.Path != want {
		t.Errorf("program %q, want %q", a.Path, want)
	}
}

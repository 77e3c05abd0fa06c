package main

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/tomlstrict"
	"github.com/chimirror/chimirror/web"
)

// defaultConfig is served when there is no --config and no ./chimirror.toml.
// It is a copy of the repository's chimirror.toml (a test keeps them equal).
//
//go:embed default.toml
var defaultConfig []byte

// fileConfig is chimirror.toml. Every key is documented in the example file.
type fileConfig struct {
	Listen            string              `toml:"listen"`
	Origins           []string            `toml:"origins"`
	MaxSessions       int                 `toml:"max_sessions"`
	MaxPerClient      int                 `toml:"max_sessions_per_client"`
	MaxMessageBytes   int64               `toml:"max_message_bytes"`
	MaxLineBytes      int64               `toml:"max_line_bytes"`
	PingInterval      tomlstrict.Duration `toml:"ping_interval"`
	PongTimeout       tomlstrict.Duration `toml:"pong_timeout"`
	WriteTimeout      tomlstrict.Duration `toml:"write_timeout"`
	HandshakeTimeout  tomlstrict.Duration `toml:"handshake_timeout"`
	ReadHeaderTimeout tomlstrict.Duration `toml:"read_header_timeout"`
	Drain             tomlstrict.Duration `toml:"drain"`
	ReplayMemoryMax   any                 `toml:"replay_memory_max"` // a size: checked by replay
	Sandbox           string              `toml:"sandbox"`
	DynamicUIDs       string              `toml:"dynamic_uids"`
	UserNamespaceUIDs string              `toml:"user_namespace_uids"`
	PolicyDir         string              `toml:"policy_dir"`
	DataDir           string              `toml:"data_dir"`
	Retention         tomlstrict.Duration `toml:"retention"`
	SpoolRetention    tomlstrict.Duration `toml:"spool_retention"`
	SampleInterval    tomlstrict.Duration `toml:"sample_interval"`
	Chargeback        chargebackConfig    `toml:"chargeback"`
	AdminListen       string              `toml:"admin_listen"`
	AdminTokens       []string            `toml:"admin_tokens_sha256"`
	AdminPublic       bool                `toml:"admin_public"`
	TLSCert           string              `toml:"tls_cert"`
	TLSKey            string              `toml:"tls_key"`
	AdminTLSCert      string              `toml:"admin_tls_cert"`
	AdminTLSKey       string              `toml:"admin_tls_key"`
	AdminClientCA     string              `toml:"admin_client_ca"`
	TrustedProxies    []string            `toml:"trusted_proxies"`
	Hosts             []string            `toml:"hosts"`
	BasePath          string              `toml:"base_path"`
	BodyTimeout       tomlstrict.Duration `toml:"body_timeout"`
	IdleTimeout       tomlstrict.Duration `toml:"idle_timeout"`
	App               []appConfig         `toml:"app"`
	Tenant            []tenantConfig      `toml:"tenant"`
}

type chargebackConfig struct {
	CPUSecond float64 `toml:"cpu_second"`
	GiBHour   float64 `toml:"gib_hour"`
}

type tenantConfig struct {
	Name        string `toml:"name"`
	TokenSHA256 string `toml:"token_sha256"`
	Policy      string `toml:"policy"`
	MaxSessions int    `toml:"max_sessions"`
}

type appConfig struct {
	Name        string              `toml:"name"`
	Command     []string            `toml:"command"`
	Dir         string              `toml:"dir"`
	Env         []string            `toml:"env"`
	ExitSignal  string              `toml:"exit_signal"`
	Grace       tomlstrict.Duration `toml:"grace"`
	Binary      bool                `toml:"binary"`
	Policy      string              `toml:"policy"`
	PassHeaders []string            `toml:"pass_headers"`
	Mode        string              `toml:"mode"`
}

// config is a loaded, validated, resolved configuration.
type config struct {
	Source  string // file name, or embeddedSource
	Path    string // the file to re-read on SIGHUP; "" for the embedded default and quick mode
	Listen  string
	Sandbox string // "auto", "on" or "off"
	// Runner is the sandbox.Runner's options: the ids jobs may get.
	Runner sandbox.RunnerOptions
	Sup    supervisor.Config
	Web    web.Options

	Policies  *policies.Set
	DataDir   string // holds ledger.db and admin.token
	Retention time.Duration
	// SpoolRetention is spool_retention: spools older are pruned (0: kept).
	SpoolRetention time.Duration
	Chargeback     chargebackConfig
	AdminListen    string
	AdminTokens    []web.AdminToken
	// AdminEdge is the admin listener's edge; Web.Edge the public one's.
	AdminEdge   web.Edge
	AdminPublic bool // admin_listen may be off loopback (with TLS)
	// quickData: quick mode chose DataDir (no --config, no --data-dir);
	// it may move to a temporary one when another quick server has it.
	quickData bool
	// tls: the files of both listeners' TLS, and their certificates.
	tls tlsSetup

	// overrides applies the command line's --listen, --admin-listen and
	// --data-dir; a reload applies them to the file it re-reads too.
	overrides func(*config)

	// Where the config came from, for the server's own paths (serverPaths)
	// and the problems found after it is parsed (jobProblems).
	file, dir, policyDir string
	idx                  *tomlstrict.Index
	// jobsChecked: jobProblems found none for c as it is (parseConfig,
	// sandboxed); whatever changes what it checks clears it.
	jobsChecked bool
}

const (
	defaultListen      = "127.0.0.1:8080"
	defaultAdminListen = "127.0.0.1:8081"
	defaultDataDir     = "var"
)

// embeddedSource is the name of the built-in config, which no file holds.
const embeddedSource = "(embedded default)"

// spoolDir is where a data dir keeps its jobs' spools.
func spoolDir(dataDir string) string { return filepath.Join(dataDir, "spool") }

// ledgerPath is the ledger file in a data dir.
func ledgerPath(dataDir string) string { return filepath.Join(dataDir, "ledger.db") }

// notNameChars are what quick mode replaces in a command's base name.
var notNameChars = regexp.MustCompile(`[^a-z0-9._-]`)

// loadConfig reads path; "" means ./chimirror.toml if present, else the
// embedded default.
func loadConfig(path string) (*config, error) { return loadConfigFor(path, true) }

// loadConfigFor is loadConfig; without needApps a file may have no
// [[app]]: quick mode takes only its server settings, and the command is
// the app.
func loadConfigFor(path string, needApps bool) (*config, error) {
	name, data, dir := path, []byte(nil), ""
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		data, dir = b, filepath.Dir(path)
	default:
		b, err := os.ReadFile("chimirror.toml")
		switch {
		case err == nil:
			name, data, dir = "chimirror.toml", b, "."
		case errors.Is(err, os.ErrNotExist):
			name, data, dir = embeddedSource, defaultConfig, "."
		default:
			return nil, fmt.Errorf("read config: %w", err)
		}
	}
	c, err := parseConfigFor(name, data, dir, needApps)
	if c != nil && name != embeddedSource {
		c.Path = name
	}
	return c, err
}

// parseConfig validates everything and resolves executables now, so a bad
// config fails at start rather than on some later connection. Every problem
// found is reported, in the order of the steps below.
func parseConfig(file string, data []byte, dir string) (*config, error) {
	return parseConfigFor(file, data, dir, true)
}

// parseConfigFor is parseConfig; without needApps, no [[app]] is not a
// problem (see loadConfigFor).
func parseConfigFor(file string, data []byte, dir string, needApps bool) (*config, error) {
	var fc fileConfig
	idx, ps, _ := tomlstrict.Decode(file, data, &fc)
	if len(ps) > 0 {
		return nil, ps
	}
	p := &configParse{fc: &fc, c: &config{Source: file, Listen: fc.Listen, Sandbox: fc.Sandbox,
		Retention: time.Duration(fc.Retention), SpoolRetention: time.Duration(fc.SpoolRetention), Chargeback: fc.Chargeback, AdminListen: fc.AdminListen,
		DataDir: fc.DataDir, file: file, dir: dir, idx: idx}}
	p.server()
	boxed := p.sandbox()
	p.policies()
	p.web()
	p.tls()
	p.c.setDataDir(p.c.DataDir)
	p.edge()
	p.c.Sup = supervisor.Config{MaxSessions: fc.MaxSessions, MaxSessionsPerClient: fc.MaxPerClient, Drain: time.Duration(fc.Drain),
		SampleEvery: time.Duration(fc.SampleInterval), Retention: p.c.Retention, Hide: p.c.Sup.Hide,
		SpoolDir: p.c.Sup.SpoolDir, SpoolRetention: p.c.SpoolRetention}
	p.replay()
	seen := make(map[string]int)
	for i, a := range fc.App {
		p.app(i, a, seen)
	}
	names, tokens := map[string]int{}, map[string]int{}
	for i, tc := range fc.Tenant {
		p.tenant(i, tc, names, tokens)
	}
	if len(fc.App) == 0 && needApps {
		p.ps = append(p.ps, tomlstrict.Problem{File: file, Msg: "no [[app]] configured: add at least one"})
	}
	if boxed {
		jps := p.c.jobProblems()
		p.ps = append(p.ps, jps...)
		p.c.jobsChecked = len(jps) == 0
	}
	return p.c, p.ps.Err()
}

// minReplayMemory is the least replay_memory_max: one ring of the
// largest policy must fit.
const minReplayMemory = 1 << 20

// replay checks replay_memory_max against the policies' rings: one job's
// ring that could never fill would hold its output back for good.
func (p *configParse) replay() {
	var sz policies.Size
	if v := p.fc.ReplayMemoryMax; v != nil {
		if err := sz.UnmarshalTOML(v); err != nil {
			p.at("", 0, "replay_memory_max", "%v", err)
			return
		}
	}
	most := int64(sz)
	p.c.Sup.ReplayMemoryMaxBytes = most
	if most == 0 {
		most = supervisor.DefaultReplayMemoryMax
	} else if most < minReplayMemory {
		p.at("", 0, "replay_memory_max", "%s is too small: at least 1MiB", policies.FormatSize(most))
		return
	}
	if p.c.Policies == nil {
		return
	}
	for _, pol := range p.c.Policies.All() {
		if pol.ReplayBytes > most {
			p.at("", 0, "replay_memory_max", "%s is smaller than policy %s's replay_bytes %s: its jobs' rings could never fill",
				policies.FormatSize(most), pol.Name, policies.FormatSize(pol.ReplayBytes))
		}
	}
}

// configParse is one parseConfig under way: the file as decoded, the
// config being built from it, and every problem found so far.
type configParse struct {
	fc *fileConfig
	c  *config
	ps tomlstrict.Problems
}

// at records a problem at table's n-th entry's key, or at a top-level key
// when table is "".
func (p *configParse) at(table string, n int, key, format string, args ...any) {
	p.ps = append(p.ps, p.c.problemAt(table, n, key, format, args...))
}

// server takes the listeners, the data dir, retention, chargeback and the
// admin tokens, with their defaults.
func (p *configParse) server() {
	c, fc, dir, at := p.c, p.fc, p.c.dir, p.at
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.AdminListen == "" {
		c.AdminListen = defaultAdminListen
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) { // like every path in the file: from its directory
		c.DataDir = filepath.Join(dir, c.DataDir)
	}
	if c.Retention > 0 && c.Retention < time.Hour {
		at("", 0, "retention", "%v is too short: keep at least an hour of records, or leave it out to keep them all", c.Retention)
	}
	switch sr := c.SpoolRetention; {
	case sr < 0:
		at("", 0, "spool_retention", "must not be negative")
	case sr > 0 && sr < time.Minute:
		at("", 0, "spool_retention", "%v is too short: keep spools at least a minute, or leave it out to keep them all", sr)
	case sr > 0 && c.Retention > 0 && sr > c.Retention:
		at("", 0, "spool_retention", "%v outlives retention %v: a spool whose record is pruned can no longer be read", sr, c.Retention)
	case sr == 0 && c.Retention > 0:
		c.SpoolRetention = c.Retention // a spool never outlives its record
	}
	if fc.Chargeback.CPUSecond < 0 || fc.Chargeback.GiBHour < 0 {
		at("", 0, "chargeback", "rates must not be negative")
	}
	for i, entry := range fc.AdminTokens {
		label, h, found := strings.Cut(entry, ":")
		if !found {
			label, h = fmt.Sprintf("admin-%d", i+1), entry
		}
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != sha256.Size || label == "" {
			at("", 0, "admin_tokens_sha256", "entry %d is not \"LABEL:SHA256\" or a SHA-256 in hex (64 hex digits; make one with: printf %%s TOKEN | sha256sum)", i+1)
			continue
		}
		c.AdminTokens = append(c.AdminTokens, web.AdminToken{Label: label, SHA256: [32]byte(sum)})
	}
}

// sandbox checks the sandbox mode and the id ranges jobs get, and reports
// whether jobs will be sandboxed here: what only a sandbox needs is checked
// then, so a config that runs plain jobs as a user still loads.
func (p *configParse) sandbox() (boxed bool) {
	c, fc, at := p.c, p.fc, p.at
	switch c.Sandbox {
	case "":
		c.Sandbox = "auto"
	case "auto", "on", "off":
	default:
		at("", 0, "sandbox", "%q: use \"auto\" (on when root), \"on\" or \"off\"", fc.Sandbox)
	}
	boxed = c.Sandbox == "on" || (c.Sandbox == "auto" && sandbox.Available() == nil)
	c.Runner.DynamicIDs = idRange(fc.DynamicUIDs, sandbox.DefaultDynamicIDs, func(msg string) { at("", 0, "dynamic_uids", "%s", msg) })
	c.Runner.UserNamespaceIDs = idRange(fc.UserNamespaceUIDs, sandbox.DefaultUserNamespaceIDs, func(msg string) { at("", 0, "user_namespace_uids", "%s", msg) })
	if c.Runner.DynamicIDs.Overlaps(c.Runner.UserNamespaceIDs) {
		at("", 0, "user_namespace_uids", "%s overlaps dynamic_uids %s", c.Runner.UserNamespaceIDs, c.Runner.DynamicIDs)
	}
	if c.Runner.UserNamespaceIDs.Count > 0 && c.Runner.UserNamespaceIDs.Count < sandbox.UserNamespaceBlock {
		at("", 0, "user_namespace_uids", "%s holds fewer than the %d ids one job's user namespace takes", c.Runner.UserNamespaceIDs, sandbox.UserNamespaceBlock)
	}
	if boxed {
		// A job given an id that belongs to an account would be that account.
		for _, rk := range []struct {
			key string
			r   sandbox.IDRange
		}{{"dynamic_uids", c.Runner.DynamicIDs}, {"user_namespace_uids", c.Runner.UserNamespaceIDs}} {
			clashes := sandbox.CheckIDRange(rk.r)
			for i, err := range clashes {
				if i == maxClashes {
					at("", 0, rk.key, "and %d more accounts inside %s", len(clashes)-i, rk.r)
					break
				}
				at("", 0, rk.key, "%v", err)
			}
		}
	}
	return boxed
}

// policies loads the policy dir (the built-in policies when none is set)
// and checks their seccomp profiles.
func (p *configParse) policies() {
	c, fc, dir, at := p.c, p.fc, p.c.dir, p.at
	policyDir := fc.PolicyDir
	if policyDir != "" && !filepath.IsAbs(policyDir) {
		policyDir = filepath.Join(dir, policyDir)
	}
	c.policyDir = policyDir
	pols, perr := policies.Load(policyDir)
	c.Policies = pols
	if perr != nil {
		var pps tomlstrict.Problems
		if errors.As(perr, &pps) {
			p.ps = append(p.ps, pps...)
		} else {
			at("", 0, "policy_dir", "%v", perr)
		}
	}
	if pols != nil {
		p.ps = append(p.ps, seccompProblems(pols.All())...)
	}
}

// web checks the protocol limits and origins, and makes the web options.
func (p *configParse) web() {
	c, fc, at := p.c, p.fc, p.at
	if fc.MaxSessions < 0 {
		at("", 0, "max_sessions", "must not be negative")
	}
	if fc.MaxPerClient < 0 {
		at("", 0, "max_sessions_per_client", "must not be negative")
	}
	if fc.MaxMessageBytes < 0 {
		at("", 0, "max_message_bytes", "must not be negative")
	}
	if fc.MaxLineBytes < 0 {
		at("", 0, "max_line_bytes", "must not be negative")
	}
	for _, o := range fc.Origins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			at("", 0, "origins", "%q must be an origin like \"https://example.com\"", o)
		}
	}
	c.Web = web.Options{
		Origins:  fc.Origins,
		Software: "chimirror/" + version,
		Limits: web.Limits{
			MaxMessageBytes:   fc.MaxMessageBytes,
			MaxLineBytes:      fc.MaxLineBytes,
			PingInterval:      time.Duration(fc.PingInterval),
			PongTimeout:       time.Duration(fc.PongTimeout),
			WriteTimeout:      time.Duration(fc.WriteTimeout),
			HandshakeTimeout:  time.Duration(fc.HandshakeTimeout),
			ReadHeaderTimeout: time.Duration(fc.ReadHeaderTimeout),
		},
	}
}

// app checks the i-th [[app]] and adds it to the supervisor's apps. seen
// maps the names so far to their entries.
func (p *configParse) app(i int, a appConfig, seen map[string]int) {
	c, at := p.c, p.at
	switch {
	case a.Name == "":
		at("app", i, "name", "missing: every app needs a name")
	case !policies.ValidName(a.Name):
		at("app", i, "name", "%q is not a valid app name (lower-case letters, digits, '.', '_', '-'; at most 64)", a.Name)
	default:
		if first, dup := seen[a.Name]; dup {
			where := fmt.Sprintf("app[%d]", first)
			if l := c.idx.Line("app", first, "name"); l > 0 {
				where = fmt.Sprintf("line %d", l)
			}
			at("app", i, "name", "duplicate app name %q (first at %s)", a.Name, where)
		}
		seen[a.Name] = i
	}
	app := supervisor.App{Name: a.Name, Args: a.Command, Dir: a.Dir, Grace: time.Duration(a.Grace), Binary: a.Binary, Mode: a.Mode}
	if a.Mode != "" {
		if _, err := policies.ParseMode(a.Mode); err != nil {
			at("app", i, "mode", "%v", err)
		}
	}
	for _, h := range a.PassHeaders {
		switch k := http.CanonicalHeaderKey(h); k {
		case "Cookie", "Authorization", "Proxy-Authorization":
			app.PassHeaders = append(app.PassHeaders, k)
		case "Proxy":
			at("app", i, "pass_headers", "Proxy is never passed: a job would take it for HTTP_PROXY (httpoxy)")
		default:
			at("app", i, "pass_headers", "%q: only Cookie, Authorization and Proxy-Authorization are withheld, so only they can be passed", h)
		}
	}
	polName := a.Policy
	if polName == "" {
		polName = "default"
	}
	if pols := c.Policies; pols != nil {
		if pol, ok := pols.Get(polName); ok {
			app.Policy = pol
		} else {
			at("app", i, "policy", "unknown policy %q (have: %s)", polName, strings.Join(pols.Names(), ", "))
		}
	}
	p.appPaths(i, a, &app)
	if a.ExitSignal != "" {
		sig, err := policies.ParseExitSignal(a.ExitSignal)
		if err != nil {
			at("app", i, "exit_signal", "%v", err)
		}
		app.ExitSignal = sig
	}
	// The app's own exit_signal, grace and env win over its policy's.
	envList := a.Env
	if envList == nil && app.Policy != nil {
		envList = app.Policy.Env
	}
	env, err := resolveEnv(envList)
	if err != nil {
		at("app", i, "env", "%v", err)
	}
	app.Env = env
	if app.Policy != nil {
		if app.ExitSignal == 0 {
			app.ExitSignal = app.Policy.ExitSignal
		}
		if app.Grace == 0 {
			app.Grace = app.Policy.Grace
		}
	}
	c.Sup.Apps = append(c.Sup.Apps, app)
}

// appPaths resolves the i-th app's program and working directory into app:
// absolute, and where they really are, as a view binds them.
func (p *configParse) appPaths(i int, a appConfig, app *supervisor.App) {
	if len(a.Command) == 0 || a.Command[0] == "" {
		p.at("app", i, "command", "missing: give the program and its arguments, like [\"cat\"]")
	} else if path, err := resolveExecutable(a.Command[0], p.c.dir); err != nil {
		p.at("app", i, "command", "%v", err)
	} else {
		// Its directory where it really is, as a view binds it (/home
		// a link to var/home, say); the file keeps its name.
		if real, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
			path = filepath.Join(real, filepath.Base(path))
		}
		app.Path = path
	}
	if a.Dir != "" {
		d := a.Dir
		if !filepath.IsAbs(d) {
			d = filepath.Join(p.c.dir, d)
		}
		// Absolute and without symlinks: a view binds it where it
		// really is, and a job's cwd is taken in its view.
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			p.at("app", i, "dir", "%q is not a directory", a.Dir)
		} else if real, err := filepath.EvalSymlinks(d); err == nil {
			d = real
		}
		app.Dir = d
	}
}

// tenant checks the i-th [[tenant]] and adds it to the supervisor's
// tenants. names and tokens map the names and token hashes so far to their
// entries.
func (p *configParse) tenant(i int, tc tenantConfig, names, tokens map[string]int) {
	c, at := p.c, p.at
	t := supervisor.Tenant{Name: tc.Name, MaxSessions: tc.MaxSessions}
	switch {
	case tc.Name == "":
		at("tenant", i, "name", "missing: every tenant needs a name")
	case !policies.ValidName(tc.Name) || tc.Name == supervisor.PublicTenant.Name:
		at("tenant", i, "name", "%q is not a valid tenant name (lower-case letters, digits, '.', '_', '-'; not \"public\")", tc.Name)
	default:
		if first, dup := names[tc.Name]; dup {
			at("tenant", i, "name", "duplicate tenant name %q (first at tenant[%d])", tc.Name, first)
		}
		names[tc.Name] = i
	}
	sum, err := hex.DecodeString(tc.TokenSHA256)
	switch {
	case err != nil || len(sum) != sha256.Size:
		at("tenant", i, "token_sha256", "want the 64 hex digits of a token's SHA-256 (printf %%s TOKEN | sha256sum)")
	default:
		if first, dup := tokens[tc.TokenSHA256]; dup {
			at("tenant", i, "token_sha256", "the same token as tenant[%d]", first)
		}
		tokens[tc.TokenSHA256] = i
		copy(t.TokenSHA256[:], sum)
	}
	if tc.MaxSessions < 0 {
		at("tenant", i, "max_sessions", "must not be negative")
	}
	if pols := c.Policies; tc.Policy != "" && pols != nil {
		pol, ok := pols.Get(tc.Policy)
		if !ok {
			at("tenant", i, "policy", "unknown policy %q (have: %s)", tc.Policy, strings.Join(pols.Names(), ", "))
		}
		t.Policy = pol
	}
	c.Sup.Tenants = append(c.Sup.Tenants, t)
}

// jobProblems is what would keep c's sandboxed jobs from starting, or
// from being what they should, on this host as it is now: a view that
// cannot be built or hides the app's own program, a policy's fixed ids
// among the ones jobs are given, id ranges too small for every job.
// Checked when c is parsed (when jobs will be sandboxed), and again with
// the data dir, sandbox mode and id ranges a server runs with.
func (c *config) jobProblems() tomlstrict.Problems {
	var ps tomlstrict.Problems
	at := func(table string, n int, key, format string, args ...any) {
		ps = append(ps, c.problemAt(table, n, key, format, args...))
	}
	for i, app := range c.Sup.Apps {
		if app.Path == "" || app.Policy == nil {
			continue // already a problem
		}
		outside := outsideView(app, c.Sup.Tenants, c.Sup.Hide)
		for _, p := range outside {
			at("app", i, p.key, "%s", p.msg)
		}
		// Whether the views can be built, once the app's own are sound.
		st, err := os.Stat(app.Dir)
		viewable := len(outside) == 0 && (app.Dir == "" || err == nil && st.IsDir())
		for _, pol := range appPolicies(app, c.Sup.Tenants) {
			if viewable {
				if err := sandbox.CheckView(supervisor.ViewOf(pol, &app, c.Sup.Hide)); err != nil {
					key, noDir := "policy", app
					noDir.Dir = ""
					if app.Dir != "" && sandbox.CheckView(supervisor.ViewOf(pol, &noDir, c.Sup.Hide)) == nil {
						key = "dir" // the app's dir is what the view cannot take
					}
					at("app", i, key, "the view of policy %q cannot be built: %v", pol.Name, err)
				}
			}
			if len(outside) == 0 {
				for _, p := range reachProblems(app, pol, supervisor.ViewOf(pol, &app, c.Sup.Hide)) {
					at("app", i, p.key, "%s", p.msg)
				}
			}
			if pol.DynamicUser || pol.UserNamespace {
				continue
			}
			for _, r := range []struct {
				key string
				ids sandbox.IDRange
			}{{"dynamic_uids", c.Runner.DynamicIDs}, {"user_namespace_uids", c.Runner.UserNamespaceIDs}} {
				if r.ids.Contains(pol.UID) {
					at("app", i, "policy", "policy %q runs jobs as uid %d, which %s %s holds: jobs given it would share it", pol.Name, pol.UID, r.key, r.ids)
				}
				if r.ids.Contains(pol.GID) {
					at("app", i, "policy", "policy %q runs jobs as gid %d, which %s %s holds: jobs given it would share it", pol.Name, pol.GID, r.key, r.ids)
				}
			}
		}
	}
	for _, msg := range idsNeeded(c) {
		at("", 0, "max_sessions", "%s", msg)
	}
	return ps
}

// problemAt is a problem at a key of c's file: table's n-th entry's key,
// or a top-level key when table is "".
func (c *config) problemAt(table string, n int, key, format string, args ...any) tomlstrict.Problem {
	k, line := key, 0
	if table != "" {
		k = fmt.Sprintf("%s[%d].%s", table, n, key)
	}
	if c.idx != nil {
		line = c.idx.Line(table, n, key)
	}
	return tomlstrict.Problem{File: c.file, Line: line, Key: k, Msg: fmt.Sprintf(format, args...)}
}

// appPolicies are the policies app's jobs may run under: its own, and any
// tenant's.
func appPolicies(app supervisor.App, tenants []supervisor.Tenant) []*policies.Policy {
	pols := []*policies.Policy{app.Policy}
	for _, t := range tenants {
		if t.Policy != nil && !slices.Contains(pols, t.Policy) {
			pols = append(pols, t.Policy)
		}
	}
	return pols
}

// setDataDir puts the data dir at dir (the file's data_dir, or
// --data-dir) and hides it, with the server's other files, from jobs.
func (c *config) setDataDir(dir string) {
	c.DataDir = dir
	c.Sup.SpoolDir = spoolDir(dir)
	c.Sup.Hide = serverPaths(c.file, c.dir, c.policyDir, dir, c.tls.files.key, c.tls.files.adminKey)
	c.jobsChecked = false
}

// idRange parses "FIRST-LAST" (def when empty); bad reports a problem.
func idRange(s string, def sandbox.IDRange, bad func(string)) sandbox.IDRange {
	if s == "" {
		return def
	}
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case !ok || err1 != nil || err2 != nil:
		bad(fmt.Sprintf("%q: want a range of ids like \"61184-65519\"", s))
	case last < first:
		bad(fmt.Sprintf("%q: the range ends before it starts", s))
	case first == 0 || last >= 1<<32-1:
		bad(fmt.Sprintf("%q: root (0) and %d are not ids a job may get", s, uint32(1<<32-1)))
	default:
		return sandbox.IDRange{First: uint32(first), Count: uint32(last - first + 1)}
	}
	return def
}

// serverPaths are the server's own files, hidden from every job: the
// config file, its policy dir, its data dir, its TLS keys and the running
// binary.
func serverPaths(file, dir, policyDir, dataDir string, tlsKeys ...string) []string {
	var paths []string
	add := func(p string) {
		if p == "" {
			return
		}
		// Where it really is: an app's dir is compared after its symlinks.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if abs, err := filepath.Abs(p); err == nil {
			paths = append(paths, abs)
		}
	}
	if file != embeddedSource {
		add(file)
	}
	add(policyDir)
	add(dataDir)
	for _, k := range tlsKeys {
		add(k)
	}
	if exe, err := os.Executable(); err == nil {
		add(exe)
	}
	return paths
}

// seccompProblems compiles every policy's seccomp profile for this host,
// so a profile the sandbox cannot apply is refused when it loads.
func seccompProblems(pols []*policies.Policy) tomlstrict.Problems {
	var ps tomlstrict.Problems
	for _, p := range pols {
		if p.SeccompProfile == nil {
			continue
		}
		if _, err := sandbox.CompileSeccomp(p.SeccompProfile); err != nil {
			ps = append(ps, p.SeccompProblem(err))
		}
	}
	return ps
}

// maxClashes is how many accounts inside an id range are named one by one.
const maxClashes = 5

// viewProblem is what outsideView found, and the app key it concerns.
type viewProblem struct{ key, msg string }

// outsideView says what of app its jobs could not see, under its policy
// or any tenant's: its program, or its dir.
func outsideView(app supervisor.App, tenants []supervisor.Tenant, hide []string) []viewProblem {
	var msgs []viewProblem
	// app.Dir is where it really is (parseConfig), as hide's paths are.
	if app.Dir != "" && !(sandbox.View{RO: []string{app.Dir}, Hide: hide}).Visible(app.Dir) {
		msgs = append(msgs, viewProblem{"dir", fmt.Sprintf("%q holds the server's own files, which no job may see", app.Dir)})
	}
	real, err := filepath.EvalSymlinks(app.Path)
	if err != nil {
		real = app.Path
	}
	for _, pol := range appPolicies(app, tenants) {
		if pol == nil {
			continue
		}
		v := supervisor.ViewOf(pol, &app, hide)
		if !v.Visible(app.Path) || !v.Visible(real) {
			msgs = append(msgs, viewProblem{"command", fmt.Sprintf("%s is outside the sandbox's view under policy %q: add its directory to the policy's ro, or make it the app's dir", app.Path, pol.Name)})
		}
	}
	return msgs
}

// idsNeeded checks that the id ranges hold every job that may run at once,
// prepared sandboxes included.
func idsNeeded(c *config) []string {
	maxJobs := c.Sup.MaxSessions
	if maxJobs == 0 {
		maxJobs = supervisor.DefaultMaxSessions
	}
	pols := map[*policies.Policy]bool{}
	for _, a := range c.Sup.Apps {
		pols[a.Policy] = true
	}
	for _, t := range c.Sup.Tenants {
		pols[t.Policy] = true
	}
	dynamic, userns := false, false
	for p := range pols {
		if p != nil {
			dynamic = dynamic || (p.DynamicUser && !p.UserNamespace)
			userns = userns || p.UserNamespace
		}
	}
	// Every job may be of a policy that takes ids; a prepared sandbox
	// takes them by its own policy.
	preparedDynamic, preparedUserns := 0, 0
	for p, n := range supervisor.PreparedMost(c.Sup) {
		switch {
		case p.UserNamespace:
			preparedUserns += n
		case p.DynamicUser:
			preparedDynamic += n
		}
	}
	var msgs []string
	if n := int(c.Runner.DynamicIDs.Count); dynamic && n < maxJobs+preparedDynamic {
		msgs = append(msgs, fmt.Sprintf("%d jobs and %d prepared sandboxes may need a dynamic uid each, but dynamic_uids %s holds %d: widen it, or lower max_sessions or initiators", maxJobs, preparedDynamic, c.Runner.DynamicIDs, n))
	}
	if n := int(c.Runner.UserNamespaceIDs.Count / sandbox.UserNamespaceBlock); userns && n < maxJobs+preparedUserns {
		msgs = append(msgs, fmt.Sprintf("%d jobs and %d prepared sandboxes may need a user namespace block each, but user_namespace_uids %s holds %d: widen it, or lower max_sessions or initiators", maxJobs, preparedUserns, c.Runner.UserNamespaceIDs, n))
	}
	return msgs
}

// resolveExecutable finds argv[0]: a name is looked up in the server's PATH;
// a relative path is taken from the config file's directory.
func resolveExecutable(name, dir string) (string, error) {
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%q not found in PATH", name)
		}
		return filepath.Abs(p)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%q: %w", name, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%q is not an executable file", name)
	}
	return filepath.Abs(p)
}

// resolveEnv turns the allow-list into NAME=value pairs: "NAME" passes the
// server's value (if set), "NAME=value" sets one.
func resolveEnv(list []string) ([]string, error) {
	var env []string
	for _, e := range list {
		name, val, literal := strings.Cut(e, "=")
		if !policies.ValidEnvName(name) {
			return nil, fmt.Errorf("%q is not a variable name", name)
		}
		if literal {
			env = append(env, name+"="+val)
		} else if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env, nil
}

// quickConfig serves one command, websocketd-style, keeping the server
// settings of base.
func quickConfig(base *config, argv []string) (*config, error) {
	name := strings.ToLower(filepath.Base(argv[0]))
	name = notNameChars.ReplaceAllString(name, "-")
	if !policies.ValidName(name) {
		name = "app"
	}
	p, err := resolveExecutable(argv[0], ".")
	if err != nil {
		return nil, fmt.Errorf("quick mode: %w", err)
	}
	c, pol, env, err := quickBase(base)
	if err != nil {
		return nil, err
	}
	app := supervisor.App{Name: name, Path: p, Args: argv, Env: env, Policy: pol, Grace: pol.Grace}
	// websocketd-style, the program may live anywhere: a sandboxed job then
	// sees that one file, read-only, beside its policy's view.
	if len(outsideView(app, nil, c.Sup.Hide)) > 0 {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			app.Path = real
		}
		app.ReadOnly = []string{app.Path}
	}
	c.Sup.Apps = []supervisor.App{app}
	c.Web.QuickApp = name
	c.Source = "quick mode: " + strings.Join(argv, " ")
	return c, nil
}

// quickBase is base made ready for quick mode's apps, which it replaces:
// the built-in policies, unless base has its own, and the sandbox where
// the host allows it. Each app runs under the default policy, with env.
func quickBase(base *config) (c *config, pol *policies.Policy, env []string, err error) {
	env, err = resolveEnv([]string{"PATH", "LANG", "LC_ALL", "TZ"})
	if err != nil {
		return nil, nil, nil, err
	}
	pols, err := policies.Load("")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("quick mode: built-in policies: %w", err)
	}
	pol, _ = pols.Get("default") // always built in
	if base.Policies == nil {
		base.Policies = pols
	}
	if base.Sandbox == "" {
		base.Sandbox = "auto"
	}
	cc := *base
	cc.jobsChecked = false
	cc.Path = ""
	return &cc, pol, env, nil
}

// quickDirConfig serves each executable file directly in dir at /NAME (and
// /apps/NAME), as websocketd's --dir does, keeping the server settings of
// base. Sub-directories are not searched. It returns, for the log, what it
// skipped that looked meant to be served: a program whose name is not an
// app name, one of the server's own files, a sub-directory. Hidden files
// and files no one may execute are passed over in silence.
func quickDirConfig(base *config, dir string) (_ *config, skipped []string, _ error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--dir: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, nil, fmt.Errorf("--dir: %w", err)
	}
	c, pol, env, err := quickBase(base)
	if err != nil {
		return nil, nil, err
	}
	var apps []supervisor.App
	var outside []string // programs the default view does not show
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(abs, name)
		st, err := os.Stat(p) // a symlink is served as its target, as websocketd does
		switch {
		case strings.HasPrefix(name, "."):
			continue
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("%q: %v", name, err))
			continue
		case st.IsDir():
			skipped = append(skipped, fmt.Sprintf("%q: a sub-directory; only the files directly in %s are served", name, abs))
			continue
		case !st.Mode().IsRegular() || st.Mode()&0o111 == 0:
			continue
		case !policies.ValidName(name):
			skipped = append(skipped, fmt.Sprintf("%q is not a valid app name (lower-case letters, digits, '.', '_', '-'; at most 64)", name))
			continue
		case name == "apps":
			skipped = append(skipped, fmt.Sprintf("%q: /apps/ is where every app is", name))
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%q: %v", name, err))
			continue
		}
		if !(sandbox.View{RO: []string{real}, Hide: c.Sup.Hide}).Visible(real) {
			skipped = append(skipped, fmt.Sprintf("%q is one of the server's own files, which no job may see", name))
			continue
		}
		app := supervisor.App{Name: name, Path: p, Args: []string{p}, Env: env, Policy: pol, Grace: pol.Grace}
		if len(outsideView(app, nil, c.Sup.Hide)) > 0 {
			app.Path = real
			if !slices.Contains(outside, real) { // a symlink's target may be served twice
				outside = append(outside, real)
			}
		}
		apps = append(apps, app)
	}
	if len(apps) == 0 {
		return nil, skipped, fmt.Errorf("--dir %s: no executable files to serve", abs)
	}
	// Every app sees every served program outside the view, read-only, not
	// just its own: the same view for all keeps one pool of prepared
	// sandboxes, not one per program, and shows a job nothing that is not
	// served to every client anyway.
	for i := range apps {
		if len(outside) > 0 {
			apps[i].ReadOnly = slices.Clip(outside)
		}
	}
	c.Sup.Apps = apps
	c.Web.AppsAtRoot = true
	c.Source = "quick mode: --dir " + abs
	return c, skipped, nil
}

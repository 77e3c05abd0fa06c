package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/tomlstrict"
	"github.com/chimirror/chimirror/web"
)

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default ./chimirror.toml if present, else the embedded default)")
	listen := fs.String("listen", "", "listen address, overriding the config's (e.g. 127.0.0.1:8080, :0)")
	adminListen := fs.String("admin-listen", "", "admin console and API address, overriding the config's admin_listen")
	dataDir := fs.String("data-dir", "", "data directory (ledger, admin token), overriding the config's data_dir")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror serve [--config FILE] [--listen ADDR] [-- COMMAND [ARG...]]\n\n"+
			"Serves every configured app at ws://ADDR/apps/NAME and a test page at /.\n"+
			"With -- COMMAND, serves just that command (also at /), websocketd-style;\n"+
			"then only --config, if given, supplies the server settings.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	overrides := func(c *config) {
		if *listen != "" {
			c.Listen = *listen
		}
		if *adminListen != "" {
			c.AdminListen = *adminListen
		}
		if *dataDir != "" {
			c.setDataDir(*dataDir)
		}
	}
	var cfg *config
	if fs.NArg() > 0 && *cfgPath == "" {
		// Quick mode stands alone: a ./chimirror.toml is not read.
		cfg = &config{Listen: defaultListen, AdminListen: defaultAdminListen, file: embeddedSource,
			Web:    web.Options{Software: "chimirror/" + version},
			Runner: sandbox.RunnerOptions{DynamicIDs: sandbox.DefaultDynamicIDs, UserNamespaceIDs: sandbox.DefaultUserNamespaceIDs}}
		cfg.setDataDir(defaultDataDir)
	} else {
		var err error
		if cfg, err = loadConfig(*cfgPath); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
	}
	// Before quick mode's app: what it must bind depends on what is hidden.
	overrides(cfg)
	if fs.NArg() > 0 {
		var err error
		if cfg, err = quickConfig(cfg, fs.Args()); err != nil {
			return err
		}
	}
	cfg.overrides = overrides
	return serve(log, cfg, stderr)
}

func serve(log *slog.Logger, cfg *config, stderr io.Writer) (retErr error) {
	// CHIMIRROR_CPUPROFILE=FILE profiles the server until it stops (for
	// 'go tool pprof'); a developer's aid for the benchmark.
	if path := os.Getenv("CHIMIRROR_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			retErr = errors.Join(retErr, f.Close())
		}()
	}
	box, why := sandboxMode(cfg.Sandbox)
	if !box && cfg.Sandbox == "on" {
		return fmt.Errorf("sandbox = \"on\" but %s", why)
	}
	if box && !cfg.jobsChecked { // --data-dir or quick mode changed what it checks
		if ps := cfg.jobProblems(); len(ps) > 0 {
			return fmt.Errorf("invalid configuration:\n%w", ps)
		}
	}
	// The ledger first: its lock keeps a second server off this data dir,
	// and recovery must finish before any connection is accepted.
	ledger, err := openLedger(log, cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := ledger.Close(); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	rec, err := supervisor.Recover(log, ledger, box)
	if err != nil {
		return fmt.Errorf("recover after the last run: %w", err)
	}
	if len(rec.Lost) > 0 || rec.Cgroups > 0 {
		log.Warn("recovered after an unclean stop", "jobs_lost", len(rec.Lost), "cgroups_removed", rec.Cgroups)
	}
	// No TCP keepalive: WebSocket pings find dead peers, and the three
	// setsockopt calls per connection are measurable in the setup rate.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	switch {
	case box:
		log.Info("sandbox on: every job gets its own cgroup and namespaces", "cgroup_version", sandbox.CgroupVersion())
	case cfg.Sandbox == "auto":
		log.Warn("SANDBOX OFF: jobs run as plain processes with the server's user, filesystem and network, "+
			"and no CPU, memory or pids limits; only time and output limits apply", "why", why)
	default:
		log.Warn("SANDBOX OFF (sandbox = \"off\"): jobs run as plain processes, without limits or isolation")
	}
	tokens, freshToken, err := adminTokens(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	aln, err := lc.Listen(context.Background(), "tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin_listen on %s: %w", cfg.AdminListen, err)
	}
	metrics := web.NewMetrics()
	runner, err := sandbox.NewRunner(log, cfg.Runner)
	if err != nil {
		ln.Close()
		aln.Close()
		return fmt.Errorf("start sandbox runner: %w", err)
	}
	defer func() { // after the supervisor's Shutdown: no job is left to it
		retErr = errors.Join(retErr, runner.Close())
	}()
	cfg.Sup.Sandbox, cfg.Sup.Ledger, cfg.Sup.OnEnd, cfg.Sup.Runner = box, ledger, metrics.JobEnded, runner
	sup, err := supervisor.New(log, cfg.Sup)
	if err != nil {
		ln.Close()
		aln.Close()
		return err
	}
	metrics.Watch(sup)
	cfg.Web.Metrics = metrics
	srv := web.New(log, sup, cfg.Web)
	hs := srv.HTTPServer(cfg.Listen)
	var pols atomic.Pointer[policies.Set] // replaced by SIGHUP reloads
	pols.Store(cfg.Policies)
	admin := web.NewAdmin(log, sup, web.AdminOptions{Tokens: tokens, Metrics: metrics,
		Policies:      func() []*policies.Policy { return pols.Load().All() },
		CPUSecondRate: cfg.Chargeback.CPUSecond, GiBHourRate: cfg.Chargeback.GiBHour})
	ahs := admin.HTTPServer(cfg.AdminListen)
	adminServed := make(chan error, 1)
	go func() { adminServed <- ahs.Serve(aln) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Before the lines that say the server is up: a SIGHUP sent on seeing
	// them must reload, not kill it (SIGHUP's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A log reader that goes away must not kill the server (Go kills a
	// program on a broken pipe at fd 1 or 2 unless SIGPIPE is handled):
	// logs are lost, jobs go on and shutdown still cleans up. Handled, not
	// ignored, so that jobs still get SIGPIPE's default action.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	url := "http://" + ln.Addr().String() + "/"
	log.Info("chimirror serving", "url", url, "config", cfg.Source, "apps", strings.Join(sup.Apps(), ","), "version", version,
		"ledger", ledger.Path())
	fmt.Fprintf(stderr, "chimirror: test page at %s; apps at ws://%sapps/{%s}\n", url, strings.TrimPrefix(url, "http://"), strings.Join(sup.Apps(), ","))
	console := fmt.Sprintf("chimirror: operator console at http://%s/ (%s)\n", aln.Addr(), tokenHint(cfg))
	if freshToken != "" { // once, on first run, beside the startup lines (not through the logger)
		console += fmt.Sprintf("chimirror: new admin token (kept in that file): %s\n", freshToken)
	}
	// One write: whoever waits for the console line sees the token with it.
	fmt.Fprint(stderr, console)

	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: ending every job")
			break wait
		case serveErr = <-served:
			log.Error("http server stopped", "err", serveErr)
			break wait
		case serveErr = <-adminServed:
			log.Error("admin server stopped", "err", serveErr)
			break wait
		case <-hup:
			if next := reload(log, stderr, cfg, sup, admin); next != nil {
				pols.Store(next.Policies)
			}
		}
	}
	stop()
	// Stop accepting, then end every job through its normal termination path.
	// The deadline leaves room for the longest grace period plus the kill.
	// Tearing a sandboxed job down (cgroup kill, empty, delete) takes a few
	// ms of kernel work, so thousands of jobs need more than the grace.
	var maxGrace time.Duration
	for _, a := range cfg.Sup.Apps {
		maxGrace = max(maxGrace, a.Grace, supervisor.DefaultGrace)
	}
	running := sup.Running()
	teardown := time.Duration(running) * 10 * time.Millisecond
	sctx, cancel := context.WithTimeout(context.Background(), maxGrace+5*time.Second+teardown)
	defer cancel()
	// The HTTP server stops accepting at once, and its handlers may still be
	// starting jobs: shut both down side by side, so ending the jobs never
	// waits for a handler (nor a handler for the jobs' end).
	herrc := make(chan error, 1)
	go func() { herrc <- hs.Shutdown(sctx) }()
	t0 := time.Now()
	serr := sup.Shutdown(sctx)
	log.Info("jobs ended", "jobs", running, "took", time.Since(t0).Round(time.Millisecond))
	herr := <-herrc
	admin.Close() // live event sockets: hijacked, so Shutdown does not wait for them
	aerr := ahs.Shutdown(sctx)
	if serveErr != nil && errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if err := errors.Join(serveErr, herr, serr, aerr); err != nil {
		return err
	}
	log.Info("stopped")
	if _, err := fmt.Fprintln(stderr, "chimirror: stopped"); err != nil {
		return err
	}
	return nil
}

// openLedger opens the ledger in dataDir, creating the directory if
// needed. Every failure names the path and what to do.
func openLedger(log *slog.Logger, dataDir string) (*accounting.Ledger, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	l, err := accounting.Open(ledgerPath(dataDir), accounting.Options{Log: log})
	if errors.Is(err, accounting.ErrLocked) {
		return nil, fmt.Errorf("%w: is another chimirror serving from data_dir %s? Stop it, or give this one its own data_dir", err, dataDir)
	}
	return l, err
}

// sandboxMode decides whether jobs are sandboxed: "off" never, "on" and
// "auto" when this host can (root, cgroups); why says what is missing.
func sandboxMode(mode string) (bool, string) {
	if mode == "off" {
		return false, "sandbox = \"off\""
	}
	if err := sandbox.Available(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// reload re-reads the config file and its policies on SIGHUP. A valid one
// applies to new jobs (apps, policies, tenants, max_sessions) and to the
// admin tokens at once; running jobs keep what they started with. An
// invalid one changes nothing and every problem is logged. What the server
// was started with (cur) and a valid file changes in keys that need a
// restart is logged, key by key.
func reload(log *slog.Logger, stderr io.Writer, cur *config, sup *supervisor.Supervisor, admin *web.Admin) *config {
	if cur.Path == "" {
		log.Warn("SIGHUP: nothing to reload", "config", cur.Source)
		return nil
	}
	refuse := func(err error) *config {
		var ps tomlstrict.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				log.Error("reload refused: config problem", "problem", p.String())
			}
		} else {
			log.Error("reload refused", "err", err)
		}
		log.Warn("reload refused: still running the previous configuration", "config", cur.Path)
		return nil
	}
	next, err := loadConfig(cur.Path)
	if err != nil {
		return refuse(err)
	}
	if next.overrides = cur.overrides; next.overrides != nil {
		next.overrides(next)
	}
	restart := restartNeeded(cur, next)
	// What needs a restart stays as it runs, and the jobs of the new apps
	// and policies must start with it: the running sandbox mode and ids,
	// and the data dir in use, hidden from them.
	next.Runner = cur.Runner
	if next.DataDir != cur.DataDir {
		next.setDataDir(cur.DataDir)
	}
	if cur.Sup.Sandbox {
		if ps := next.jobProblems(); len(ps) > 0 {
			return refuse(ps)
		}
	}
	next.Sup.Sandbox, next.Sup.OnEnd, next.Sup.Ledger, next.Sup.Runner = cur.Sup.Sandbox, cur.Sup.OnEnd, cur.Sup.Ledger, cur.Sup.Runner
	sup.Reload(next.Sup)
	if tokens, fresh, err := adminTokens(next); err != nil {
		log.Error("reload: admin tokens unchanged", "err", err)
	} else {
		admin.SetTokens(tokens)
		if fresh != "" { // as at startup: for the operator's terminal, never logged
			fmt.Fprintf(stderr, "chimirror: new admin token (%s): %s\n", tokenHint(next), fresh)
		}
	}
	if len(restart) > 0 {
		log.Warn("reload: these changes need a restart and are not applied", "keys", strings.Join(restart, ","))
	}
	log.Info("reloaded", "config", cur.Path, "apps", strings.Join(sup.Apps(), ","), "tenants", len(next.Sup.Tenants))
	return next
}

// restartNeeded names the keys whose change from cur to next a reload
// cannot apply: the listeners, the sandbox mode, origins and bounds, and
// the ledger's place, retention and prices.
func restartNeeded(cur, next *config) []string {
	var keys []string
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"listen", next.Listen != cur.Listen},
		{"sandbox", next.Sandbox != cur.Sandbox},
		{"origins", !slices.Equal(next.Web.Origins, cur.Web.Origins)},
		{"bounds", next.Web.Limits != cur.Web.Limits},
		{"data_dir", next.DataDir != cur.DataDir},
		{"retention", next.Retention != cur.Retention},
		{"chargeback", next.Chargeback != cur.Chargeback},
		{"admin_listen", next.AdminListen != cur.AdminListen},
		{"dynamic_uids", next.Runner.DynamicIDs != cur.Runner.DynamicIDs},
		{"user_namespace_uids", next.Runner.UserNamespaceIDs != cur.Runner.UserNamespaceIDs},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

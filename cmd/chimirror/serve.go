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
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/tomlstrict"
	"github.com/chimirror/chimirror/web"
)

func cmdServe(args []string, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default ./chimirror.toml if present, else the embedded default)")
	listen := fs.String("listen", "", "listen address, overriding the config's (e.g. 127.0.0.1:8080, :0)")
	adminListen := fs.String("admin-listen", "", "admin console and API address, overriding the config's admin_listen")
	dataDir := fs.String("data-dir", "", "data directory (ledger, admin token), overriding the config's data_dir")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text (slog's key=value) or json (one JSON object a line)")
	binary := fs.Bool("binary", false, "quick mode: exchange raw binary messages, not text lines (websocketd's --binary)")
	dir := fs.String("dir", "", "quick mode: serve each executable file directly in `DIR` at /NAME, as websocketd's --dir;\n"+
		"sub-directories are not searched, and a file whose name is not an app name\n"+
		"(lower-case letters, digits, '.', '_', '-'; at most 64) is skipped with a warning")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror serve [--config FILE] [--listen ADDR] [--binary] [--dir DIR | -- COMMAND [ARG...]]\n\n"+
			"Serves every configured app at ws://ADDR/apps/NAME and a test page at /.\n"+
			"With -- COMMAND, serves just that command, websocketd-style, at every path\n"+
			"(the path is its PATH_INFO); with --dir, each program of DIR at /NAME.\n"+
			"Then only --config, if given, supplies the server settings.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	quick := fs.NArg() > 0 || *dir != ""
	switch {
	case fs.NArg() > 0 && *dir != "":
		return fmt.Errorf("--dir and -- COMMAND: serve a directory's programs or one command, not both")
	case *binary && !quick:
		return fmt.Errorf("--binary is for quick mode (--dir or -- COMMAND); a config's app sets binary = true")
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	if err := emptyDataDir(fs); err != nil {
		return err
	}
	// Before the config is read: what systemd passed is unset by then.
	sd, err := takeSystemd(log)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sd.close()) }()

	cfg, err := serveConfig(log, serveFlags{config: *cfgPath, listen: *listen, adminListen: *adminListen,
		dataDir: *dataDir, binary: *binary, dir: *dir, command: fs.Args()})
	if err != nil {
		return err
	}
	return serve(log, cfg, sd, stderr)
}

// newLogger is the server's logger: --log-level and --log-format, to w.
func newLogger(w io.Writer, levelName, format string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q: use text or json", format)
	}
}

// serveFlags are serve's flags that choose and amend its configuration.
type serveFlags struct {
	config, listen, adminListen, dataDir string
	binary                               bool
	dir                                  string
	command                              []string // after --: quick mode's command
}

// serveConfig is the configuration serve runs: the config file (or the
// embedded default, or quick mode's own), the flags' overrides, and quick
// mode's apps. The overrides are kept in it: a SIGHUP's reload applies them
// again.
func serveConfig(log *slog.Logger, f serveFlags) (*config, error) {
	quick := len(f.command) > 0 || f.dir != ""
	overrides := func(c *config) {
		if f.listen != "" {
			c.Listen = f.listen
		}
		if f.adminListen != "" {
			c.AdminListen = f.adminListen
		}
		if f.dataDir != "" {
			c.setDataDir(f.dataDir)
		}
	}
	var cfg *config
	if quick && f.config == "" {
		// Quick mode stands alone: a ./chimirror.toml is not read.
		// It runs beside a server started from this directory: its own
		// data dir, and the admin listener on a free port.
		cfg = &config{Listen: defaultListen, AdminListen: "127.0.0.1:0", file: embeddedSource,
			Web:    web.Options{Software: "chimirror/" + version},
			Runner: sandbox.RunnerOptions{DynamicIDs: sandbox.DefaultDynamicIDs, UserNamespaceIDs: sandbox.DefaultUserNamespaceIDs}}
		qd, err := quickDataDir()
		if err != nil {
			return nil, err
		}
		cfg.setDataDir(qd)
		cfg.quickData = f.dataDir == ""
	} else {
		var err error
		// In quick mode, the file gives the server settings; its apps, if
		// any, are replaced.
		if cfg, err = loadConfigFor(f.config, !quick); err != nil {
			return nil, fmt.Errorf("invalid configuration:\n%w", err)
		}
	}
	// Before quick mode's apps: what they must bind depends on what is hidden.
	overrides(cfg)
	switch {
	case len(f.command) > 0:
		var err error
		if cfg, err = quickConfig(cfg, f.command); err != nil {
			return nil, err
		}
	case f.dir != "":
		var skipped []string
		var err error
		if cfg, skipped, err = quickDirConfig(cfg, f.dir); err != nil {
			return nil, err
		}
		for _, why := range skipped {
			log.Warn("--dir: not served", "why", why)
		}
	}
	if quick {
		for i := range cfg.Sup.Apps {
			cfg.Sup.Apps[i].Binary = f.binary
		}
	}
	cfg.overrides = overrides
	return cfg, nil
}

// serve runs the server until SIGINT or SIGTERM, or until a listener
// fails, then ends every job and stops. Its steps, in order: the sandbox
// check, the ledger and what the last run left (found before any
// connection), the listeners (or systemd's), the supervisor and the HTTP
// servers, the up lines and READY=1 to systemd, the recovery sweep (beside
// new jobs), the wait (SIGHUP reloads meanwhile) and the shutdown:
// STOPPING=1, then a sweep still running is stopped, then the jobs end.
func serve(log *slog.Logger, cfg *config, sd *systemd, stderr io.Writer) (retErr error) {
	stopProfile, err := startProfile()
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, stopProfile()) }()
	// Signals first. SIGINT and SIGTERM while the server starts end it as
	// cleanly as later: the wait below returns at once, and the shutdown
	// undoes what was made (the default action would leave its pool's
	// cgroups to the next start). A SIGHUP sent on seeing the up lines must
	// reload, not kill it (SIGHUP's default).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
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
	// Again with --admin-listen: the flag is no way around the rule.
	if msg := adminExposure(cfg.AdminListen, cfg.AdminPublic, cfg.AdminEdge.TLS != nil); msg != "" {
		return fmt.Errorf("admin_listen: %s", msg)
	}
	box, why, err := sandboxFor(cfg)
	if err != nil {
		return err
	}
	// The ledger first: its lock keeps a second server off this data dir,
	// and what the last run left must be found before any job starts.
	ledger, rec, err := openRecovered(log, cfg.DataDir, box)
	if errors.Is(err, accounting.ErrLocked) && cfg.quickData {
		// Another quick server has the shared one: this one gets its own.
		ledger, rec, err = openQuickTemp(log, cfg, box)
	}
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, ledger.Close()) }()
	srv, err := startInstance(log, cfg, sd, ledger, box, why)
	if err != nil {
		return err
	}
	defer func() { // after the supervisor's Shutdown: no job is left to it
		retErr = errors.Join(retErr, srv.runner.Close())
	}()

	srv.serve()
	if err := srv.recordAddress(); err != nil {
		log.Warn("the CLI will not find this server by itself", "err", err)
	}
	srv.announce(stderr)
	sd.ready(servingStatus(srv.sup.Running()))
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); sweep(sweepCtx, log, rec) }()
	serveErr := srv.wait(ctx, hup, stderr)
	stop()
	sd.stopping(stoppingStatus(srv.sup.Running()))
	stopSweep()
	<-swept
	if err := errors.Join(srv.shutdown(serveErr), removeServerFile(cfg.DataDir)); err != nil {
		return err
	}
	log.Info("stopped")
	if _, err := fmt.Fprintln(stderr, "chimirror: stopped"); err != nil {
		return err
	}
	return nil
}

// startProfile starts the developer's profiles for the benchmark (read
// them with 'go tool pprof'): a CPU profile when CHIMIRROR_CPUPROFILE=FILE
// is set, and an allocation profile when CHIMIRROR_MEMPROFILE=FILE is. The
// allocation profile samples every 4 KiB allocated (the default is every
// 512 KiB), so a few hundred sessions are enough to count what one
// allocates; it is written when the stop function runs. The stop function
// ends both and closes the files.
func startProfile() (stop func() error, retErr error) {
	memPath := os.Getenv("CHIMIRROR_MEMPROFILE")
	if memPath != "" {
		runtime.MemProfileRate = memProfileRate
	}
	writeMem := func() error {
		if memPath == "" {
			return nil
		}
		f, err := os.Create(memPath)
		if err != nil {
			return fmt.Errorf("allocation profile: %w", err)
		}
		if err := errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close()); err != nil {
			return fmt.Errorf("allocation profile: %w", err)
		}
		return nil
	}
	path := os.Getenv("CHIMIRROR_CPUPROFILE")
	if path == "" {
		return writeMem, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, fmt.Errorf("cpu profile: %w", errors.Join(err, f.Close()))
	}
	return func() error {
		pprof.StopCPUProfile()
		return errors.Join(f.Close(), writeMem())
	}, nil
}

// memProfileRate is the allocation profile's sampling interval in bytes.
const memProfileRate = 4096

// sandboxFor decides whether jobs are sandboxed (why: the reason when they
// are not), refuses sandbox = "on" where it cannot be, and checks what only sandboxed jobs
// need when parseConfig could not (--data-dir or quick mode changed it).
func sandboxFor(cfg *config) (box bool, why string, err error) {
	box, why = sandboxMode(cfg.Sandbox)
	if !box && cfg.Sandbox == "on" {
		return false, why, fmt.Errorf("sandbox = \"on\" but %s", why)
	}
	if box && !cfg.jobsChecked {
		if ps := cfg.jobProblems(); len(ps) > 0 {
			return false, why, fmt.Errorf("invalid configuration:\n%w", ps)
		}
	}
	return box, why, nil
}

// quickDataDir is where quick mode keeps its ledger and admin token when
// not told: the user's state directory (XDG_STATE_HOME, else
// ~/.local/state), else a new directory of its own under the temp dir
// (never a fixed path there, which another user could make first).
func quickDataDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(home, ".local", "state")
		}
	}
	if base == "" {
		dir, err := os.MkdirTemp("", "chimirror-quick-")
		if err != nil {
			return "", fmt.Errorf("quick mode: a data dir: %w", err)
		}
		return dir, nil
	}
	return filepath.Join(base, "chimirror", "quick"), nil
}

// openQuickTemp moves quick mode's data dir to a new temporary one (the
// shared one is held by another quick server) and opens its ledger.
func openQuickTemp(log *slog.Logger, cfg *config, box bool) (*accounting.Ledger, *supervisor.Recovery, error) {
	dir, err := os.MkdirTemp("", "chimirror-quick-")
	if err != nil {
		return nil, nil, fmt.Errorf("quick mode: a data dir of its own: %w", err)
	}
	log.Info("quick mode: the shared data dir is in use; this server keeps its ledger apart", "shared", cfg.DataDir, "data_dir", dir)
	cfg.setDataDir(dir)
	if box {
		if ps := cfg.jobProblems(); len(ps) > 0 {
			return nil, nil, fmt.Errorf("invalid configuration:\n%w", ps)
		}
	}
	return openRecovered(log, dir, box)
}

// openRecovered opens the data dir's ledger and finds what the last run
// left: jobs still recorded running and their cgroups, which sweep closes
// once the server listens. Finding takes a directory listing, so a server
// that thousands of jobs died with still listens within moments.
func openRecovered(log *slog.Logger, dataDir string, box bool) (_ *accounting.Ledger, _ *supervisor.Recovery, retErr error) {
	ledger, err := openLedger(log, dataDir)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, ledger.Close())
		}
	}()
	rec, err := supervisor.FindLeftovers(log, ledger, box)
	if err != nil {
		return nil, nil, fmt.Errorf("recover after the last run: %w", err)
	}
	rec.SetSpoolDir(spoolDir(dataDir))
	if records, cgroups := rec.Pending(); records > 0 || cgroups > 0 {
		log.Warn(recoveringMsg, "jobs_open", records, "cgroups", cgroups)
	}
	return ledger, rec, nil
}

// The lines that say a recovery began and ended (tests wait for them).
const (
	recoveringMsg = "recovering after an unclean stop: sweeping in the background"
	recoveredMsg  = "recovered after an unclean stop"
)

// sweep runs rec until it is done or ctx ends (the server stopping), and
// logs how it went. A sweep stopped part way leaves the rest to the next
// start.
func sweep(ctx context.Context, log *slog.Logger, rec *supervisor.Recovery) {
	if records, cgroups := rec.Pending(); records == 0 && cgroups == 0 {
		return
	}
	t0 := time.Now()
	out, err := rec.Run(ctx)
	took := time.Since(t0).Round(time.Millisecond)
	if err != nil {
		log.Error("recovery incomplete; the next start finishes it", "jobs_lost", len(out.Lost),
			"cgroups_removed", out.Cgroups, "stuck", out.Stuck, "took", took, "err", err)
		return
	}
	log.Warn(recoveredMsg, "jobs_lost", len(out.Lost), "cgroups_removed", out.Cgroups, "took", took)
}

// instance is a running chimirror server: its listeners, its supervisor
// and runner, and the HTTP servers on them.
type instance struct {
	log        *slog.Logger
	cfg        *config
	sd         *systemd // systemd's notifications
	box        bool
	why        string // why jobs are not sandboxed, when they are not
	ledger     *accounting.Ledger
	ln, aln    net.Listener
	runner     *sandbox.Runner
	sup        *supervisor.Supervisor
	admin      *web.Admin
	hs, ahs    *http.Server
	pols       atomic.Pointer[policies.Set] // replaced by SIGHUP reloads
	freshToken bool                         // an admin token was made on this first run

	served, adminServed chan error // each HTTP server's Serve result
}

// startInstance opens the listeners (the public one first: a busy port fails
// before anything else is made), or takes those systemd passed, the runner
// and the supervisor, and makes the HTTP servers. Nothing is served until
// serve.
func startInstance(log *slog.Logger, cfg *config, sd *systemd, ledger *accounting.Ledger, box bool, why string) (_ *instance, retErr error) {
	s := &instance{log: log, cfg: cfg, sd: sd, box: box, why: why, ledger: ledger,
		served: make(chan error, 1), adminServed: make(chan error, 1)}
	var undo []func() error
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				retErr = errors.Join(retErr, undo[i]())
			}
		}
	}()
	// No TCP keepalive: WebSocket pings find dead peers, and the three
	// setsockopt calls per connection are measurable in the setup rate.
	lc := net.ListenConfig{KeepAlive: -1}
	var err error
	ln := sd.takeListener(fdNamePublic)
	if ln != nil {
		sd.warnElsewhere(fdNamePublic, "listen", cfg.Listen, ln)
	} else if ln, err = lc.Listen(context.Background(), "tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w%s", cfg.Listen, err, inUse(err, "--listen ADDR (or listen in the config)"))
	}
	s.ln = ln
	undo = append(undo, ignoreClosed(ln.Close))
	s.logSandbox()
	tokens, freshToken, err := adminTokens(cfg)
	if err != nil {
		return nil, err
	}
	s.freshToken = freshToken != ""
	aln := sd.takeListener(fdNameAdmin)
	passed := aln != nil
	if !passed {
		if aln, err = lc.Listen(context.Background(), "tcp", cfg.AdminListen); err != nil {
			return nil, fmt.Errorf("admin_listen on %s: %w%s", cfg.AdminListen, err, inUse(err, "--admin-listen ADDR (127.0.0.1:0 takes a free port)"))
		}
	}
	s.aln = aln
	undo = append(undo, ignoreClosed(aln.Close))
	if passed { // the rule for admin_listen holds for systemd's socket too
		if msg := adminExposure(aln.Addr().String(), cfg.AdminPublic, cfg.AdminEdge.TLS != nil); msg != "" {
			return nil, fmt.Errorf("the admin socket systemd passed (FileDescriptorName=%s): %s", fdNameAdmin, msg)
		}
		sd.warnElsewhere(fdNameAdmin, "admin_listen", cfg.AdminListen, aln)
	}
	metrics := web.NewMetrics()
	if s.runner, err = sandbox.NewRunner(log, cfg.Runner); err != nil {
		return nil, fmt.Errorf("start sandbox runner: %w", err)
	}
	undo = append(undo, s.runner.Close)
	cfg.Sup.Sandbox, cfg.Sup.Ledger, cfg.Sup.OnEnd, cfg.Sup.Runner = box, ledger, metrics.JobEnded, s.runner
	// The operator's GOMEMLIMIT wins over the one full rings need.
	cfg.Sup.TuneMemoryLimit = os.Getenv("GOMEMLIMIT") == ""
	if s.sup, err = supervisor.New(log, cfg.Sup); err != nil {
		return nil, err
	}
	metrics.Watch(s.sup)
	cfg.Web.Metrics = metrics
	cfg.Web.ConsoleURL = s.consoleURL()
	s.hs = web.New(log, s.sup, cfg.Web).HTTPServer()
	s.pols.Store(cfg.Policies)
	s.admin = web.NewAdmin(log, s.sup, web.AdminOptions{Tokens: tokens, Metrics: metrics, Edge: cfg.AdminEdge,
		Policies:      func() []*policies.Policy { return s.pols.Load().All() },
		CPUSecondRate: cfg.Chargeback.CPUSecond, GiBHourRate: cfg.Chargeback.GiBHour})
	s.ahs = s.admin.HTTPServer()
	return s, nil
}

// inUse is the hint for an address another server holds: the flag that
// moves this one.
func inUse(err error, flag string) string {
	if errors.Is(err, syscall.EADDRINUSE) {
		return "; another server has it: give this one another address with " + flag
	}
	return ""
}

// ignoreClosed is close that takes an already closed listener as done.
func ignoreClosed(close func() error) func() error {
	return func() error {
		if err := close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// logSandbox says, once, how jobs will run.
func (s *instance) logSandbox() {
	switch {
	case s.box:
		s.log.Info("sandbox on: every job gets its own cgroup and namespaces", "cgroup_version", sandbox.CgroupVersion())
	case s.cfg.Sandbox == "auto":
		s.log.Warn("SANDBOX OFF: jobs run as plain processes with the server's user, filesystem and network, "+
			"and no CPU, memory or pids limits; only time and output limits apply", "why", s.why)
	default:
		s.log.Warn("SANDBOX OFF (sandbox = \"off\"): jobs run as plain processes, without limits or isolation")
	}
}

// serve starts both HTTP servers; wait reads how they end.
func (s *instance) serve() {
	go func() { s.adminServed <- s.ahs.Serve(s.cfg.AdminEdge.Listener(s.aln)) }()
	go func() { s.served <- s.hs.Serve(s.cfg.Web.Edge.Listener(s.ln)) }()
}

// announce writes the lines that say the server is up, and where: https
// and wss on a listener with TLS.
func (s *instance) announce(stderr io.Writer) {
	page, console := s.pageURL(), s.consoleURL()
	apps := "ws" + strings.TrimPrefix(page, "http") + "apps/"
	s.log.Info("chimirror serving", "url", page, "config", s.cfg.Source, "apps", strings.Join(s.sup.Apps(), ","),
		"version", version, "ledger", s.ledger.Path())
	fmt.Fprintf(stderr, "chimirror: test page at %s; apps at %s{%s}\n", page, apps, strings.Join(s.sup.Apps(), ","))
	msg := fmt.Sprintf("chimirror: operator console at %s (%s)\n", console, tokenHint(s.cfg))
	if s.cfg.quickData {
		msg += fmt.Sprintf("chimirror: quick mode: ledger and admin token in %s (--data-dir DIR to choose)\n", s.cfg.DataDir)
	}
	if s.freshToken { // the token itself is never printed: terminals end up in journald and log files
		msg += "chimirror: first run: a new admin token was made; it is only in that file (mode 0600)\n"
	}
	// One write: whoever waits for the console line sees the note with it.
	fmt.Fprint(stderr, msg)
}

// recordAddress writes where the admin listener is into the data dir,
// for the CLI (see serverFile).
func (s *instance) recordAddress() error {
	info := serverInfo{Admin: s.aln.Addr().String(), AdminURL: s.consoleURL(), PID: os.Getpid()}
	if len(s.cfg.AdminTokens) == 0 {
		info.TokenFile = filepath.Join(s.cfg.DataDir, adminTokenFile)
	}
	return writeServerFile(s.cfg.DataDir, info)
}

// pageURL is where the test page is, as a client types it: scheme,
// address and base path.
func (s *instance) pageURL() string {
	return edgeURL(s.cfg.Web.Edge, s.ln.Addr().String())
}

// consoleURL is where the operator console is.
func (s *instance) consoleURL() string {
	return edgeURL(s.cfg.AdminEdge, s.aln.Addr().String())
}

func edgeURL(e web.Edge, addr string) string {
	scheme := "http"
	if e.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + addr + e.BasePath + "/"
}

// wait serves until ctx is done or an HTTP server stops, reloading the
// certificates and the config on each SIGHUP, and returns the server's
// error if one stopped.
func (s *instance) wait(ctx context.Context, hup <-chan os.Signal, stderr io.Writer) error {
	ticks, stopTicks := s.sd.statusTicks()
	defer stopTicks()
	for {
		select {
		case <-ticks:
			s.sd.status(servingStatus(s.sup.Running()))
		case <-ctx.Done():
			s.log.Info("shutting down: ending every job")
			return nil
		case err := <-s.served:
			s.log.Error("http server stopped", "err", err)
			return err
		case err := <-s.adminServed:
			s.log.Error("admin server stopped", "err", err)
			return err
		case <-hup:
			s.sd.reloading()
			s.reloadCertificates()
			if next := reload(s.log, stderr, s.cfg, s.sup, s.admin); next != nil {
				s.pols.Store(next.Policies)
			}
			s.sd.ready(servingStatus(s.sup.Running()))
		}
	}
}

// reloadCertificates re-reads each listener's certificate and key from
// the files the server started with (reload names changed paths as
// needing a restart). New connections get the new certificate; open ones
// keep theirs. A pair whose files are broken keeps serving the previous
// one, and the log says why.
func (s *instance) reloadCertificates() {
	type pair struct {
		listener string
		kp       *web.KeyPair
	}
	var pairs []pair
	switch t := s.cfg.tls; {
	case t.public != nil && t.public == t.admin:
		pairs = []pair{{"both", t.public}}
	default:
		if t.public != nil {
			pairs = append(pairs, pair{"public", t.public})
		}
		if t.admin != nil {
			pairs = append(pairs, pair{"admin", t.admin})
		}
	}
	if cas := s.cfg.tls.clientCAs; cas != nil {
		if err := cas.Reload(); err != nil {
			s.log.Error("admin_client_ca reload failed: still trusting the previous bundle", "err", err)
		} else {
			s.log.Info("admin_client_ca reloaded", "file", cas.Path())
		}
	}
	for _, p := range pairs {
		if err := p.kp.Reload(); err != nil {
			s.log.Error("certificate reload failed: still serving the previous one", "listener", p.listener, "err", err)
			continue
		}
		leaf := p.kp.Leaf()
		// The serial in hex, as openssl x509 -serial prints it.
		s.log.Info("certificate reloaded", "listener", p.listener, "serial", fmt.Sprintf("%X", leaf.SerialNumber), "not_after", leaf.NotAfter)
	}
}

// shutdown stops accepting, then ends every job through its normal
// termination path. The deadline leaves room for the longest grace period
// plus the kill; tearing a sandboxed job down (cgroup kill, empty, delete)
// takes a few ms of kernel work, so thousands of jobs need more than the
// grace.
func (s *instance) shutdown(serveErr error) error {
	var maxGrace time.Duration
	for _, a := range s.cfg.Sup.Apps {
		maxGrace = max(maxGrace, a.Grace, supervisor.DefaultGrace)
	}
	running := s.sup.Running()
	teardown := time.Duration(running) * 10 * time.Millisecond
	sctx, cancel := context.WithTimeout(context.Background(), maxGrace+5*time.Second+teardown)
	defer cancel()
	// The HTTP server stops accepting at once, and its handlers may still be
	// starting jobs: shut both down side by side, so ending the jobs never
	// waits for a handler (nor a handler for the jobs' end).
	herrc := make(chan error, 1)
	go func() { herrc <- s.hs.Shutdown(sctx) }()
	t0 := time.Now()
	serr := s.sup.Shutdown(sctx)
	s.log.Info("jobs ended", "jobs", running, "took", time.Since(t0).Round(time.Millisecond))
	herr := <-herrc
	s.admin.Close() // live event sockets: hijacked, so Shutdown does not wait for them
	aerr := s.ahs.Shutdown(sctx)
	if serveErr != nil && errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, herr, serr, aerr)
}

// openLedger opens the ledger in dataDir, creating the directory if
// needed. Every failure names the path and what to do.
func openLedger(log *slog.Logger, dataDir string) (*accounting.Ledger, error) {
	if err := privateDir(log, dataDir); err != nil {
		return nil, err
	}
	l, err := accounting.Open(ledgerPath(dataDir), accounting.Options{Log: log})
	if errors.Is(err, accounting.ErrLocked) {
		return nil, fmt.Errorf("%w: is another chimirror serving from data_dir %s? Stop it, or give this one its own with --data-dir DIR (or data_dir in its config)", err, dataDir)
	}
	return l, err
}

// privateDir makes dir (mode 0700) or, when it exists, makes it private:
// it holds every job's record and the admin token. A dir that group or
// others may read or enter is fixed, and the fix logged; one that cannot
// be fixed (not ours, a read-only mount) is refused.
func privateDir(log *slog.Logger, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data_dir %s is not a directory", dir)
	}
	if owner, _, ok := fileIDs(st); ok && int(owner) != os.Geteuid() {
		return fmt.Errorf("data_dir %s belongs to uid %d, not to this server (uid %d): whoever owns it could plant an admin token or a ledger there; choose another data_dir, or chown it", dir, owner, os.Geteuid())
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		if err := os.Chmod(dir, mode&0o700|0o700); err != nil {
			return fmt.Errorf("data_dir %s is open to other users (mode %#o) and could not be made private: %w; chmod 700 it, or choose another data_dir", dir, mode, err)
		}
		log.Warn("data_dir was open to other users; made private (mode 0700)", "data_dir", dir, "was", fmt.Sprintf("%#o", mode))
	}
	return nil
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
	if next.Runner != cur.Runner {
		next.Runner = cur.Runner
		next.jobsChecked = false // parseConfig checked other ranges
	}
	if next.tls.files != cur.tls.files {
		next.tls = cur.tls // the listeners keep theirs: those keys stay hidden
		next.setDataDir(next.DataDir)
	}
	if next.DataDir != cur.DataDir {
		next.setDataDir(cur.DataDir) // clears jobsChecked
	}
	if cur.Sup.Sandbox && !next.jobsChecked {
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
		if fresh != "" { // as at startup: where it is, never the token
			fmt.Fprintf(stderr, "chimirror: a new admin token was made (%s)\n", tokenHint(next))
		}
	}
	if len(restart) > 0 {
		log.Warn("reload: these changes need a restart and are not applied", "keys", strings.Join(restart, ","))
	}
	log.Info("reloaded", "config", cur.Path, "apps", strings.Join(sup.Apps(), ","), "tenants", len(next.Sup.Tenants))
	return next
}

// restartNeeded names the keys whose change from cur to next a reload
// cannot apply: the listeners and their TLS files (SIGHUP re-reads the
// files the server started with), the sandbox mode, origins and bounds,
// and the ledger's place, retention and prices.
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
		{"spool_retention", next.SpoolRetention != cur.SpoolRetention},
		{"chargeback", next.Chargeback != cur.Chargeback},
		{"admin_listen", next.AdminListen != cur.AdminListen},
		{"tls_cert", next.tls.files.cert != cur.tls.files.cert},
		{"tls_key", next.tls.files.key != cur.tls.files.key},
		{"admin_tls_cert", next.tls.files.adminCert != cur.tls.files.adminCert},
		{"admin_tls_key", next.tls.files.adminKey != cur.tls.files.adminKey},
		{"admin_client_ca", next.tls.files.clientCA != cur.tls.files.clientCA},
		{"trusted_proxies", !slices.Equal(next.Web.Edge.TrustedProxies, cur.Web.Edge.TrustedProxies)},
		{"hosts", !slices.Equal(next.Web.Edge.Hosts, cur.Web.Edge.Hosts)},
		{"base_path", next.Web.Edge.BasePath != cur.Web.Edge.BasePath},
		{"body_timeout", next.Web.Edge.BodyTimeout != cur.Web.Edge.BodyTimeout},
		{"idle_timeout", next.Web.Edge.IdleTimeout != cur.Web.Edge.IdleTimeout},
		{"admin_public", next.AdminPublic != cur.AdminPublic},
		{"dynamic_uids", next.Runner.DynamicIDs != cur.Runner.DynamicIDs},
		{"user_namespace_uids", next.Runner.UserNamespaceIDs != cur.Runner.UserNamespaceIDs},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

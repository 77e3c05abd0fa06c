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
	"strings"
	"syscall"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/web"
)

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default ./chimirror.toml if present, else the embedded default)")
	listen := fs.String("listen", "", "listen address, overriding the config's (e.g. 127.0.0.1:8080, :0)")
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

	var cfg *config
	var err error
	if fs.NArg() > 0 && *cfgPath == "" {
		// Quick mode stands alone: a ./chimirror.toml is not read.
		cfg, err = quickConfig(&config{Listen: defaultListen, Web: web.Options{Software: "chimirror/" + version}}, fs.Args())
	} else {
		cfg, err = loadConfig(*cfgPath)
		if err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		if fs.NArg() > 0 {
			cfg, err = quickConfig(cfg, fs.Args())
		}
	}
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
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
	// No TCP keepalive: WebSocket pings find dead peers, and the three
	// setsockopt calls per connection are measurable in the setup rate.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	box, why := sandboxMode(cfg.Sandbox)
	switch {
	case box:
		log.Info("sandbox on: every job gets its own cgroup and namespaces", "cgroup_version", sandbox.CgroupVersion())
	case cfg.Sandbox == "on":
		ln.Close()
		return fmt.Errorf("sandbox = \"on\" but %s", why)
	case cfg.Sandbox == "auto":
		log.Warn("SANDBOX OFF: jobs run as plain processes with the server's user, filesystem and network, "+
			"and no CPU, memory or pids limits; only time and output limits apply", "why", why)
	default:
		log.Warn("SANDBOX OFF (sandbox = \"off\"): jobs run as plain processes, without limits or isolation")
	}
	cfg.Sup.Sandbox = box
	sup, err := supervisor.New(log, cfg.Sup)
	if err != nil {
		ln.Close()
		return err
	}
	srv := web.New(log, sup, cfg.Web)
	hs := srv.HTTPServer(cfg.Listen)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	url := "http://" + ln.Addr().String() + "/"
	log.Info("chimirror serving", "url", url, "config", cfg.Source, "apps", strings.Join(sup.Apps(), ","), "version", version)
	fmt.Fprintf(stderr, "chimirror: test page at %s; apps at ws://%sapps/{%s}\n", url, strings.TrimPrefix(url, "http://"), strings.Join(sup.Apps(), ","))

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
		case <-hup:
			reload(log, cfg, sup)
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
	teardown := time.Duration(sup.Running()) * 5 * time.Millisecond
	sctx, cancel := context.WithTimeout(context.Background(), maxGrace+5*time.Second+teardown)
	defer cancel()
	herr := hs.Shutdown(sctx)
	serr := sup.Shutdown(sctx)
	if serveErr != nil && errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if err := errors.Join(serveErr, herr, serr); err != nil {
		return err
	}
	log.Info("stopped")
	if _, err := fmt.Fprintln(stderr, "chimirror: stopped"); err != nil {
		return err
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
// applies to new jobs (apps, policies, tenants, max_sessions); running jobs
// keep what they started with. An invalid one changes nothing and every
// problem is logged. Listener, origins, bounds and the sandbox mode need a
// restart.
func reload(log *slog.Logger, cur *config, sup *supervisor.Supervisor) {
	if cur.Path == "" {
		log.Warn("SIGHUP: nothing to reload", "config", cur.Source)
		return
	}
	next, err := loadConfig(cur.Path)
	if err != nil {
		var ps policies.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				log.Error("reload refused: config problem", "problem", p.String())
			}
		} else {
			log.Error("reload refused", "err", err)
		}
		log.Warn("reload refused: still running the previous configuration", "config", cur.Path)
		return
	}
	next.Sup.Sandbox, next.Sup.OnEnd = cur.Sup.Sandbox, cur.Sup.OnEnd
	sup.Reload(next.Sup)
	if next.Listen != cur.Listen || next.Sandbox != cur.Sandbox {
		log.Warn("reload: listen and sandbox changes need a restart")
	}
	log.Info("reloaded", "config", cur.Path, "apps", strings.Join(sup.Apps(), ","), "tenants", len(next.Sup.Tenants))
}

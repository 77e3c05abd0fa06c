package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/internal/adminapi"
	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/sandbox"
	bolt "go.etcd.io/bbolt"
)

// benchConfig is the server the benchmark measures. Programs are plain
// coreutils so the floors can run the very same commands.
const benchConfig = `
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_sessions = 20000
# All jobs' replay rings together (benchReplayMemoryMax, resume.go): 1,000
# detached jobs with full rings of 256 KiB fit.
replay_memory_max = "256MiB"
sandbox = "%s"
# The bench's own admin token, made per server, for the admin API figures.
admin_tokens_sha256 = ["bench:%s"]
# A dynamic uid per sandboxed job, for 20,000 of them (the default range,
# systemd's, holds 4,336).
dynamic_uids = "70000-99999"
# Held sessions are opened for minutes and never read again: no keepalive
# drops while the capacity is measured.
ping_interval = "1h"
# policies/bench.toml: no output or time limits (2 GiB of output is
# measured), a prepared-sandbox pool like the built-ins'.
policy_dir = "policies"
[[app]]
name = "cat"
command = ["cat"]
policy = "bench"
[[app]]
name = "lines"
command = ["sh", "-c", "yes \"$(printf '%%099d' 0)\" | head -n %d"]
env = ["PATH"]
policy = "bench"
[[app]]
name = "zero"
command = ["head", "-c", "%d", "/dev/zero"]
binary = true
policy = "bench"
[[app]]
name = "sink"
command = ["wc", "-c"]
policy = "bench"
`

// benchPolicy is the bench apps' job class: sandboxed like the built-ins
// (the default seccomp profile, a dynamic user) but with no limit a
// benchmark would hit.
const benchPolicy = `memory = "256MiB"
pids = 64
initiators = 8
`

// benchSandboxApps are the sandboxed server's apps for the seccomp
// figures: cat, and a getppid loop (this binary, copied into DIR, run as
// its hidden command ARG), with and without a filter (policies bench and
// bench-nofilter).
const benchSandboxApps = `
[[app]]
name = "cat-nofilter"
command = ["cat"]
policy = "bench-nofilter"
[[app]]
name = "getppid"
command = ["%[1]s", "%[4]s", "%[2]d"]
dir = "%[3]s"
policy = "bench"
[[app]]
name = "getppid-nofilter"
command = ["%[1]s", "%[4]s", "%[2]d"]
dir = "%[3]s"
policy = "bench-nofilter"
`

type benchOpts struct {
	setupN, echoN, lines, zeroBytes, sinkBytes, held, boxedHeld, ledgerPairs int
	getppids                                                                 int // calls per timed loop
	reattaches, detached                                                     int // reattaches timed; detached jobs held (resume.go)
}

type benchRow struct{ figure, value, floor, target string }

// cmdBench measures chimirror against floors taken in the same run on the
// same machine, and prints a table (see README "Benchmarks").
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chimirror-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := benchOpts{}
	chimirror := fs.String("chimirror", "", "the chimirror binary to measure (default: chimirror beside this executable, else on PATH)")
	fs.IntVar(&o.setupN, "setups", 2000, "sessions per setup-rate figure")
	fs.IntVar(&o.echoN, "echoes", 5000, "round trips for the echo latency")
	fs.IntVar(&o.lines, "lines", 2_000_000, "100-byte lines for text throughput")
	fs.IntVar(&o.zeroBytes, "bytes", 2<<30, "bytes for binary output throughput")
	fs.IntVar(&o.sinkBytes, "in-bytes", 1<<30, "bytes for client-to-stdin throughput")
	fs.IntVar(&o.held, "held", 6000, "concurrent sessions to hold open")
	fs.IntVar(&o.boxedHeld, "boxed-held", 6000, "concurrent sandboxed sessions to hold open")
	fs.IntVar(&o.ledgerPairs, "ledger-pairs", 4000, "start+finish pairs written to the ledger")
	fs.IntVar(&o.getppids, "getppids", 200_000, "getppid(2) calls per timed loop, in and out of a job")
	fs.IntVar(&o.reattaches, "reattaches", 1000, "reattaches to a detached job timed, dial to first replayed byte")
	fs.IntVar(&o.detached, "detached", 1000, "detached jobs with full replay rings held at once")
	quick := fs.Bool("quick", false, "tiny counts: check that every figure can be measured")
	only := fs.String("only", "", "comma-separated groups to measure, of: "+strings.Join(benchGroups, ",")+" (default all)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	want, err := parseOnly(*only)
	if err != nil {
		return err
	}
	if *quick {
		o = benchOpts{setupN: 40, echoN: 100, lines: 20000, zeroBytes: 16 << 20, sinkBytes: 16 << 20, held: 50, boxedHeld: 20, ledgerPairs: 200, getppids: 10000,
			reattaches: 50, detached: 20}
	}
	plain := slices.ContainsFunc([]string{"setup", "echo", "lines", "binary", "spool", "stdin", "held", "reattach", "sse", "longpoll"}, func(g string) bool { return want[g] })
	boxErr := sandbox.Available()
	var server string // the chimirror binary, if a group needs a server
	if plain || want["detached"] || (want["sandbox"] && boxErr == nil) {
		if server, err = chimirrorBinary(*chimirror); err != nil {
			return err
		}
	}
	var srv *benchServer // the core figures: plain jobs
	if plain {
		if srv, err = startBenchServer(server, o, "off"); err != nil {
			return err
		}
		defer srv.stop()
		fmt.Fprintf(stderr, "bench: server pid %d at %s\n", srv.cmd.Process.Pid, srv.addr)
	}

	var rows []benchRow
	add := func(r benchRow) {
		rows = append(rows, r)
		fmt.Fprintf(stderr, "bench: %-38s %s (floor %s)\n", r.figure, r.value, r.floor)
	}
	var wsf *wsFloor
	if want["setup"] || want["echo"] || want["reattach"] || want["longpoll"] || want["sandbox"] {
		if wsf, err = startWSFloor(); err != nil {
			return err
		}
		defer func() {
			if err := wsf.stop(); err != nil {
				fmt.Fprintln(stderr, "bench: stop the minimal WebSocket server:", err)
			}
		}()
	}
	if want["setup"] {
		for _, par := range []int{1, 16} {
			floor, flat, err := rate(o.setupN, par, forkEchoCat)
			if err != nil {
				return fmt.Errorf("fork floor: %w", err)
			}
			ours, lat, cpu, err := rateCPU(processClock(srv.cmd.Process.Pid), o.setupN, par, func() error { return srv.sessionEcho() })
			if err != nil {
				return fmt.Errorf("session setup: %w", err)
			}
			bare, blat, bcpu, err := rateCPU(processClock(wsf.cmd.Process.Pid), o.setupN, par, func() error { return sessionEcho(wsf.url) })
			if err != nil {
				return fmt.Errorf("minimal WebSocket server: %w", err)
			}
			add(benchRow{fmt.Sprintf("session setup, %d at a time", par),
				fmt.Sprintf("%.0f/s (%.2f× floor, %.2f× minimal); p50 %s, p99 %s, max %s; server CPU %s/session", ours, ours/floor, ours/bare,
					ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]), cpu),
				fmt.Sprintf("%.0f/s bare fork+exec of cat + echo; p50 %s, p99 %s", floor, ms(flat[len(flat)/2]), ms(flat[len(flat)*99/100])), "≥ 0.9× floor"})
			add(benchRow{fmt.Sprintf("  minimal WebSocket server, %d at a time", par),
				fmt.Sprintf("%.0f/s (%.2f× floor); p50 %s; server CPU %s/session", bare, bare/floor, ms(blat[len(blat)/2]), bcpu),
				"the fork floor above; gorilla + os/exec cat per connection, no ledger, no limits", "–"})
		}
	}
	if want["echo"] {
		p50, p99, err := echoLatency("ws://"+srv.addr+"/apps/cat", o.echoN)
		if err != nil {
			return fmt.Errorf("echo latency: %w", err)
		}
		floor50, err := pipeEchoFloor(o.echoN)
		if err != nil {
			return fmt.Errorf("echo floor: %w", err)
		}
		bare50, bare99, err := echoLatency(wsf.url, o.echoN)
		if err != nil {
			return fmt.Errorf("minimal WebSocket server echo: %w", err)
		}
		add(benchRow{"echo round trip", fmt.Sprintf("p50 %s, p99 %s", us(p50), us(p99)),
			fmt.Sprintf("p50 %s through cat's pipes directly", us(floor50)), "≤ 130 µs p50"})
		tcp50, tcp99, err := tcpEchoLatency(wsf.tcpEcho, o.echoN)
		if err != nil {
			return fmt.Errorf("TCP echo: %w", err)
		}
		add(benchRow{"  minimal WebSocket server echo", fmt.Sprintf("p50 %s, p99 %s", us(bare50), us(bare99)),
			"the pipe floor above; gorilla + os/exec cat, no ledger, no limits", "–"})
		add(benchRow{"  bare TCP echo, two processes", fmt.Sprintf("p50 %s, p99 %s", us(tcp50), us(tcp99)),
			"loopback TCP from the bench to a Go process that echoes: no WebSocket, no job", "–"})
	}
	if want["lines"] {

		lps, err := srv.textLines(o.lines)
		if err != nil {
			return fmt.Errorf("text lines: %w", err)
		}
		lfloor, err := pipeFloor(exec.Command("sh", "-c", fmt.Sprintf("yes \"$(printf '%%099d' 0)\" | head -n %d", o.lines)))
		if err != nil {
			return err
		}
		add(benchRow{"text-line output (100-byte lines)", fmt.Sprintf("%.0f lines/s", lps),
			fmt.Sprintf("%.0f lines/s read straight from the pipe", lfloor/100), "≥ 300,000 lines/s"})
	}
	if want["binary"] {

		bps, err := srv.binaryOut(o.zeroBytes)
		if err != nil {
			return fmt.Errorf("binary output: %w", err)
		}
		bfloor, err := pipeFloor(exec.Command("head", "-c", strconv.Itoa(o.zeroBytes), "/dev/zero"))
		if err != nil {
			return err
		}
		add(benchRow{"binary output", fmt.Sprintf("%.0f MB/s", bps/1e6), fmt.Sprintf("%.0f MB/s from the pipe", bfloor/1e6), "≥ 700 MB/s"})
	}
	if want["spool"] {
		if err := spoolRows(srv, o, add); err != nil {
			return err
		}
	}
	if want["stdin"] {

		ips, err := srv.stdinIn(o.sinkBytes)
		if err != nil {
			return fmt.Errorf("stdin throughput: %w", err)
		}
		add(benchRow{"client to stdin", fmt.Sprintf("%.0f MB/s", ips/1e6), "–", "–"})
	}
	if want["ledger"] {

		pairs, plain, err := benchLedger(o.ledgerPairs)
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		add(benchRow{"ledger start+finish pairs, 32 at once", fmt.Sprintf("%.0f/s durable (%.1f× floor)", pairs, pairs/plain),
			fmt.Sprintf("%.0f/s a plain bbolt Update per record", plain), "≥ 2,000/s"})
	}
	if want["held"] {

		held, err := srv.hold(o.held)
		if err != nil {
			return fmt.Errorf("held sessions: %w", err)
		}
		add(benchRow{"held sessions", strconv.Itoa(held.n), "fd limit " + strconv.Itoa(held.fdLimit), "≥ 6,000"})
		add(benchRow{fmt.Sprintf("admin running list at %d jobs", held.n),
			fmt.Sprintf("p50 %s, p99 %s (1000 a page)", ms(held.apiRunning[len(held.apiRunning)/2]), ms(held.apiRunning[len(held.apiRunning)-1])),
			fmt.Sprintf("p50 %s GET /api/v1/healthz", ms(held.apiFloor[len(held.apiFloor)/2])), "not slow at 1,000"})
		add(benchRow{"fds per session (server)", fmt.Sprintf("%.2f", held.fdsPer), "–", "≤ 3"})
		add(benchRow{"server RSS per session", fmt.Sprintf("%.1f KB (%.1f KB of it the ledger file's mapped pages)", held.rssPer/1024, held.filePer/1024), "–", "≤ 40 KB"})
	}

	if err := resumeRows(srv, wsf, server, o, want, add); err != nil {
		return err
	}
	if err := httpRows(srv, wsf, o, want, add); err != nil {
		return err
	}

	// Sandboxed figures last: tearing thousands of sandboxes down keeps the
	// kernel busy afterwards, which would disturb the plain figures.
	if !want["sandbox"] {
		// not asked for
	} else if boxErr != nil {
		add(benchRow{"sandboxed session setup", "not measured: " + boxErr.Error(), "–", "≥ 700/s at 16, p50 ≤ 3 ms"})
	} else if err := sandboxRows(server, o, wsf, add); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "| Figure | chimirror | Floor (same run) | Target |")
	fmt.Fprintln(stdout, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(stdout, "| %s | %s | %s | %s |\n", r.figure, r.value, r.floor, r.target)
	}
	return nil
}

// sandboxRows measures the sandboxed figures on a server of their own,
// beside wsf, the minimal WebSocket server (sandbox off), whose rate and
// latency in the same run are issue 17's yardstick.
func sandboxRows(server string, o benchOpts, wsf *wsFloor, add func(benchRow)) error {
	boxed, err := startBenchServer(server, o, "on")
	if err != nil {
		return err
	}
	defer boxed.stop()
	for _, par := range []int{1, 16} {
		floor, flat, err := rate(o.setupN, par, sandboxFloor)
		if err != nil {
			return fmt.Errorf("sandbox floor: %w", err)
		}
		ours, lat, cpu, err := rateCPU(hostCPU, o.setupN, par, func() error { return boxed.sessionEcho() })
		if err != nil {
			return fmt.Errorf("sandboxed session setup: %w", err)
		}
		bare, blat, bcpu, err := rateCPU(hostCPU, o.setupN, par, func() error { return sessionEcho(wsf.url) })
		if err != nil {
			return fmt.Errorf("minimal WebSocket server: %w", err)
		}
		p50, bp50 := lat[len(lat)/2], blat[len(blat)/2]
		add(benchRow{fmt.Sprintf("sandboxed session setup, %d at a time", par),
			fmt.Sprintf("%.0f/s (%.2f× floor); p50 %s, p99 %s", ours, ours/floor, ms(p50), ms(lat[len(lat)*99/100])),
			fmt.Sprintf("%.0f/s bare clone with the same namespaces into a fresh cgroup, exec cat + echo; p50 %s, p99 %s", floor, ms(flat[len(flat)/2]), ms(flat[len(flat)*99/100])),
			"≥ 700/s at 16, p50 ≤ 3 ms"})
		target := "≥ 0.5× its rate"
		if par == 1 {
			target = "p50 ≤ 2× its p50"
		}
		add(benchRow{fmt.Sprintf("  sandboxed against the minimal server, %d at a time", par),
			fmt.Sprintf("%.2f× its rate, p50 %.2f× its p50; host CPU %s/session", ours/bare, float64(p50)/float64(bp50), cpu),
			fmt.Sprintf("minimal WebSocket server (no sandbox) in turns: %.0f/s, p50 %s; host CPU %s/session", bare, ms(bp50), bcpu),
			target})
	}
	// What the seccomp filter costs: a session with and without it,
	// in turns so that both see the same machine; and a syscall.
	with, without, err := alternate(max(1, min(o.setupN/4, 400)), boxed.sessionEcho, func() error { return sessionEcho("ws://" + boxed.addr + "/apps/cat-nofilter") })
	if err != nil {
		return fmt.Errorf("sandboxed setup with and without seccomp: %w", err)
	}
	add(benchRow{"sandboxed session setup, with the default seccomp filter, 1 at a time",
		fmt.Sprintf("p50 %s (%+.2f ms)", ms(with[len(with)/2]), float64(with[len(with)/2]-without[len(without)/2])/1e6),
		fmt.Sprintf("p50 %s, the same sessions without a filter, in turns", ms(without[len(without)/2])), "–"})
	outside, err := getppidOutside(o.getppids)
	if err != nil {
		return fmt.Errorf("getppid outside a job: %w", err)
	}
	inNoFilter, err := boxed.jobText("getppid-nofilter")
	if err != nil {
		return fmt.Errorf("getppid in a job without a filter: %w", err)
	}
	inFilter, err := boxed.jobText("getppid")
	if err != nil {
		return fmt.Errorf("getppid in a job: %w", err)
	}
	add(benchRow{"getppid(2) in a job, the default seccomp filter",
		fmt.Sprintf("%s per call (%s without the filter)", strings.TrimSpace(inFilter), strings.TrimSpace(inNoFilter)),
		fmt.Sprintf("%s per call outside any job", strings.TrimSpace(outside)), "–"})
	// Paced arrivals (one per 20 ms, below the pool's refill rate): the
	// latency a job sees when a prepared sandbox is waiting for it.
	var paced []time.Duration
	for i := 0; i < min(o.setupN, 200); i++ {
		time.Sleep(20 * time.Millisecond)
		t0 := time.Now()
		if err := boxed.sessionEcho(); err != nil {
			return fmt.Errorf("paced sandboxed setup: %w", err)
		}
		paced = append(paced, time.Since(t0))
	}
	slices.Sort(paced)
	add(benchRow{"sandboxed session setup, paced (pool ready)",
		fmt.Sprintf("p50 %s, p99 %s", ms(paced[len(paced)/2]), ms(paced[len(paced)*99/100])),
		"plain p50 above", "p50 ≤ 3 ms"})
	held, err := boxed.hold(o.boxedHeld)
	if err != nil {
		return fmt.Errorf("sandboxed held sessions: %w", err)
	}
	add(benchRow{"sandboxed held sessions", strconv.Itoa(held.n), "fd limit " + strconv.Itoa(held.fdLimit), "≥ 6,000"})
	add(benchRow{"sandboxed: fds per session (server)", fmt.Sprintf("%.2f", held.fdsPer), "–", "≤ 3"})
	add(benchRow{"sandboxed: server RSS per session", fmt.Sprintf("%.1f KB (%.1f KB of it the ledger file's mapped pages)", held.rssPer/1024, held.filePer/1024), "–", "–"})
	add(benchRow{"sandboxed: host memory per session", fmt.Sprintf("%.0f KB", held.memPer/1024), "–", "–"})
	return nil
}

// benchGroups are the figure groups --only can pick, in the order they run.
var benchGroups = []string{"setup", "echo", "lines", "binary", "spool", "stdin", "ledger", "held", "reattach", "detached", "sse", "longpoll", "sandbox"}

// parseOnly returns the groups to run: all of them for "".
func parseOnly(only string) (map[string]bool, error) {
	want := map[string]bool{}
	if only == "" {
		for _, g := range benchGroups {
			want[g] = true
		}
		return want, nil
	}
	for _, g := range strings.Split(only, ",") {
		g = strings.TrimSpace(g)
		if !slices.Contains(benchGroups, g) {
			return nil, fmt.Errorf("--only: unknown group %q (want some of %s)", g, strings.Join(benchGroups, ","))
		}
		want[g] = true
	}
	return want, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// rateCPU is rate(n, par, f) and, as text, what clock counted over it per
// call ("?" where it cannot be read: then only the rates are figures).
func rateCPU(clock func() (time.Duration, error), n, par int, f func() error) (float64, []time.Duration, string, error) {
	c0, err0 := clock()
	r, lat, err := rate(n, par, f)
	if err != nil {
		return 0, nil, "", err
	}
	c1, err1 := clock()
	if err0 != nil || err1 != nil || n <= 0 {
		return r, lat, "?", nil
	}
	return r, lat, ms((c1 - c0) / time.Duration(n)), nil
}

// processClock is a clock for rateCPU: process pid's own CPU time.
func processClock(pid int) func() (time.Duration, error) {
	return func() (time.Duration, error) { return processCPU(pid) }
}

// rate runs f n times, par at a time, and returns completions per second
// and the sorted latencies of the calls.
func rate(n, par int, f func() error) (float64, []time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	lat := make([]time.Duration, n)
	start := time.Now()
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				t0 := time.Now()
				if err := f(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	r := float64(n) / time.Since(start).Seconds()
	slices.Sort(lat)
	return r, lat, firstErr
}

// The minimal WebSocket server is the least a WebSocket session can cost
// here: its own process, as the server measured is, that upgrades with
// gorilla's defaults, starts cat with os/exec, relays lines both ways and
// answers the close. No ledger, limits, keepalive or sandbox: what TCP,
// HTTP, WebSocket and a fork cost alone. The same process also echoes raw
// TCP, with no WebSocket and no job: the least any round trip between the
// bench and a server process costs on this machine. The bench runs it as
// its own hidden command wsFloorArg, which serves until its stdin closes.
type wsFloor struct {
	url     string
	tcpEcho string // host:port of the raw TCP echo
	cmd     *exec.Cmd
	in      io.WriteCloser
}

func startWSFloor() (_ *wsFloor, retErr error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, wsFloorArg)
	cmd.Stderr = os.Stderr
	in, out, err := startPiped(cmd)
	if err != nil {
		return nil, fmt.Errorf("minimal WebSocket server: %w", err)
	}
	f := &wsFloor{cmd: cmd, in: in}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, f.stop())
		}
	}()
	br := bufio.NewReader(out)
	for _, dst := range []*string{&f.url, &f.tcpEcho} {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("minimal WebSocket server did not start: %w", err)
		}
		*dst = strings.TrimSpace(line)
	}
	return f, nil
}

func (f *wsFloor) stop() error { return errors.Join(f.in.Close(), f.cmd.Wait()) }

// cmdWSFloor is the minimal WebSocket server's process: it prints its URL
// and its TCP echo's address, a line each, then serves until stdin closes.
func cmdWSFloor(stdin io.Reader, stdout io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	echo, err := startTCPEcho()
	if err != nil {
		return errors.Join(err, ln.Close())
	}
	defer echo.stop()
	var (
		up       websocket.Upgrader
		sessions sync.WaitGroup // hijacked connections: http.Server.Close skips them
	)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == jsonFloorPath {
			serveJSONFloor(w)
			return
		}
		sessions.Add(1)
		defer sessions.Done()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if r.URL.Path == firstMessagePath {
			err = serveFirstMessage(ws)
		} else {
			err = relayCat(ws)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: minimal WebSocket server:", err)
		}
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(stdout, "ws://%s/\n%s\n", ln.Addr(), echo.ln.Addr()); err != nil {
		return errors.Join(err, srv.Close(), <-served)
	}
	_, err = io.Copy(io.Discard, stdin) // until the bench closes it
	err = errors.Join(err, srv.Close())
	sessions.Wait()
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// tcpEcho echoes every byte of every connection back, until stop.
type tcpEcho struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool           // set by stop: a connection accepted after it is closed at once
	wg     sync.WaitGroup // the accept loop and one copier per connection
}

func startTCPEcho() (*tcpEcho, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("TCP echo: %w", err)
	}
	e := &tcpEcho{ln: ln, conns: map[net.Conn]bool{}}
	e.wg.Add(1)
	go func() { // ends when stop closes the listener
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				if err := c.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "bench: TCP echo:", err)
				}
				return
			}
			e.conns[c] = true
			e.wg.Add(1)
			e.mu.Unlock()
			go func() { // ends at the client's close, or stop's
				defer e.wg.Done()
				_, err := io.Copy(c, c)
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
				if err := errors.Join(err, c.Close()); err != nil && !errors.Is(err, net.ErrClosed) {
					fmt.Fprintln(os.Stderr, "bench: TCP echo:", err)
				}
			}()
		}
	}()
	return e, nil
}

func (e *tcpEcho) stop() {
	err := e.ln.Close()
	e.mu.Lock()
	e.closed = true
	for c := range e.conns {
		err = errors.Join(err, c.Close())
	}
	e.mu.Unlock()
	e.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "bench: stop TCP echo:", err)
	}
}

// tcpEchoLatency is the round trip of one short line through the raw TCP
// echo at addr.
func tcpEchoLatency(addr string, n int) (p50, p99 time.Duration, retErr error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer func() { retErr = errors.Join(retErr, c.Close()) }()
	return roundTrips(c, c, n)
}

// roundTrips writes "ping\n" to w and reads it back from r, n times, and
// returns the median and 99th percentile.
func roundTrips(w io.Writer, r io.Reader, n int) (p50, p99 time.Duration, err error) {
	lat := make([]time.Duration, 0, n)
	buf := make([]byte, 5)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := w.Write([]byte("ping\n")); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[n/2], lat[n*99/100], nil
}

// relayCat runs one cat for ws until the client closes.
func relayCat(ws *websocket.Conn) error {
	cmd := exec.Command("cat")
	in, out, err := startPiped(cmd)
	if err != nil {
		return err
	}
	relayed := make(chan error, 1)
	go func() { // ends at cat's EOF, after stdin is closed below
		var werr error
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if werr == nil { // after a failed write, drain: cat must not block
				werr = ws.WriteMessage(websocket.TextMessage, sc.Bytes())
			}
		}
		relayed <- errors.Join(werr, sc.Err())
	}()
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			break // the client's close (answered by gorilla) or a drop
		}
		if _, err := in.Write(append(m, '\n')); err != nil {
			break
		}
	}
	return errors.Join(in.Close(), <-relayed, cmd.Wait())
}

// forkEchoCat is the setup floor: a bare Go fork+exec of cat with one echo
// through its pipes.
func forkEchoCat() error { return echoCat(exec.Command("cat"), nil) }

// echoCat starts cmd (a cat), calls placed with its pid if set, sends one
// line through it and waits for it. A cat started is always waited for.
func echoCat(cmd *exec.Cmd, placed func(pid int) error) (retErr error) {
	in, out, err := startPiped(cmd)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, cmd.Process.Kill(), cmd.Wait())
		}
	}()
	if placed != nil {
		if err := placed(cmd.Process.Pid); err != nil {
			return err
		}
	}
	if _, err := in.Write([]byte("x\n")); err != nil {
		return err
	}
	var b [2]byte
	if _, err := io.ReadFull(out, b[:]); err != nil {
		return err
	}
	if err := in.Close(); err != nil {
		return err
	}
	return cmd.Wait()
}

// startPiped starts cmd with a pipe to its stdin and one from its stdout;
// os/exec closes both if the start fails.
func startPiped(cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return in, out, nil
}

// pipeFloor reads a command's stdout to the end and returns bytes/s.
func pipeFloor(cmd *exec.Cmd) (float64, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(io.Discard, out, make([]byte, 64<<10))
	if err != nil {
		return 0, err
	}
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

type benchServer struct {
	admin string   // the admin listener's host:port
	token string   // the admin API's token, configured by the bench
	tail  []string // the server's last log lines; the log goroutine's until done
	cmd   *exec.Cmd
	addr  string
	dir   string
	logs  *bufio.Reader
	done  chan struct{}
}

var (
	listenLine = regexp.MustCompile(`test page at http://([^/]+)/`)
	adminLine  = regexp.MustCompile(`operator console at http://([^/]+)/`)
)

// startBenchServer runs the chimirror binary server as `serve` on a config
// of its own in a fresh temporary directory, removed by stop, with sandbox
// = sandboxMode, and returns once it has said where it listens.
func startBenchServer(server string, o benchOpts, sandboxMode string) (_ *benchServer, retErr error) {
	dir, err := os.MkdirTemp("", "chimirror-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(dir)
		}
	}()
	cfg := filepath.Join(dir, "bench.toml")
	tok := rand.Text()
	sum := sha256.Sum256([]byte(tok))
	config := fmt.Sprintf(benchConfig, sandboxMode, hex.EncodeToString(sum[:]), o.lines, o.zeroBytes)
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "bench.toml"), []byte(benchPolicy), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "bench-spool.toml"), []byte(benchPolicy+benchSpoolPolicy), 0o644); err != nil {
		return nil, err
	}
	config += fmt.Sprintf(benchSpoolApp, o.zeroBytes)
	apps, err := resumeConfig(dir)
	if err != nil {
		return nil, err
	}
	config += apps + httpJobsConfig(o)
	if sandboxMode == "on" {
		if err := os.WriteFile(filepath.Join(dir, "policies", "bench-nofilter.toml"), []byte(benchPolicy+"seccomp = \"off\"\n"), 0o644); err != nil {
			return nil, err
		}
		// The getppid loop runs this binary; a job sees a copy in a dir of
		// its own (the server's binary is hidden from every job).
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin := filepath.Join(dir, "bin")
		if err := os.Mkdir(bin, 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(self, filepath.Join(bin, "chimirror-bench"), 0o755); err != nil {
			return nil, err
		}
		config += fmt.Sprintf(benchSandboxApps, filepath.Join(bin, "chimirror-bench"), o.getppids, bin, getppidArg)
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(server, "serve", "--config", cfg, "--log-level", "warn")
	cmd.SysProcAttr = benchServerAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &benchServer{cmd: cmd, dir: dir, token: tok, logs: bufio.NewReader(stderr), done: make(chan struct{})}
	var said []string // what it printed before it failed, if it does
	for s.addr == "" || s.admin == "" {
		line, err := s.logs.ReadString('\n')
		if len(said) < 50 {
			said = append(said, line)
		}
		if err != nil {
			kerr := cmd.Process.Kill()
			werr := cmd.Wait() // "signal: killed", unless it had exited by itself
			return nil, fmt.Errorf("bench server did not start: %w (%v); it said:\n%s", errors.Join(err, kerr), werr, strings.Join(said, ""))
		}
		if m := listenLine.FindStringSubmatch(line); m != nil {
			s.addr = m[1]
		}
		if m := adminLine.FindStringSubmatch(line); m != nil {
			s.admin = m[1]
		}
	}
	go func() { // keep the server's stderr flowing; ends when it exits
		defer close(s.done)
		for {
			line, err := s.logs.ReadString('\n')
			if line != "" {
				s.tail = append(s.tail, line)
				if len(s.tail) > 20 { // bounded: the last lines, for a failed exit
					s.tail = s.tail[1:]
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					fmt.Fprintln(os.Stderr, "bench: server log:", err)
				}
				return
			}
		}
	}()
	return s, nil
}

func (s *benchServer) stop() {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stop server:", err)
	}
	<-s.done
	if err := s.cmd.Wait(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: server exit: %v; its last log lines:\n%s", err, strings.Join(s.tail, ""))
	}
	os.RemoveAll(s.dir)
}

// Throughput runs read with big buffers; setup and held sessions use
// gorilla's defaults, as a typical client would.
var (
	bulkDialer  = websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10}
	plainDialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}
)

func (s *benchServer) dial(app string, protos ...string) (*websocket.Conn, error) {
	d := plainDialer
	if app == "lines" || app == "lines-spooled" || app == "zero" || app == "zero-spooled" || app == "sink" {
		d = bulkDialer
	}
	d.Subprotocols = protos
	ws, _, err := d.Dial("ws://"+s.addr+"/apps/"+app, nil)
	return ws, err
}

// sessionEcho is one whole session: dial, one echo through cat, close, and
// wait for the server to finish the job and close the connection.
func (s *benchServer) sessionEcho() error { return sessionEcho("ws://" + s.addr + "/apps/cat") }

func sessionEcho(url string) error {
	ws, _, err := plainDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		return err
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "x" {
		return fmt.Errorf("echo: %q %v", m, err)
	}
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
		return err
	}
	for { // until the server closes
		if _, _, err := ws.NextReader(); err != nil {
			return nil
		}
	}
}

// echoLatency is the round trip of one short line through cat behind url.
func echoLatency(url string, n int) (p50, p99 time.Duration, err error) {
	ws, _, err := plainDialer.Dial(url, nil)
	if err != nil {
		return 0, 0, err
	}
	defer ws.Close()
	lat := make([]time.Duration, 0, n)
	msg := []byte("ping")
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			return 0, 0, err
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[n/2], lat[n*99/100], nil
}

// pipeEchoFloor is the same round trip through cat's pipes, no server in
// between.
func pipeEchoFloor(n int) (p50 time.Duration, retErr error) {
	cmd := exec.Command("cat")
	in, out, err := startPiped(cmd)
	if err != nil {
		return 0, err
	}
	defer func() { retErr = errors.Join(retErr, in.Close(), cmd.Wait()) }()
	p50, _, err = roundTrips(in, out, n)
	return p50, err
}

// alternate runs a and b n times each, in turns, one at a time, and
// returns each one's latencies, sorted.
func alternate(n int, a, b func() error) (la, lb []time.Duration, err error) {
	for range n {
		for _, x := range []struct {
			f   func() error
			lat *[]time.Duration
		}{{a, &la}, {b, &lb}} {
			t0 := time.Now()
			if err := x.f(); err != nil {
				return nil, nil, err
			}
			*x.lat = append(*x.lat, time.Since(t0))
		}
	}
	slices.Sort(la)
	slices.Sort(lb)
	return la, lb, nil
}

// getppidOutside runs the getppid loop as a plain process.
func getppidOutside(n int) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(self, getppidArg, strconv.Itoa(n)).Output()
	return string(out), err
}

// jobText runs app to its end and returns its output as text.
func (s *benchServer) jobText(app string) (string, error) {
	ws, err := s.dial(app)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	var b strings.Builder
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return b.String(), nil
			}
			return "", fmt.Errorf("%w (output so far %q)", err, b.String())
		}
		b.Write(m)
		b.WriteByte('\n')
	}
}

// copyFile copies src to a new file dst with mode.
func copyFile(src, dst string, mode os.FileMode) (retErr error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}

// drain reads an app's whole output until its close 1000 and returns the
// messages and bytes received, and the elapsed time.
func (s *benchServer) drain(app string) (msgs int, bytes int64, d time.Duration, err error) {
	ws, err := s.dial(app)
	if err != nil {
		return 0, 0, 0, err
	}
	defer ws.Close()
	buf := make([]byte, 64<<10)
	start := time.Now()
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return msgs, bytes, time.Since(start), nil
			}
			return 0, 0, 0, err
		}
		m, err := io.CopyBuffer(io.Discard, r, buf)
		if err != nil {
			return 0, 0, 0, err
		}
		msgs++
		bytes += m
	}
}

// textLines returns 100-byte stdout lines per second, one message each.
func (s *benchServer) textLines(n int) (float64, error) {
	got, _, d, err := s.drain("lines")
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("got %d lines, want %d", got, n)
	}
	return float64(n) / d.Seconds(), nil
}

// binaryOut returns stdout bytes per second delivered as binary messages.
func (s *benchServer) binaryOut(n int) (float64, error) {
	_, total, d, err := s.drain("zero")
	if err != nil {
		return 0, err
	}
	if total != int64(n) {
		return 0, fmt.Errorf("got %d bytes, want %d", total, n)
	}
	return float64(total) / d.Seconds(), nil
}

// stdinIn returns client-to-stdin bytes per second over channel framing.
func (s *benchServer) stdinIn(n int) (float64, error) {
	ws, err := s.dial("sink", "channel.chimirror.v1")
	if err != nil {
		return 0, err
	}
	defer ws.Close()
	chunk := make([]byte, 1+(64<<10))
	start := time.Now()
	for sent := 0; sent < n; sent += len(chunk) - 1 {
		if err := ws.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			return 0, err
		}
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{255}); err != nil {
		return 0, err
	}
	var count []byte
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		if len(m) > 0 && m[0] == 1 {
			count = append(count, m[1:]...)
		}
		if len(m) > 0 && m[0] == 3 {
			break
		}
	}
	got, err := strconv.Atoi(strings.TrimSpace(string(count)))
	if err != nil {
		return 0, fmt.Errorf("wc said %q: %w", count, err)
	}
	return float64(got) / time.Since(start).Seconds(), nil
}

type heldResult struct {
	n                      int
	fdsPer, rssPer, memPer float64 // memPer: the host's used memory (MemAvailable) per session
	filePer                float64 // of rssPer, file-backed (the ledger's mmap)
	fdLimit                int
	// The admin API while the sessions are held: the running list (1000 a
	// page, as the console reads it), and /healthz as the HTTP floor.
	apiRunning, apiFloor []time.Duration
}

// hold opens n concurrent cat sessions, checks each echoes, and measures the
// server's fds and RSS per session against its idle baseline.
func (s *benchServer) hold(n int) (heldResult, error) {
	pid := s.cmd.Process.Pid
	fds0, rss0, file0, err := procUsage(pid)
	if err != nil {
		return heldResult{}, err
	}
	avail0, err := memAvailable()
	if err != nil {
		return heldResult{}, err
	}
	conns := make([]*websocket.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				ws, err := s.dial("cat")
				if err == nil {
					err = ws.WriteMessage(websocket.TextMessage, []byte("x"))
				}
				if err == nil {
					_, _, err = ws.ReadMessage()
				}
				if err != nil {
					errc <- fmt.Errorf("session %d: %w", i, err)
					cancel()
					return
				}
				conns[i] = ws
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return heldResult{}, err
	default:
	}
	time.Sleep(500 * time.Millisecond) // let the allocator settle
	fds1, rss1, file1, err := procUsage(pid)
	if err != nil {
		return heldResult{}, err
	}
	avail1, err := memAvailable()
	if err != nil {
		return heldResult{}, err
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return heldResult{}, err
	}
	res := heldResult{n: n, fdsPer: float64(fds1-fds0) / float64(n), rssPer: float64(rss1-rss0) / float64(n),
		filePer: float64(file1-file0) / float64(n),
		memPer:  float64(avail0-avail1) / float64(n), fdLimit: int(lim.Max)}
	api := &adminapi.Client{Base: "http://" + s.admin + "/api/v1", Token: s.token, HTTP: &http.Client{Timeout: 30 * time.Second}}
	if res.apiRunning, err = timeAdmin(api, "/jobs?state=running&limit=1000", 20); err != nil {
		return heldResult{}, err
	}
	if res.apiFloor, err = timeAdmin(api, "/healthz", 20); err != nil {
		return heldResult{}, err
	}
	return res, nil
}

// timeAdmin times n GETs of path on the admin API (each read whole and
// checked for a 2xx), sorted.
func timeAdmin(api *adminapi.Client, path string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		t0 := time.Now()
		if err := api.Do(http.MethodGet, path, nil); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	slices.Sort(out)
	return out, nil
}

// memAvailable is the host's MemAvailable in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

// procUsage returns a process's open fds, resident bytes, and how many of
// those are file-backed (the ledger's mmap is: page cache, reclaimable).
func procUsage(pid int) (fds int, rssBytes, fileBytes int64, err error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	kb, err := procStatusKB(pid, "VmRSS", "RssFile")
	if err != nil {
		return 0, 0, 0, err
	}
	return len(ents), kb[0] << 10, kb[1] << 10, nil
}

// benchLedger writes n start+finish pairs from 32 goroutines through the
// group-committing ledger, then through a plain bbolt Update per record
// (the floor: what the ledger would do without batching), both durable,
// in a temporary directory. It returns pairs per second for each.
func benchLedger(n int) (ours, floor float64, retErr error) {
	dir, err := os.MkdirTemp("", "chimirror-bench-ledger-")
	if err != nil {
		return 0, 0, err
	}
	defer func() { retErr = errors.Join(retErr, os.RemoveAll(dir)) }()
	const workers = 32
	run := func(pair func() error) (float64, error) {
		var next atomic.Int64
		errs := make(chan error, workers)
		t0 := time.Now()
		for range workers {
			go func() {
				for next.Add(1) <= int64(n) {
					if err := pair(); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		var err error
		for range workers {
			err = errors.Join(err, <-errs)
		}
		return float64(n) / time.Since(t0).Seconds(), err
	}
	l, err := accounting.Open(filepath.Join(dir, "ledger.db"), accounting.Options{})
	if err != nil {
		return 0, 0, err
	}
	ours, err = run(func() error {
		r := &accounting.Record{App: "bench", Tenant: "public", Command: []string{"cat"}}
		if err := l.Begin(r); err != nil {
			return err
		}
		r.State, r.Reason = accounting.StateFinished, "exit"
		return l.Put(r, true)
	})
	if err = errors.Join(err, l.Close()); err != nil {
		return 0, 0, err
	}
	db, err := bolt.Open(filepath.Join(dir, "plain.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer func() { retErr = errors.Join(retErr, db.Close()) }()
	var seq atomic.Uint64
	put := func(r *accounting.Record) error {
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("jobs"))
			if err != nil {
				return err
			}
			return b.Put([]byte(r.ID), v)
		})
	}
	floor, err = run(func() error {
		r := &accounting.Record{ID: accounting.FormatID(seq.Add(1)), App: "bench", Tenant: "public", Command: []string{"cat"},
			State: accounting.StateStarting, StartedAt: time.Now()}
		if err := put(r); err != nil {
			return err
		}
		r.State, r.Reason = accounting.StateFinished, "exit"
		return put(r)
	})
	return ours, floor, err
}

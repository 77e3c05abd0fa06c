package main

// The reattach figures (issue 16): how soon a client that reattaches to a
// detached job gets its first replayed byte, and what 1,000 detached jobs
// with full replay rings cost the server in memory.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/adminapi"
)

// benchDetachPolicy makes policy bench-detach of the bench policy: its
// jobs outlive their client for longer than any figure takes, with the
// default ring.
const benchDetachPolicy = `detach_timeout = "10m"
replay_bytes = "256KiB"
`

// detachRingBytes is bench-detach's replay_bytes; benchReplayMemoryMax is
// the bench servers' replay_memory_max (benchConfig says the same).
const (
	detachRingBytes      = 256 << 10
	benchReplayMemoryMax = 256 << 20
)

// detachedOutputBytes is what each detached job writes: more than its
// ring and its stdout pipe hold together, so that it ends up blocked.
const detachedOutputBytes = 4 << 20

// benchDetachApps are bench-detach's apps: cat, for the reattach figure,
// and a writer of detachedOutputBytes, for the detached jobs' memory.
const benchDetachApps = `
[[app]]
name = "cat-detach"
command = ["cat"]
policy = "bench-detach"
[[app]]
name = "zero-detach"
command = ["head", "-c", "%d", "/dev/zero"]
binary = true
policy = "bench-detach"
`

// resumeConfig writes policy bench-detach into a bench server's directory
// dir and returns its apps, for the server's config.
func resumeConfig(dir string) (string, error) {
	if err := os.WriteFile(filepath.Join(dir, "policies", "bench-detach.toml"), []byte(benchPolicy+benchDetachPolicy), 0o644); err != nil {
		return "", fmt.Errorf("write policy bench-detach: %w", err)
	}
	return fmt.Sprintf(benchDetachApps, detachedOutputBytes), nil
}

// The chimirror.v1 protocol as the reattach figures speak it.
const (
	protoV1 = "chimirror.v1"
	// closeDetached is the close code of a client the server let go after
	// its /detach: the job runs on.
	closeDetached = 4302
)

// firstMessagePath is the minimal WebSocket server's path that sends one
// message at once (serveFirstMessage), the reattach figure's floor.
const firstMessagePath = "/first"

// serveFirstMessage sends ws one text message at once, then reads until
// the client closes (gorilla answers the close).
func serveFirstMessage(ws *websocket.Conn) error {
	if err := ws.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		return fmt.Errorf("first message: %w", err)
	}
	for {
		if _, _, err := ws.NextReader(); err != nil {
			return nil // the client's close, or a drop: the session is over either way
		}
	}
}

// resumeRows measures the groups reattach (on srv, the plain server, with
// wsf's floor) and detached (on a server of its own, from the binary
// server), as want asks.
func resumeRows(srv *benchServer, wsf *wsFloor, server string, o benchOpts, want map[string]bool, add func(benchRow)) error {
	if want["reattach"] {
		ours, floor, err := reattachLatency(srv, wsf.url+strings.TrimPrefix(firstMessagePath, "/"), o.reattaches)
		if err != nil {
			return fmt.Errorf("reattach: %w", err)
		}
		add(benchRow{"reattach: dial to first replayed byte",
			fmt.Sprintf("p50 %s, p99 %s", ms(ours[len(ours)/2]), ms(ours[len(ours)*99/100])),
			fmt.Sprintf("p50 %s, p99 %s dial to first message, minimal WebSocket server sending one at once, in turns", ms(floor[len(floor)/2]), ms(floor[len(floor)*99/100])),
			"p50 ≤ 3 ms"})
	}
	if want["detached"] {
		r, err := detachedMemory(server, o)
		if err != nil {
			return fmt.Errorf("detached jobs: %w", err)
		}
		const mb = 1e6
		limit := float64(benchReplayMemoryMax) + 60*mb
		add(benchRow{fmt.Sprintf("%d detached jobs, full rings: server RSS", r.jobs),
			fmt.Sprintf("%.0f MB (peak %.0f MB; Go heap %.0f MB in use, %.0f MB free); rings hold %.0f MB, %d of %d programs blocked writing",
				float64(r.rss)/mb, float64(r.hwm)/mb, float64(r.heapInuse)/mb, float64(r.heapFree)/mb, float64(r.ringData)/mb, r.blocked, r.jobs),
			fmt.Sprintf("%.0f MB the same server idle before", float64(r.idleRSS)/mb),
			fmt.Sprintf("≤ replay_memory_max + 60 MB = %.0f MB", limit/mb)})
	}
	return nil
}

// reattachLatency reattaches one detached cat job n times, and dials the
// floor's url n times, in turns, and returns the latencies of each, sorted:
// from the start of the dial to the first replayed output event (ours) or
// the first message (the floor). The job is ended at the end.
func reattachLatency(srv *benchServer, floorURL string, n int) (ours, floor []time.Duration, retErr error) {
	j, err := srv.startDetached("cat-detach", []byte(`{"event":"/stdin","data":"x\n"}`))
	if err != nil {
		return nil, nil, err
	}
	defer func() { retErr = errors.Join(retErr, srv.endJob(j)) }()
	for range n {
		d, err := srv.reattachFirstByte(j)
		if err != nil {
			return nil, nil, err
		}
		ours = append(ours, d)
		if d, err = firstMessage(floorURL); err != nil {
			return nil, nil, fmt.Errorf("floor: %w", err)
		}
		floor = append(floor, d)
	}
	slices.Sort(ours)
	slices.Sort(floor)
	return ours, floor, nil
}

// detachedJob is a job the bench detached from: what reattaches to it.
type detachedJob struct{ id, resume string }

// v1Event is a chimirror.v1 event as the bench reads it.
type v1Event struct {
	Event string          `json:"event"`
	Seq   uint64          `json:"seq"`
	Data  json.RawMessage `json:"data"`
}

// v1Dial dials path on s with chimirror.v1, acknowledging by itself (it
// never does: the job's ring keeps every event), with hdr added.
func (s *benchServer) v1Dial(path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := plainDialer
	d.Subprotocols = []string{protoV1}
	h := http.Header{"X-Chimirror-Ack": {"1"}}
	for k, v := range hdr {
		h[k] = v
	}
	ws, resp, err := d.Dial("ws://"+s.addr+path, h)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", path, err)
	}
	return ws, resp, nil
}

// startDetached starts app, sends it first (if any) and waits for its first
// output event, then detaches: it returns once the server has closed the
// connection with 4302.
func (s *benchServer) startDetached(app string, first []byte) (detachedJob, error) {
	ws, resp, err := s.v1Dial("/apps/"+app, nil)
	if err != nil {
		return detachedJob{}, err
	}
	defer ws.Close()
	j := detachedJob{id: resp.Header.Get("X-Chimirror-Job"), resume: resp.Header.Get("X-Chimirror-Resume")}
	if j.id == "" || j.resume == "" {
		return detachedJob{}, fmt.Errorf("%s: no X-Chimirror-Job or X-Chimirror-Resume in the upgrade response", app)
	}
	if first != nil {
		if err := ws.WriteMessage(websocket.TextMessage, first); err != nil {
			return detachedJob{}, fmt.Errorf("%s: %w", j.id, err)
		}
		if _, err := readUntilOutput(ws); err != nil {
			return detachedJob{}, fmt.Errorf("%s: %w", j.id, err)
		}
	}
	if err := detach(ws); err != nil {
		return detachedJob{}, fmt.Errorf("%s: %w", j.id, err)
	}
	return j, nil
}

// detach sends /detach and reads until the server closes: with 4302, or
// it is an error.
func detach(ws *websocket.Conn) error {
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"/detach"}`)); err != nil {
		return fmt.Errorf("send /detach: %w", err)
	}
	for {
		if _, _, err := ws.NextReader(); err != nil {
			if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) && ce.Code == closeDetached {
				return nil
			}
			return fmt.Errorf("after /detach, want close %d: %w", closeDetached, err)
		}
	}
}

// readUntilOutput reads events until the first /stdout or /stderr one and
// returns it; a /gap, /exit or /error before it is an error.
func readUntilOutput(ws *websocket.Conn) (v1Event, error) {
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			return v1Event{}, fmt.Errorf("read events: %w", err)
		}
		var ev v1Event
		if err := json.Unmarshal(m, &ev); err != nil {
			return v1Event{}, fmt.Errorf("event %.80q: %w", m, err)
		}
		switch ev.Event {
		case "/stdout", "/stderr":
			return ev, nil
		case "/gap", "/exit", "/error":
			return v1Event{}, fmt.Errorf("%s before the first output: %s", ev.Event, ev.Data)
		}
	}
}

// attachPath is j's attach path, replaying from its first event.
func (j detachedJob) attachPath() string { return "/jobs/" + url.PathEscape(j.id) + "/attach?after=0" }

// reattachFirstByte reattaches to j and returns the time from the start of
// the dial to the first replayed output event (event 1: nothing is
// acknowledged), then detaches again.
func (s *benchServer) reattachFirstByte(j detachedJob) (time.Duration, error) {
	t0 := time.Now()
	ws, _, err := s.v1Dial(j.attachPath(), http.Header{"X-Chimirror-Resume": {j.resume}})
	if err != nil {
		return 0, err
	}
	defer ws.Close()
	ev, err := readUntilOutput(ws)
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("reattach %s: %w", j.id, err)
	}
	if ev.Seq != 1 {
		return 0, fmt.Errorf("reattach %s after=0: first event is seq %d, want 1", j.id, ev.Seq)
	}
	if err := detach(ws); err != nil {
		return 0, fmt.Errorf("reattach %s: %w", j.id, err)
	}
	return d, nil
}

// endJob reattaches to j and closes with 1000, which ends a job at once,
// and waits for the server's close.
func (s *benchServer) endJob(j detachedJob) error {
	ws, _, err := s.v1Dial(j.attachPath(), http.Header{"X-Chimirror-Resume": {j.resume}})
	if err != nil {
		return fmt.Errorf("end %s: %w", j.id, err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		return fmt.Errorf("end %s: %w", j.id, err)
	}
	for { // until the server closes
		if _, _, err := ws.NextReader(); err != nil {
			return nil
		}
	}
}

// firstMessage dials url and returns the time to its first message, then
// closes.
func firstMessage(url string) (time.Duration, error) {
	t0 := time.Now()
	ws, _, err := plainDialer.Dial(url, nil)
	if err != nil {
		return 0, err
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		return 0, err
	}
	for { // until the server closes
		if _, _, err := ws.NextReader(); err != nil {
			return d, nil
		}
	}
}

// detachedResult is the detached figure: the server's resident and peak
// bytes idle and with the jobs detached, the jobs' output its rings hold,
// and how many of the programs were blocked writing.
type detachedResult struct {
	jobs, blocked     int
	idleRSS, rss, hwm int64
	ringData          int64
	// The server's Go heap then (its /metrics): in use, and held free
	// (idle, not released to the kernel).
	heapInuse, heapFree int64
}

// detachedMemory starts a bench server of its own, reads its idle RSS,
// starts o.detached zero-detach jobs (16 at a time) and detaches from each,
// waits until their rings are full, and reads the server's RSS and peak.
// It stops the server and checks that every job's program is gone.
func detachedMemory(server string, o benchOpts) (res detachedResult, retErr error) {
	srv, err := startBenchServer(server, o, "off")
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()
	pid := srv.cmd.Process.Pid
	time.Sleep(time.Second) // let the new server settle
	if res.idleRSS, _, err = procMemory(pid); err != nil {
		return res, err
	}
	res.jobs = o.detached
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(o.detached); i = next.Add(1) - 1 {
				if _, err := srv.startDetached("zero-detach", nil); err != nil {
					errs[w] = fmt.Errorf("job %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	api := &adminapi.Client{Base: "http://" + srv.admin + "/api/v1", Token: srv.token, HTTP: &http.Client{Timeout: 30 * time.Second}}
	jobs, err := awaitFullRings(api, o.detached, 2*time.Minute)
	if err != nil {
		return res, err
	}
	time.Sleep(2 * time.Second) // let the allocator settle, as held does
	if res.rss, res.hwm, err = procMemory(pid); err != nil {
		return res, err
	}
	m, err := scrapeMetrics(srv, "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes")
	if err != nil {
		return res, err
	}
	res.heapInuse = int64(m[0])
	res.heapFree = int64(m[1] - m[2])
	for _, j := range jobs {
		res.ringData += j.stdout
		if wchan, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", j.pid)); err == nil && strings.HasSuffix(string(wchan), "pipe_write") { // anon_pipe_write on Linux 6
			res.blocked++
		}
	}
	// Clean up: the server ends its detached jobs as it stops. Every
	// program must be gone after.
	stopped = true
	srv.stop()
	return res, awaitGone(jobs, 30*time.Second)
}

// liveJob is a running job as the detached figure watches it.
type liveJob struct {
	pid    int
	stdout int64 // bytes read from its stdout: with nothing acknowledged, all in its ring
}

// ringsFull reports whether the rings of n jobs (of ringBytes each) are
// full: each holds all but ringSlack bytes of its ring, or all together
// hold all of memoryMax (replay_memory_max) but ringSlack bytes a job.
func ringsFull(jobs []liveJob, n int, ringBytes, memoryMax int64) bool {
	if len(jobs) != n {
		return false
	}
	var total int64
	least := ringBytes
	for _, j := range jobs {
		total += j.stdout
		least = min(least, j.stdout)
	}
	return least >= ringBytes-ringSlack || total >= memoryMax-int64(n)*ringSlack
}

// ringSlack is how short of its ring a full ring may be: the ring reads
// only when 4 KiB are free, and each event costs 32 bytes beyond its data.
const ringSlack = 8 << 10

// awaitFullRings polls the admin API's running jobs until n are running,
// their rings are full and no job's output moved between two polls, and
// returns them.
func awaitFullRings(api *adminapi.Client, n int, timeout time.Duration) ([]liveJob, error) {
	deadline := time.Now().Add(timeout)
	var last []liveJob
	for {
		jobs, err := runningJobs(api)
		if err != nil {
			return nil, err
		}
		if ringsFull(jobs, n, detachRingBytes, benchReplayMemoryMax) && slices.Equal(jobs, last) {
			return jobs, nil
		}
		if time.Now().After(deadline) {
			var total int64
			for _, j := range jobs {
				total += j.stdout
			}
			return nil, fmt.Errorf("rings not full after %v: %d jobs running (want %d), holding %d bytes", timeout, len(jobs), n, total)
		}
		last = jobs
		time.Sleep(500 * time.Millisecond)
	}
}

// runningJobs lists the running jobs, all pages, oldest first.
func runningJobs(api *adminapi.Client) ([]liveJob, error) {
	var out []liveJob
	cursor := ""
	for {
		var page struct {
			Jobs []struct {
				Pid  int `json:"pid"`
				Live *struct {
					StdoutBytes int64 `json:"stdout_bytes"`
				} `json:"live"`
			} `json:"jobs"`
			Next string `json:"next"`
		}
		path := "/jobs?state=running&limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := api.Do(http.MethodGet, path, &page); err != nil {
			return nil, fmt.Errorf("list running jobs: %w", err)
		}
		for _, j := range page.Jobs {
			if j.Live != nil {
				out = append(out, liveJob{pid: j.Pid, stdout: j.Live.StdoutBytes})
			}
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

// awaitGone waits until no job's program is running any more (gone, or a
// zombie waiting to be reaped).
func awaitGone(jobs []liveJob, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, j := range jobs {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", j.pid)); err == nil && !isZombie(b) {
				left = append(left, strconv.Itoa(j.pid))
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs' programs still run %v after their server stopped: pids %s", len(left), timeout, strings.Join(left[:min(len(left), 10)], " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isZombie reports whether /proc/PID/stat says Z (or X, dead).
func isZombie(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')') // the command may hold anything
	f := strings.Fields(string(stat[i+1:]))
	return i >= 0 && len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// scrapeMetrics reads the values of the unlabelled metrics names from the
// server's admin /metrics, in order.
func scrapeMetrics(s *benchServer, names ...string) (_ []float64, retErr error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+s.admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer func() { retErr = errors.Join(retErr, resp.Body.Close()) }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && slices.Contains(names, f[0]) {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics: %s: %w", f[0], err)
			}
			got[f[0]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := make([]float64, len(names))
	for i, n := range names {
		v, ok := got[n]
		if !ok {
			return nil, fmt.Errorf("metrics: no %s", n)
		}
		out[i] = v
	}
	return out, nil
}

// procMemory returns a process's resident bytes now and at its peak
// (VmRSS and VmHWM).
func procMemory(pid int) (rss, hwm int64, err error) {
	kb, err := procStatusKB(pid, "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, fmt.Errorf("server memory: %w", err)
	}
	return kb[0] << 10, kb[1] << 10, nil
}

// procStatusKB reads the named kB fields ("VmRSS") of /proc/PID/status,
// in the order named; each must be there.
func procStatusKB(pid int, names ...string) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	found := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		i := slices.Index(names, strings.TrimSuffix(f[0], ":"))
		if i < 0 {
			continue
		}
		if out[i], err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return nil, fmt.Errorf("/proc/%d/status %s: %w", pid, f[0], err)
		}
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("/proc/%d/status lacks one of %v", pid, names)
	}
	return out, nil
}

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/web"
)

// connectFailed is connect's own exit code when there is no job status to
// return (refused, unreachable, protocol broken); like ssh's 255.
const connectFailed = cli.ExitCode(255)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// cmdConnect is a terminal client over chimirror.v1: local stdin goes to the
// job (EOF closes the job's stdin), job stdout and stderr go to ours, and the
// exit code is the job's (128+signal when it was killed). SIGINT, SIGTERM and
// SIGHUP are forwarded to the job.
func cmdConnect(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", "", "Origin header to send")
	caFile := fs.String("ca", "", "for wss://: a PEM bundle of CA certificates (or the server's own) to trust besides the system's")
	var headers headerFlags
	fs.Var(&headers, "header", "extra request header 'Name: value' (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror connect [--origin URL] [--header 'K: V']... [--ca FILE] URL\n\n"+
			"URL is ws://HOST/apps/NAME or wss:// (http:// and https:// work too). Exits with the job's exit code,\n"+
			"128+signal if it was killed, or 255 if no job status arrived.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.ExitCode(2)
	}
	u, err := wsURL(fs.Arg(0))
	if err != nil {
		return err
	}
	hdr := http.Header{}
	if *origin != "" {
		hdr.Set("Origin", *origin)
	}
	if err := parseHeaders(hdr, headers); err != nil {
		return err
	}
	d, err := dialer(*caFile)
	if err != nil {
		return err
	}
	// This client acknowledges what it has written out (/ack), from its
	// first event: a job that may detach keeps the rest for a reattach.
	first := hdr.Clone()
	first.Set("X-Chimirror-Ack", "1")
	ws, resp, err := d.Dial(u, first)
	if err != nil {
		fmt.Fprintln(stderr, "chimirror connect:", describeDialErr(err, resp))
		return connectFailed
	}
	c := newConnectSession(ws, d, u, hdr, "connect")
	defer c.close()
	return c.run(os.Stdin, os.Stdout, stderr)
}

// dialer is connect's and attach's: chimirror.v1, trusting caFile's
// certificates too when set.
func dialer(caFile string) (*websocket.Dialer, error) {
	d := &websocket.Dialer{Subprotocols: []string{"chimirror.v1"}, HandshakeTimeout: 15 * time.Second}
	if caFile != "" {
		tc, err := clientTLS(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		d.TLSClientConfig = tc
	}
	return d, nil
}

// parseHeaders reads --header values into hdr.
func parseHeaders(hdr http.Header, headers []string) error {
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return nil
}

// cmdAttach reconnects a terminal to running job JOBID, as connect
// connects it to a new one: output from after SEQ (by default, what the
// job's last client acknowledged), stdin, signals, the exit code, and
// reattaching after a network error.
func cmdAttach(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", cmpOr(os.Getenv("CHIMIRROR_SERVER"), "ws://"+defaultListen), "the server, ws[s]://HOST:PORT[/BASE] ($CHIMIRROR_SERVER)")
	resume := fs.String("resume", os.Getenv("CHIMIRROR_RESUME"), "the job's resume token, from /job or X-Chimirror-Resume ($CHIMIRROR_RESUME)")
	after := fs.Int64("after", -1, "the seq of the last event you have; -1: what the job's last client acknowledged")
	caFile := fs.String("ca", "", "for wss://: a PEM bundle of CA certificates to trust besides the system's")
	var headers headerFlags
	fs.Var(&headers, "header", "extra request header 'Name: value' (repeatable), e.g. the tenant's Authorization")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror attach [--server URL] [--resume TOKEN] [--after SEQ] [--header 'K: V']... JOBID\n\n"+
			"Reconnects this terminal to a running job (one whose policy sets detach_timeout, or any to take it over).\n"+
			"Exits with the job's exit code, 128+signal if it was killed, or 255 if no job status arrived.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *resume == "" {
		fs.Usage()
		return cli.ExitCode(2)
	}
	base, err := wsURL(*server)
	if err != nil {
		return err
	}
	hdr := http.Header{}
	if err := parseHeaders(hdr, headers); err != nil {
		return err
	}
	d, err := dialer(*caFile)
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	u := strings.TrimRight(base, "/") + "/jobs/" + url.PathEscape(id) + "/attach"
	if *after >= 0 {
		u += "?after=" + strconv.FormatInt(*after, 10)
	}
	first := hdr.Clone()
	first.Set("X-Chimirror-Resume", *resume)
	first.Set("X-Chimirror-Ack", "1")
	ws, resp, err := d.Dial(u, first)
	if err != nil {
		fmt.Fprintln(stderr, "chimirror attach:", describeDialErr(err, resp))
		return connectFailed
	}
	c := newConnectSession(ws, d, u, hdr, "attach")
	c.jobID, c.resume = id, *resume
	c.attachPath = strings.TrimPrefix(u[:strings.IndexByte(u+"?", '?')], c.serverURL())
	if *after > 0 {
		c.last = uint64(*after)
	}
	defer c.close()
	return c.run(os.Stdin, os.Stdout, stderr)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func wsURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("bad URL %q: want ws://, wss://, http:// or https://", s)
	}
	return u.String(), nil
}

// trustedRoots are the system's roots (none where it has no pool) and the
// certificates of the PEM bundles in files.
// clientTLS is the CLI's TLS as a client: TLS 1.2 or later, trusting the
// system's roots and files' certificates.
func clientTLS(files ...string) (*tls.Config, error) {
	roots, err := trustedRoots(files...)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

func trustedRoots(files ...string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // only the files, then
	}
	for _, f := range files {
		if err := web.AppendCertFile(pool, f); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

func describeDialErr(err error, resp *http.Response) string {
	if resp == nil {
		if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			return err.Error() + " (give --ca FILE to trust the server's certificate, or its CA)"
		}
		return err.Error()
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if rerr != nil {
		return fmt.Sprintf("%s (reading body: %v)", resp.Status, rerr)
	}
	return fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// connectSession is a terminal's session with one job over chimirror.v1,
// across connections: it acknowledges what it has written out (so the job
// keeps the rest for it) and, when the connection fails without a close
// frame and the job may detach, reattaches after the last event it got,
// so the terminal sees every byte once.
//
// Goroutines: run reads on the caller's; a signal forwarder (ended by
// run) and the stdin pump (ended with the process: a Read cannot be
// interrupted) write through send, which waits out a reattach.
type connectSession struct {
	d    *websocket.Dialer
	url  string // the first connection's; attach paths resolve against it
	hdr  http.Header
	name string // connect or attach, for messages

	wmu  sync.Mutex
	ws   *websocket.Conn
	gen  chan struct{} // closed when ws is replaced, then made anew
	done chan struct{} // closed when run returns

	// Stdin sent and not yet answered, numbered from pendOff in this
	// session's stream (the /stdin events' "stream" and "offset"): a
	// reattach sends it again, and the job takes only what it has not.
	// pumpStdin appends, run's /callback answers trim, at most
	// maxPendingStdin (the pump waits for answers).
	stream  string
	inMu    sync.Mutex
	inRoom  *sync.Cond // signalled when pending shrinks, and when run returns
	pending []byte
	pendOff int64
	// /stdin/close, sent and not yet answered (its callback is
	// closeCallback): a reattach sends it again, after the stdin.
	closeSent, closeAnswered bool

	// Read by run only.
	jobID, resume, attachPath string
	replayBytes               int64
	detach                    time.Duration
	last                      uint64 // seq of the last event written out
	unacked                   int64  // message bytes since the last /ack
}

func newConnectSession(ws *websocket.Conn, d *websocket.Dialer, u string, hdr http.Header, name string) *connectSession {
	c := &connectSession{ws: ws, d: d, url: u, hdr: hdr, name: name, gen: make(chan struct{}), done: make(chan struct{}),
		jobID: "the job"}
	c.inRoom = sync.NewCond(&c.inMu)
	c.stream = rand.Text()
	return c
}

// maxPendingStdin bounds the stdin connect keeps to send again after a cut.
const maxPendingStdin = 4 << 20

// sendStdin sends chunk as numbered stdin (after every chunk before it),
// keeping it until the job answers that it took it: its callback is the
// offset just past it. It waits while maxPendingStdin is unanswered.
func (c *connectSession) sendStdin(chunk []byte) error {
	c.inMu.Lock()
	for len(c.pending)+len(chunk) > maxPendingStdin && len(c.pending) > 0 && !c.isDone() {
		c.inRoom.Wait()
	}
	off := c.pendOff + int64(len(c.pending))
	c.pending = append(c.pending, chunk...)
	c.inMu.Unlock()
	return c.sendMsg(c.stdinEvent(chunk, off))
}

// stdinEvent is /stdin of chunk at offset off in c's stream, answered with
// the offset past it.
func (c *connectSession) stdinEvent(chunk []byte, off int64) map[string]any {
	m := map[string]any{"event": "/stdin", "stream": c.stream, "offset": off, "callback": off + int64(len(chunk))}
	if utf8.Valid(chunk) {
		m["data"] = string(chunk)
	} else {
		m["data"], m["encoding"] = base64.StdEncoding.EncodeToString(chunk), "base64"
	}
	return m
}

// stdinTaken drops the stdin the job has answered for, up to offset end.
func (c *connectSession) stdinTaken(end int64) {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if n := end - c.pendOff; n > 0 && n <= int64(len(c.pending)) {
		c.pending = c.pending[n:]
		c.pendOff = end
		c.inRoom.Broadcast()
	}
}

// closeCallback is /stdin/close's callback (stdin's are offsets, above 0).
const closeCallback = -1

// resendStdin sends the stdin not yet answered again on a new connection,
// then /stdin/close if it was sent and not answered; c.wmu is held, so
// nothing newer goes before them. (A close sent twice is refused the
// second time, harmlessly.)
func (c *connectSession) resendStdin() error {
	c.inMu.Lock()
	p, off := bytes.Clone(c.pending), c.pendOff
	closeAgain := c.closeSent && !c.closeAnswered
	c.inMu.Unlock()
	for len(p) > 0 {
		n := min(len(p), 32<<10)
		for i := 0; i < utf8.UTFMax-1 && n < len(p) && !utf8.RuneStart(p[n]); i++ { // keep text text
			n++
		}
		if err := c.ws.WriteJSON(c.stdinEvent(p[:n], off)); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	if closeAgain {
		return c.ws.WriteJSON(map[string]any{"event": "/stdin/close", "callback": closeCallback})
	}
	return nil
}

func (c *connectSession) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *connectSession) close() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.Close()
}

// send writes one event; on a connection being replaced it waits for the
// new one and writes there (an event written into a dead connection may
// be lost).
func (c *connectSession) send(event string, data any, encoding string) error {
	m := map[string]any{"event": event}
	if data != nil {
		m["data"] = data
	}
	if encoding != "" {
		m["encoding"] = encoding
	}
	return c.sendMsg(m)
}

// sendMsg is send of an event made.
func (c *connectSession) sendMsg(m map[string]any) error {
	for {
		c.wmu.Lock()
		gen := c.gen
		err := c.ws.WriteJSON(m)
		c.wmu.Unlock()
		if err == nil {
			return nil
		}
		select {
		case <-gen:
		case <-c.done:
			return err
		}
	}
}

// ack acknowledges every event up to the last one written out. It is
// run's (the reader's), so it never waits for a reattach, which only run
// makes: on a dead connection it fails, and run's next read finds out.
func (c *connectSession) ack() error {
	c.unacked = 0
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteJSON(map[string]any{"event": "/ack", "data": map[string]uint64{"seq": c.last}})
}

func (c *connectSession) run(stdin io.Reader, stdout, stderr io.Writer) error {
	defer func() {
		close(c.done)
		c.inMu.Lock()
		c.inRoom.Broadcast() // a pump waiting for answers gives up
		c.inMu.Unlock()
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() { // forwards signals until run returns
		for {
			select {
			case s := <-sigs:
				if err := c.send("/signal", sandbox.SignalName(s.(syscall.Signal)), ""); err != nil {
					return
				}
			case <-c.done:
				return
			}
		}
	}()
	// The first thing the job hears: this client acknowledges by itself,
	// so output written to a connection that drops stays in the job's ring.
	if err := c.ack(); err != nil {
		fmt.Fprintf(stderr, "chimirror %s: %v\n", c.name, err)
		return connectFailed
	}
	// The stdin reader cannot be interrupted while blocked in Read; it ends
	// with the process, which exits as soon as the job's status arrives.
	go c.pumpStdin(stdin, stderr)

	for {
		c.wmu.Lock()
		ws := c.ws
		c.wmu.Unlock()
		_, msg, err := ws.ReadMessage()
		if err != nil {
			// gorilla reports a dropped connection as close 1006, which no
			// peer sends: only a real close frame is the server's word.
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
				fmt.Fprintf(stderr, "chimirror %s: closed without an exit status: %d %s\n", c.name, ce.Code, ce.Text)
				return connectFailed
			}
			if c.resume != "" && c.detach > 0 {
				if rerr := c.reattach(stderr); rerr == nil {
					continue
				}
				fmt.Fprintf(stderr, "chimirror %s: %s runs on detached for up to %v; reattach with: chimirror attach --server %s --resume %s %s\n",
					c.name, c.jobID, c.detach, c.serverURL(), c.resume, c.jobID)
			}
			fmt.Fprintf(stderr, "chimirror %s: %v\n", c.name, err)
			return connectFailed
		}
		var ev struct {
			Event    string          `json:"event"`
			Seq      uint64          `json:"seq"`
			Data     json.RawMessage `json:"data"`
			Encoding string          `json:"encoding"`
		}
		if err := json.Unmarshal(msg, &ev); err != nil {
			fmt.Fprintf(stderr, "chimirror %s: bad event from server: %v\n", c.name, err)
			return connectFailed
		}
		if ev.Seq != 0 && ev.Seq <= c.last {
			continue // had it before the reattach
		}
		switch ev.Event {
		case "/stdout", "/stderr":
			b, err := decodeData(ev.Data, ev.Encoding)
			if err != nil {
				fmt.Fprintf(stderr, "chimirror %s: %v\n", c.name, err)
				return connectFailed
			}
			w := stdout
			if ev.Event == "/stderr" {
				w = stderr
			}
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("write %s: %w", ev.Event, err)
			}
			c.last = ev.Seq
			c.unacked += int64(len(msg))
			if c.replayBytes > 0 && c.unacked >= c.replayBytes/2 {
				if err := c.ack(); err != nil {
					continue // the connection is gone: the next read says so
				}
			}
		case "/job":
			var job struct {
				ID              string `json:"id"`
				Resume          string `json:"resume"`
				Attach          string `json:"attach"`
				ReplayBytes     int64  `json:"replay_bytes"`
				DetachTimeoutMs int64  `json:"detach_timeout_ms"`
			}
			if err := json.Unmarshal(ev.Data, &job); err == nil {
				c.jobID, c.attachPath, c.replayBytes = job.ID, job.Attach, job.ReplayBytes
				c.detach = time.Duration(job.DetachTimeoutMs) * time.Millisecond
				if job.Resume != "" {
					c.resume = job.Resume
					// Said at once: connect itself may be what dies (a
					// closed laptop lid, a killed terminal), and then
					// this line is how its user gets back to the job.
					if c.detach > 0 {
						fmt.Fprintf(stderr, "chimirror %s: %s survives a lost connection for %v; from elsewhere: chimirror attach --server %s --resume %s %s\n",
							c.name, c.jobID, c.detach, c.serverURL(), c.resume, c.jobID)
					}
				}
			}
		case "/gap":
			fmt.Fprintf(stderr, "chimirror %s: output lost, the job no longer held it: events %s\n", c.name, ev.Data)
		case "/callback": // connect asks only of /stdin: the offset past it
			var cb struct {
				Callback int64  `json:"callback"`
				OK       bool   `json:"ok"`
				Error    string `json:"error"`
			}
			if err := json.Unmarshal(ev.Data, &cb); err == nil {
				c.stdinTaken(cb.Callback) // taken, or never to be (stdin closed, the job ending)
				if cb.Callback == closeCallback {
					c.inMu.Lock()
					c.closeAnswered = true
					c.inMu.Unlock()
				}
				if !cb.OK && strings.Contains(cb.Error, supervisor.ErrStdinGap.Error()) {
					fmt.Fprintf(stderr, "chimirror %s: stdin: %s\n", c.name, cb.Error)
				}
			}
		case "/exit":
			var st struct {
				Code   int    `json:"code"`
				Signal string `json:"signal"`
				Reason string `json:"reason"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(ev.Data, &st); err != nil {
				fmt.Fprintf(stderr, "chimirror %s: bad /exit: %v\n", c.name, err)
				return connectFailed
			}
			c.last = ev.Seq
			if line := endedLine(c.jobID, st.Reason, st.Detail, st.Signal); line != "" {
				fmt.Fprintln(stderr, line)
			}
			c.wmu.Lock()
			cerr := c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			c.wmu.Unlock()
			if cerr != nil && !errors.Is(cerr, websocket.ErrCloseSent) {
				fmt.Fprintf(stderr, "chimirror %s: close: %v\n", c.name, cerr)
			}
			if st.Code == 0 {
				return nil
			}
			return cli.ExitCode(st.Code)
		case "/error":
			fmt.Fprintf(stderr, "chimirror %s: server: %s\n", c.name, ev.Data)
		}
	}
}

// serverURL is the scheme and host of the first connection.
func (c *connectSession) serverURL() string {
	u, err := url.Parse(c.url)
	if err != nil {
		return c.url
	}
	return u.Scheme + "://" + u.Host
}

// attachURL is where the job reattaches after the last event.
func (c *connectSession) attachURL() string {
	path := c.attachPath
	if path == "" {
		path = "/jobs/" + c.jobID + "/attach"
	}
	return fmt.Sprintf("%s%s?after=%d", c.serverURL(), path, c.last)
}

// reattachFor bounds how long connect tries to reattach: the job's
// detach_timeout, and at most this.
const reattachFor = time.Minute

// reattach dials the job again after the last event written out, retrying
// until the job's detach_timeout (at most reattachFor) passes or the server
// refuses for good; the new connection replaces the old one.
func (c *connectSession) reattach(stderr io.Writer) error {
	hdr := c.hdr.Clone()
	hdr.Set("X-Chimirror-Resume", c.resume)
	hdr.Set("X-Chimirror-Ack", "1")
	deadline := time.Now().Add(min(c.detach, reattachFor))
	wait := 50 * time.Millisecond
	for {
		ws, resp, err := c.d.Dial(c.attachURL(), hdr)
		if err == nil {
			c.wmu.Lock()
			old := c.ws
			c.ws = ws
			// What the old connection may have lost, before anything newer.
			rerr := c.resendStdin()
			close(c.gen)
			c.gen = make(chan struct{})
			c.wmu.Unlock()
			old.Close()
			if rerr != nil { // this one failed too: dial again
				err = rerr
				if time.Now().Add(wait).After(deadline) {
					return err
				}
				time.Sleep(wait)
				wait = min(2*wait, 2*time.Second)
				continue
			}
			if err := c.ack(); err != nil {
				return err
			}
			return nil
		}
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
			fmt.Fprintf(stderr, "chimirror %s: reattach: %s\n", c.name, describeDialErr(err, resp))
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// endedLine says why a job ended, in one line for stderr, when it was
// not a plain exit of its own: "chimirror: JOB00000004 ended: oom (1 OOM
// kill in the job's cgroup), signal KILL". The exit code alone cannot tell
// a memory kill from a crash or a cancel.
func endedLine(job, reason, detail, signal string) string {
	if reason == "" || reason == string(supervisor.ReasonExit) {
		return ""
	}
	line := "chimirror: " + job + " ended: " + reason
	if detail != "" {
		line += " (" + detail + ")"
	}
	if signal != "" {
		line += ", signal " + signal
	}
	return line
}

func decodeData(raw json.RawMessage, encoding string) ([]byte, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("bad event data: %w", err)
	}
	if encoding == "base64" {
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(s), nil
}

// pumpStdin sends stdin as /stdin events, base64 when a chunk is not UTF-8
// (holding back a character split by the read), then /stdin/close on EOF.
func (c *connectSession) pumpStdin(stdin io.Reader, stderr io.Writer) {
	buf := make([]byte, 32<<10)
	var carry []byte
	for {
		n, err := stdin.Read(buf)
		chunk := append(carry, buf[:n]...)
		carry = nil
		if err == nil {
			if t := supervisor.IncompleteUTF8Tail(chunk); t > 0 {
				carry = append([]byte(nil), chunk[len(chunk)-t:]...)
				chunk = chunk[:len(chunk)-t]
			}
		}
		if len(chunk) > 0 {
			if err := c.sendStdin(chunk); err != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(stderr, "chimirror connect: read stdin:", err)
			}
			c.inMu.Lock()
			c.closeSent = true
			c.inMu.Unlock()
			if err := c.sendMsg(map[string]any{"event": "/stdin/close", "callback": closeCallback}); err != nil {
				return
			}
			return
		}
	}
}

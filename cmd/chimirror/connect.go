package main

import (
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
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	d := websocket.Dialer{Subprotocols: []string{"chimirror.v1"}, HandshakeTimeout: 15 * time.Second}
	if *caFile != "" {
		roots, err := trustedRoots(*caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		d.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	ws, resp, err := d.Dial(u, hdr)
	if err != nil {
		fmt.Fprintln(stderr, "chimirror connect:", describeDialErr(err, resp))
		return connectFailed
	}
	defer ws.Close()
	c := &connectSession{ws: ws}
	return c.run(os.Stdin, os.Stdout, stderr)
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

type connectSession struct {
	ws  *websocket.Conn
	wmu sync.Mutex
}

func (c *connectSession) send(event string, data any, encoding string) error {
	m := map[string]any{"event": event}
	if data != nil {
		m["data"] = data
	}
	if encoding != "" {
		m["encoding"] = encoding
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteJSON(m)
}

func (c *connectSession) run(stdin io.Reader, stdout, stderr io.Writer) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() { // forwards signals until run returns
		for {
			select {
			case s := <-sigs:
				if err := c.send("/signal", sandbox.SignalName(s.(syscall.Signal)), ""); err != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	// The stdin reader cannot be interrupted while blocked in Read; it ends
	// with the process, which exits as soon as the job's status arrives.
	go c.pumpStdin(stdin, stderr)

	jobID := "the job" // until /job names it
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				fmt.Fprintf(stderr, "chimirror connect: closed without an exit status: %d %s\n", ce.Code, ce.Text)
			} else {
				fmt.Fprintln(stderr, "chimirror connect:", err)
			}
			return connectFailed
		}
		var ev struct {
			Event    string          `json:"event"`
			Data     json.RawMessage `json:"data"`
			Encoding string          `json:"encoding"`
		}
		if err := json.Unmarshal(msg, &ev); err != nil {
			fmt.Fprintln(stderr, "chimirror connect: bad event from server:", err)
			return connectFailed
		}
		switch ev.Event {
		case "/stdout", "/stderr":
			b, err := decodeData(ev.Data, ev.Encoding)
			if err != nil {
				fmt.Fprintln(stderr, "chimirror connect:", err)
				return connectFailed
			}
			w := stdout
			if ev.Event == "/stderr" {
				w = stderr
			}
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("write %s: %w", ev.Event, err)
			}
		case "/job":
			var job struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(ev.Data, &job); err == nil {
				jobID = job.ID
			}
		case "/exit":
			var st struct {
				Code   int    `json:"code"`
				Signal string `json:"signal"`
				Reason string `json:"reason"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(ev.Data, &st); err != nil {
				fmt.Fprintln(stderr, "chimirror connect: bad /exit:", err)
				return connectFailed
			}
			if line := endedLine(jobID, st.Reason, st.Detail, st.Signal); line != "" {
				fmt.Fprintln(stderr, line)
			}
			c.wmu.Lock()
			cerr := c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			c.wmu.Unlock()
			if cerr != nil && !errors.Is(cerr, websocket.ErrCloseSent) {
				fmt.Fprintln(stderr, "chimirror connect: close:", cerr)
			}
			if st.Code == 0 {
				return nil
			}
			return cli.ExitCode(st.Code)
		case "/error":
			fmt.Fprintf(stderr, "chimirror connect: server: %s\n", ev.Data)
		}
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
			var serr error
			if utf8.Valid(chunk) {
				serr = c.send("/stdin", string(chunk), "")
			} else {
				serr = c.send("/stdin", base64.StdEncoding.EncodeToString(chunk), "base64")
			}
			if serr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(stderr, "chimirror connect: read stdin:", err)
			}
			if err := c.send("/stdin/close", nil, ""); err != nil {
				return
			}
			return
		}
	}
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
)

// findChromium returns a Chromium binary, or skips the test with one line.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser test: no chromium on PATH (make test installs it when run as root)")
	return ""
}

// artifactDir is where screenshots go: $CHIMIRROR_ARTIFACTS if set (CI keeps
// it), else the test's temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("CHIMIRROR_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// newBrowser starts headless Chromium; the flags keep it off the network,
// which this machine does not have.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1100, 800),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}

// consoleLogin is the steps that log in to srv's console with the admin
// token chimirror serve made in dir, on a page that may then show a job.
func consoleLogin(t *testing.T, dir string, srv *server) []chromedp.Action[chromedp.Void] {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return []chromedp.Action[chromedp.Void]{
		chromedp.Navigate("http://" + srv.admin + "/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("active-section")),
	}
}

// consoleJob opens job id's detail page in a logged-in console.
func consoleJob(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`location.hash = "#job/` + id + `"`)
}

// Ensure a person can run a job from the test page in a real browser:
// connect, see stdout and stderr apart, send a line, close stdin, and read
// the exit status.
func TestBrowser_TestPage(t *testing.T) {
	ctx := newBrowser(t)
	srv := startServer(t, t.TempDir()) // the embedded default: echo and demo
	outHas := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("out").textContent.includes(` + strconv.Quote(text) + `)`)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(srv.url("http", "/")),
		chromedp.WaitVisible(chromedp.ID("connect")),
		chromedp.SetValue(chromedp.ID("app"), "demo"),
		chromedp.SetValue(chromedp.ID("query"), "code=3"),
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitEnabled(chromedp.ID("input")),
		outHas("hello from stderr"),
		chromedp.SendKeys(chromedp.ID("input"), "hi from the browser"),
		chromedp.Click(chromedp.ID("send")),
		outHas("err: hi from the browser"),
		chromedp.Click(chromedp.ID("eof")),
		chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent === "exit 3"`),
		outHas("connection closed"),
	)
	if err != nil {
		t.Fatalf("browser session: %v\nserver stderr:\n%s", err, srv.stderr)
	}
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out")))
	if err != nil {
		t.Fatal(err)
	}
	errText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#out .err")).map(e => e.textContent).join("")`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[job JOB", "hello from stdout", "out: hi from the browser", "[exit 3, reason exit]", "connection closed: 4003 exit 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("page output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errText, "hello from stderr") || strings.Contains(errText, "hello from stdout") {
		t.Errorf("stderr spans %q: stderr must be marked apart from stdout", errText)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifactDir(t), "test-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// Ensure an operator can use the console in a real browser: log in, see a
// job started by a WebSocket client appear in Active jobs within 2 s,
// cancel it, find it in History with reason cancelled, and open its
// detail with CPU and memory charts drawn from its samples.
func TestBrowser_Console(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `data_dir = "data"
sample_interval = "200ms"
[[app]]
name = "sleeper"
command = ["sh", "-c", "echo up\ni=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 600"]
env = ["PATH"]
`)
	// A fixed admin port, so the console can find the server again after
	// a restart.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	srv := startServer(t, dir, "--config", cfg, "--admin-listen", adminAddr)
	token, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(srv.stderr.String(), strings.TrimSpace(string(token))) {
		t.Errorf("the first run printed its new admin token (it belongs in the file only):\n%s", srv.stderr)
	}
	if !strings.Contains(srv.stderr.String(), "log in with the token in "+filepath.Join(dir, "data", "admin.token")+")\nchimirror: first run: a new admin token was made") {
		t.Errorf("the first run did not say where its new admin token is:\n%s", srv.stderr)
	}
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	admin := "http://" + srv.admin + "/"
	err = chromedp.Do(ctx,
		chromedp.Navigate(admin),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("active-section")),
	)
	if err != nil {
		t.Fatalf("login: %v\nserver stderr:\n%s", err, srv.stderr)
	}
	ws := dialWS(t, srv.url("ws", "/apps/sleeper"), "chimirror.v1")
	_, m := readWS(t, ws)
	id := regexp.MustCompile(`JOB\d{8}`).FindString(string(m))
	if id == "" {
		t.Fatalf("no job ID in %s", m)
	}
	row := `#active tr[data-job="` + id + `"]`
	started := time.Now()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`document.querySelector('`+row+`') !== null`)); err != nil {
		t.Fatalf("job row never appeared: %v", err)
	}
	if d := time.Since(started); d > 2*time.Second {
		t.Errorf("the job took %v to appear in Active jobs; want within 2 s", d)
	}
	time.Sleep(time.Second) // a few samples for the charts
	shot("console-active.png")
	// The running job's detail: live values where its record has none
	// yet, and its command as written, line breaks kept.
	field := func(name string) string {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const d = [...document.querySelectorAll("#detail-fields dt")].find((e) => e.textContent === `+strconv.Quote(name)+`); return d ? d.nextElementSibling.textContent : "" })()`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`location.hash = "#job/`+id+`"`),
		chromedp.WaitVisible(chromedp.ID("detail")),
		chromedp.Poll[chromedp.Void](`document.getElementById("detail-fields").textContent.includes("cpu (live)")`),
	)
	if err != nil {
		t.Fatalf("running job's detail: %v", err)
	}
	if peak := field("memory peak"); peak == "" || strings.HasPrefix(peak, "0 ") {
		t.Errorf("running job's memory peak %q: want the live reading, not the record's zero", peak)
	}
	if cmd := field("command"); !strings.Contains(cmd, "echo up\ni=0") {
		t.Errorf("command %q: want its line break kept", cmd)
	}
	shot("console-running-detail.png")
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = ""`), chromedp.WaitVisible(chromedp.ID("active-section"))); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(row+` button.cancel`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('`+row+`') === null`),
		chromedp.Poll[chromedp.Void](`(() => { const r = document.querySelector('#history tr[data-job="`+id+`"]'); return r !== null && r.textContent.includes("cancelled") })()`),
	)
	if err != nil {
		t.Fatalf("cancel: %v\nserver stderr:\n%s", err, srv.stderr)
	}
	// Its accounting: the report by tenant counts it, cancelled.
	err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`(() => { const r = document.querySelector('#acct-table tr[data-key="public"]'); return r !== null && r.textContent.includes("cancelled") })()`))
	if err != nil {
		t.Fatalf("accounting: %v", err)
	}
	shot("console-history.png")
	if code := readCloseCode(t, ws); code < 4000 {
		t.Errorf("cancelled job closed with %d, want 4000+signal", code)
	}
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`location.hash = "#job/`+id+`"`),
		chromedp.WaitVisible(chromedp.ID("detail")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#chart-cpu polyline.series") !== null && document.querySelector("#chart-mem polyline.series") !== null`),
		chromedp.Poll[chromedp.Void](`document.getElementById("detail-fields").textContent.includes("cancelled")`),
	)
	if err != nil {
		t.Fatalf("job detail: %v", err)
	}
	shot("console-detail.png")

	// The server goes away: the page says so; it comes back: the page
	// reconnects by itself and reads its lists again.
	if code := srv.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`location.hash = ""`),
		chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent.includes("unreachable")`),
	)
	if err != nil {
		t.Fatalf("server gone: %v", err)
	}
	shot("console-unreachable.png")
	srv = startServer(t, dir, "--config", cfg, "--admin-listen", adminAddr)
	err = chromedp.Do(ctx,
		chromedp.Poll[chromedp.Void](`!document.getElementById("status").textContent.includes("unreachable")`),
		chromedp.Poll[chromedp.Void](`document.querySelector('#history tr[data-job="`+id+`"]') !== null`),
	)
	if err != nil {
		t.Fatalf("reconnect: %v\nserver stderr:\n%s", err, srv.stderr)
	}
}

// Ensure the console keeps up with 1,000 running jobs: every one is listed
// and updated live. How long the list took to appear and how long the
// page took to answer while it updated are logged (figures for the notes,
// not asserts: speed is the benchmark's business).
func TestBrowser_ConsoleThousandJobs(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `data_dir = "data"
sandbox = "off"
ping_interval = "1h"
[[app]]
name = "cat"
command = ["cat"]
`)
	srv := startServer(t, dir, "--config", cfg)
	const n = 1000
	for i := range n {
		ws := dialWS(t, srv.url("ws", "/apps/cat"))
		if err := ws.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		readWS(t, ws)
	}
	token, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = chromedp.Do(ctx,
		chromedp.Navigate("http://"+srv.admin+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.ID("login")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#active tr[data-job]").length === `+strconv.Itoa(n)),
	)
	if err != nil {
		t.Fatalf("console with %d jobs: %v", n, err)
	}
	listed := time.Since(t0)
	var worst time.Duration
	for range 10 { // while /jobs/usage batches of 1,000 arrive every second
		t1 := time.Now()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#active tr[data-job]").length`)); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(t1))
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("console: %d running jobs listed %v after login; slowest page answer while updating: %v", n, listed.Round(time.Millisecond), worst.Round(time.Millisecond))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(60))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifactDir(t), "console-1000.jpg"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Ensure the test page works with tenants: without a token, the refused
// connection (a 401 the browser only sees as 1006) names the likely
// causes; with the token in the Token field, the job runs as the tenant.
func TestBrowser_TestPageToken(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	const token = "browser-tenant-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(token))
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf("sandbox = \"off\"\n[[app]]\nname = \"who\"\n"+
		"command = [\"sh\", \"-c\", \"echo tenant=$CHIMIRROR_TENANT query=$QUERY_STRING\"]\n"+
		"[[tenant]]\nname = \"alice\"\ntoken_sha256 = %q\n", hex.EncodeToString(sum[:])))
	srv := startServer(t, dir, "--config", cfg)
	outHas := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("out").textContent.includes(` + strconv.Quote(text) + `)`)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(srv.url("http", "/")),
		chromedp.WaitVisible(chromedp.ID("connect")),
		chromedp.Click(chromedp.ID("connect")),
		outHas("a tenant token is required or wrong"),
		chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent === "refused"`),
		chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("connect")),
		outHas("tenant=alice query="),
		outHas("connection closed"),
	)
	if err != nil {
		out, oerr := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out")))
		t.Fatalf("browser session: %v\npage output (%v):\n%s\nserver stderr:\n%s", err, oerr, out, srv.stderr)
	}
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, token) {
		t.Errorf("the token reached the job or the page output:\n%s", out)
	}
	if link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("p.sub a") || {}).href || ""`)); err != nil || !strings.Contains(link, srv.admin) {
		t.Errorf("console link %q (%v), want one to %s for a client on this host", link, err, srv.admin)
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// batchCrashConfig has a batch app that writes 12 MB of lines (its spool
// takes the direct path; yes and head, which are quick even in an
// emulated VM) and stderr, then waits in a sleep the test finds by its
// argument.
const batchCrashConfig = `sandbox = "on"
data_dir = "data"
[[app]]
name = "b"
command = ["sh", "-c", "yes 'the quick brown fox' | head -c 12000000; echo half >&2; exec sleep 876543"]
env = ["PATH"]
mode = "batch"
grace = "1s"
`

// Ensure a batch job that its server dies under (SIGKILL) is closed as
// lost by the next start, its processes gone, and its partial spool still
// readable, byte-exact: over HTTP, through chimirror output (from the
// server, and from the file when none runs), and that output --follow
// then exits 255 (no status).
func TestBatchCrash(t *testing.T) {
	if err := sandbox.Available(); err != nil {
		t.Skipf("sandboxed jobs need root and cgroups: %v", err)
	}
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "batch.toml"), batchCrashConfig)
	args := []string{"--config", cfg, "--log-level", "warn"}
	srv := startServer(t, dir, args...)
	out, errOut, code := runCLI(t, dir, []byte("ignored\n"), "submit", "--server", srv.url("http", ""), "b")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if _, err := accounting.ParseID(id); err != nil {
		t.Fatalf("submit printed %q: %v", out, err)
	}
	var lines strings.Builder
	for lines.Len() < 12000000 {
		lines.WriteString("the quick brown fox\n")
	}
	want := lines.String()[:12000000]
	cli := func(args ...string) (string, string, int) {
		return runCLI(t, dir, nil, append(args, "--config", cfg)...)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _, _ := cli("output", id, "--stream", "stderr", "--admin", srv.admin)
		if out == "half\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never wrote its stderr:\n%s", srv.stderr)
		}
	}

	r := crashAndRestart(t, srv, dir, args)
	srv = r.server
	srv.waitRecovered(30 * time.Second)
	waitNoProcs(t, "sleep 876543", 10*time.Second)
	jobOut, errOut, code := cli("job", id, "--json", "--admin", srv.admin)
	if code != 0 {
		t.Fatalf("job: exit %d: %s", code, errOut)
	}
	var rec accounting.Record
	if err := json.Unmarshal([]byte(jobOut), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.State != accounting.StateLost || !rec.Spool || !strings.Contains(rec.Detail, "spool keeps") {
		t.Fatalf("record %+v: want lost, its spool linked", rec)
	}
	for _, tc := range []struct {
		name, stream, want string
	}{{"stdout", "stdout", want}, {"stderr", "stderr", "half\n"}} {
		t.Run("http "+tc.name, func(t *testing.T) {
			st, hdr, body := httpGet(t, srv.url("http", "/jobs/"+id+"/output?stream="+tc.stream))
			if st != 200 || body != tc.want || hdr.Get("X-Chimirror-Job-State") != "lost" {
				t.Fatalf("%d, %d bytes (%s): want the partial output (%d bytes), lost", st, len(body), hdr.Get("X-Chimirror-Job-State"), len(tc.want))
			}
		})
		t.Run("cli "+tc.name, func(t *testing.T) {
			out, errOut, code := cli("output", id, "--stream", tc.stream, "--admin", srv.admin)
			if code != 0 || out != tc.want {
				t.Fatalf("exit %d, %d bytes (want %d): %s", code, len(out), len(tc.want), errOut)
			}
		})
	}
	if out, errOut, code := cli("output", id, "--stream", "stdout", "--follow", "--admin", srv.admin); code != 255 || out != want {
		t.Fatalf("output --follow of a lost job: exit %d (want 255), %d bytes: %s", code, len(out), errOut)
	}
	if code := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("stop: exit %d:\n%s", code, srv.stderr)
	}
	if out, errOut, code := cli("output", id, "--stream", "stdout"); code != 0 || out != want {
		t.Fatalf("output with no server: exit %d, %d bytes: %s", code, len(out), errOut)
	}
}

// Ensure an operator sees a finished batch job's output on its detail page
// in a real browser, as written, with a download link
// that serves the spool byte-exact.
func TestBrowser_ConsoleBatchOutput(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `data_dir = "data"
sandbox = "off"
[[app]]
name = "report"
command = ["sh", "-c", "echo 'report for:'; cat; echo done"]
env = ["PATH"]
mode = "batch"
`)
	srv := startServer(t, dir, "--config", cfg)
	out, errOut, code := runCLI(t, dir, []byte("the input\n"), "submit", "--server", srv.url("http", ""), "report")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	login := consoleLogin(t, dir, srv)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _, _ := runCLI(t, dir, nil, "job", id, "--json", "--config", cfg, "--admin", srv.admin)
		if strings.Contains(out, `"state": "finished"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not finish: %s", id, out)
		}
	}
	want := "report for:\nthe input\ndone\n" // one stream: the two are not ordered against each other
	var text, href string
	err := chromedp.Do(ctx, append(login,
		consoleJob(id),
		chromedp.WaitVisible(chromedp.ID("output-section")),
		chromedp.Poll[chromedp.Void](`document.getElementById("output-text").textContent === `+strconv.Quote(want)),
	)...)
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("output-text")))
		t.Fatalf("console output of %s: %v (shows %q)\nserver stderr:\n%s", id, err, got, srv.stderr)
	}
	text, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("output-text").textContent`))
	if err != nil || text != want {
		t.Fatalf("output %q, %v", text, err)
	}
	href, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("output-download").href`))
	if err != nil {
		t.Fatal(err)
	}
	// The link works with the console's login cookie, as a click would.
	dl, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(`+strconv.Quote(href)+`, {credentials: "same-origin"}).then(r => r.headers.get("Content-Disposition") + "|" + r.status).then(s => s)`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(dl, `attachment; filename="`+id+`.all"|200`) {
		t.Fatalf("download link %s: %q, %v", href, dl, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(artifactDir(t), "console-batch-output.png"), png, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

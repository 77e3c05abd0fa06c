package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/internal/cutproxy"
)

// Ensure a browser's own EventSource follows a job over plain HTTP and
// resumes by itself when the test cuts its connection (through a TCP
// proxy: a reset, as a network change makes): every event arrives once,
// in order, through the exit.
func TestBrowser_EventSourceResumes(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	const ticks = 120
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf(`data_dir = "data"
sandbox = "off"
[[app]]
name = "ticker"
command = ["sh", "-c", "i=0; while [ $i -lt %d ]; do echo tick $i; i=$((i+1)); sleep 0.05; done; echo done >&2; exit 5"]
env = ["PATH"]
mode = "batch"
`, ticks))
	srv := startServer(t, dir, "--config", cfg)
	resp, err := http.Post(srv.url("http", "/apps/ticker/jobs"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s %v", resp.StatusCode, body, err)
	}
	var job struct{ ID, Resume, Events string }
	if err := json.Unmarshal(body, &job); err != nil {
		t.Fatal(err)
	}
	p := cutproxy.New(t, srv.addr)
	// The page and the stream are one origin: the proxy's.
	script := fmt.Sprintf(`(() => {
		window.got = []; window.opens = 0; window.done = false;
		const es = new EventSource(%q);
		es.onopen = () => { window.opens++; };
		for (const name of ["stdout", "stderr", "exit", "gap", "gone"]) {
			es.addEventListener(name, e => {
				window.got.push({name, id: e.lastEventId, data: JSON.parse(e.data)});
				if (name === "exit" || name === "gone") { es.close(); window.done = true; }
			});
		}
	})()`, job.Events+"?resume="+job.Resume)
	err = chromedp.Do(ctx,
		chromedp.Navigate("http://"+p.Addr()+"/"),
		chromedp.Evaluate[chromedp.Void](script),
		chromedp.Poll[chromedp.Void](`window.got.length >= 10`),
	)
	if err != nil {
		t.Fatalf("first events: %v\nserver stderr:\n%s", err, srv.stderr)
	}
	p.Cut()
	err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`window.done`, chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		t.Fatalf("after the cut: %v\nserver stderr:\n%s", err, srv.stderr)
	}
	type got struct {
		Name, ID string
		Data     struct {
			Event string
			Seq   uint64
			Data  any
		}
	}
	evs, err := chromedp.Run(ctx, chromedp.Evaluate[[]got](`window.got`))
	if err != nil {
		t.Fatal(err)
	}
	opens, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.opens`))
	if err != nil {
		t.Fatal(err)
	}
	if opens < 2 {
		t.Errorf("EventSource opened %d times: want a reconnect after the cut", opens)
	}
	var stdout strings.Builder
	for i, ev := range evs {
		if ev.Data.Seq != uint64(i+1) || ev.ID != fmt.Sprint(ev.Data.Seq) {
			t.Fatalf("event %d is %+v: want every seq once, in order (all: %+v)", i, ev, evs)
		}
		if ev.Name == "stdout" {
			stdout.WriteString(ev.Data.Data.(string))
		}
	}
	var want strings.Builder
	for i := range ticks {
		fmt.Fprintf(&want, "tick %d\n", i)
	}
	if stdout.String() != want.String() {
		t.Errorf("stdout through the EventSource:\n%q\nwant\n%q", stdout.String(), want.String())
	}
	last := evs[len(evs)-1]
	if last.Name != "exit" || last.Data.Data.(map[string]any)["code"] != float64(5) {
		t.Errorf("last event %+v: want the exit, code 5", last)
	}
}

// Ensure the console follows a running job that keeps no spool live from
// its ring: what it wrote before the page opened, what it writes after,
// and its end.
func TestBrowser_ConsoleLiveOutput(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), `data_dir = "data"
sandbox = "off"
[[app]]
name = "talk"
command = ["sh", "-c", "while read l; do echo \"said: $l\"; done; exit 7"]
env = ["PATH"]
`)
	srv := startServer(t, dir, "--config", cfg)
	ws, _, err := websocket.DefaultDialer.Dial(srv.url("ws", "/apps/talk"), http.Header{"Sec-WebSocket-Protocol": {"chimirror.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, first, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var job struct{ Data struct{ ID string } }
	if err := json.Unmarshal(first, &job); err != nil || job.Data.ID == "" {
		t.Fatalf("/job %s: %v", first, err)
	}
	say := func(line string) {
		t.Helper()
		msg, err := json.Marshal(map[string]string{"event": "/stdin", "data": line + "\n"})
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	say("before")
	shows := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("output-text").textContent.includes(` + strconv.Quote(text) + `)`)
	}
	err = chromedp.Do(ctx, append(consoleLogin(t, dir, srv),
		consoleJob(job.Data.ID),
		chromedp.WaitVisible(chromedp.ID("output-section")),
		shows("said: before\n"),
	)...)
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("output-text")))
		t.Fatalf("console output of %s: %v (shows %q)\nserver stderr:\n%s", job.Data.ID, err, got, srv.stderr)
	}
	say("after")
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"/stdin/close"}`)); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx, shows("said: after\n"), shows("[exit 7, reason exit]"),
		chromedp.Poll[chromedp.Void](`document.getElementById("output-note").textContent.includes("not kept")`))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("output-text")))
		t.Fatalf("console live output of %s: %v (shows %q)", job.Data.ID, err, got)
	}
}

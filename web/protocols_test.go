package web

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

func protoApps() supervisor.Config {
	cat := supervisor.App{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}}
	bin := cat
	bin.Name, bin.Binary = "bincat", true
	return supervisor.Config{Apps: []supervisor.App{
		cat, bin,
		shApp("demo", `echo hello; echo oops >&2; read x; echo "got $x"; exit 3`),
		shApp("bytes", `printf 'a\377\376b'; printf '\303' ; sleep 0.05; printf '\251 caf\303\251\n'; printf '\377' >&2`),
		shApp("killself", `kill -KILL $$`),
		shApp("env", `env`),
		shApp("fds", `ls /proc/self/fd`),
		shApp("pgrp", `ps -o pid=,pgid= -p $$`),
		shApp("lines", `printf 'one\ntwo\r\nthree'`),
		shApp("trapint", `trap 'echo got INT; exit 42' INT; echo ready; while :; do sleep 0.05; done`),
	}}
}

// Ensure chimirror.v1 sends /job first, the streams byte-exact, /exit last,
// then a close frame carrying the status.
func TestV1_SessionShape(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/demo", ProtoV1)
	if ws.Subprotocol() != ProtoV1 {
		t.Fatalf("negotiated %q", ws.Subprotocol())
	}
	sendEvent(t, ws, "/stdin", "world\n", 0)
	got := readSession(t, ws, 5*time.Second)
	if len(got.events) == 0 || got.events[0].Event != "/job" {
		t.Fatalf("first event: %+v", got.events)
	}
	var job struct{ ID, App string }
	if err := json.Unmarshal(got.events[0].Data, &job); err != nil || !strings.HasPrefix(job.ID, "JOB") || job.App != "demo" {
		t.Fatalf("/job data %s (%v)", got.events[0].Data, err)
	}
	if last := got.events[len(got.events)-1]; last.Event != "/exit" {
		t.Fatalf("last event %s, want /exit", last.Event)
	}
	if string(got.stdout) != "hello\ngot world\n" || string(got.stderr) != "oops\n" {
		t.Fatalf("stdout %q stderr %q", got.stdout, got.stderr)
	}
	if got.exit.Code != 3 || got.exit.Signal != nil || got.exit.Reason != "exit" {
		t.Fatalf("exit %+v", got.exit)
	}
	if got.closeCode != 4003 || got.closeText != "exit 3" {
		t.Fatalf("close %d %q, want 4003 \"exit 3\"", got.closeCode, got.closeText)
	}
}

// Ensure non-UTF-8 output survives byte-exact, and a character split across
// reads stays text.
func TestV1_BytesExact(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/bytes", ProtoV1)
	got := readSession(t, ws, 5*time.Second)
	want := []byte("a\xff\xfeb\xc3\xa9 caf\xc3\xa9\n")
	if !bytes.Equal(got.stdout, want) {
		t.Fatalf("stdout %q, want %q", got.stdout, want)
	}
	if !bytes.Equal(got.stderr, []byte{0xff}) {
		t.Fatalf("stderr %q", got.stderr)
	}
	var b64, split int
	for _, ev := range got.events {
		if ev.Event == "/stdout" && ev.Encoding == "base64" {
			b64++
		}
		if ev.Event == "/stdout" && ev.Encoding == "" && strings.HasPrefix(string(ev.bytes(t)), "\xc3\xa9") {
			split++ // the é whose bytes came in two writes arrived whole, as text
		}
	}
	if b64 == 0 || split != 1 {
		t.Fatalf("base64 events %d, joined-é text events %d; events %+v", b64, split, got.events)
	}
	if got.closeCode != websocket.CloseNormalClosure {
		t.Fatalf("close %d", got.closeCode)
	}
}

// Ensure /stdin with base64, /stdin/close and callbacks work.
func TestV1_StdinAndCallbacks(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/cat", ProtoV1)
	if err := ws.WriteJSON(map[string]any{"event": "/stdin", "data": "/38A", "encoding": "base64", "callback": 7}); err != nil {
		t.Fatal(err)
	}
	sendEvent(t, ws, "/stdin", "é\n", 0)
	sendEvent(t, ws, "/bogus", nil, 8)
	sendEvent(t, ws, "/signal", "NOPE", 9)
	sendEvent(t, ws, "/stdin/close", nil, 10)
	got := readSession(t, ws, 5*time.Second)
	if want := "\xff\x7f\x00é\n"; string(got.stdout) != want {
		t.Fatalf("stdout %q want %q", got.stdout, want)
	}
	cbs := map[int]bool{}
	for _, ev := range got.events {
		if ev.Event != "/callback" {
			continue
		}
		var c struct {
			Callback int
			OK       bool
			Error    string
		}
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			t.Fatal(err)
		}
		cbs[c.Callback] = c.OK
		if !c.OK && c.Error == "" {
			t.Errorf("callback %d failed without an error", c.Callback)
		}
	}
	want := map[int]bool{7: true, 8: false, 9: false, 10: true}
	for k, v := range want {
		if ok, seen := cbs[k]; !seen || ok != v {
			t.Errorf("callback %d: seen %v ok %v, want ok %v", k, seen, ok, v)
		}
	}
	if got.exit == nil || got.exit.Code != 0 {
		t.Fatalf("exit %+v", got.exit)
	}
}

// Ensure a client signal reaches the process and the exit reports it.
func TestV1_Signal(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	tests := []struct {
		name, app, sig string
		code           int
		signal         string
		reason         string
		closeCode      int
	}{
		{"handled INT", "trapint", "INT", 42, "", "exit", 4042},
		{"KILL", "trapint", "KILL", 137, "KILL", "signal", 4137},
		{"self-kill", "killself", "", 137, "KILL", "signal", 4137},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := s.dial("/apps/"+tc.app, ProtoV1)
			if tc.sig != "" {
				waitForStdout(t, ws, "ready")
				sendEvent(t, ws, "/signal", tc.sig, 0)
			}
			got := readSession(t, ws, 5*time.Second)
			if got.exit == nil || got.exit.Code != tc.code || got.exit.Reason != tc.reason {
				t.Fatalf("exit %+v", got.exit)
			}
			if (got.exit.Signal == nil) != (tc.signal == "") || got.exit.Signal != nil && *got.exit.Signal != tc.signal {
				t.Fatalf("signal %v want %q", got.exit.Signal, tc.signal)
			}
			if got.closeCode != tc.closeCode {
				t.Fatalf("close code %d want %d (%q)", got.closeCode, tc.closeCode, got.closeText)
			}
		})
	}
}

func waitForStdout(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	if err := ws.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for !strings.Contains(string(out), want) {
		var ev event
		if err := ws.ReadJSON(&ev); err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", want, err, out)
		}
		if ev.Event == "/stdout" {
			out = append(out, ev.bytes(t)...)
		}
	}
}

// Ensure the text-lines protocol: message → line, line → message.
func TestLines_Echo(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/cat")
	for _, m := range []string{"hello", "", "wörld"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if err := ws.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		mt, got, err := ws.ReadMessage()
		if err != nil || mt != websocket.TextMessage || string(got) != m {
			t.Fatalf("echo %q: got %d %q %v", m, mt, got, err)
		}
	}
	// A line that is not UTF-8 comes back as a binary message, byte-exact.
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("\xff\xfe\n")); err != nil {
		t.Fatal(err)
	}
	mt, got, err := ws.ReadMessage()
	if err != nil || mt != websocket.BinaryMessage || string(got) != "\xff\xfe" {
		t.Fatalf("binary line: %d %q %v", mt, got, err)
	}
}

func TestLines_Splitting(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/lines")
	var msgs []string
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1000 {
				t.Fatalf("close: %v", err)
			}
			break
		}
		msgs = append(msgs, string(m))
	}
	if strings.Join(msgs, "|") != "one|two|three" {
		t.Fatalf("messages %q", msgs)
	}
}

// Ensure channel.chimirror.v1 framing both ways and the status channel.
func TestChannel_Framing(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/cat", ProtoChannel)
	for _, m := range [][]byte{{0, 'h', 'i', 0xff}, {255}} {
		if err := ws.WriteMessage(websocket.BinaryMessage, m); err != nil {
			t.Fatal(err)
		}
	}
	var stdout []byte
	var status map[string]any
	for {
		mt, m, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1000 {
				t.Fatalf("close: %v", err)
			}
			break
		}
		if mt != websocket.BinaryMessage || len(m) == 0 {
			t.Fatalf("frame %d %q", mt, m)
		}
		switch m[0] {
		case 1:
			stdout = append(stdout, m[1:]...)
		case 3:
			if err := json.Unmarshal(m[1:], &status); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected channel %d", m[0])
		}
	}
	if string(stdout) != "hi\xff" || status["code"] != 0.0 || status["reason"] != "exit" {
		t.Fatalf("stdout %q status %v", stdout, status)
	}
}

// Ensure a binary app exchanges raw bytes without line framing.
func TestBinaryApp(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/bincat")
	payload := []byte{0, 1, 2, 0xff, '\n', 'x'}
	if err := ws.WriteMessage(websocket.BinaryMessage, payload); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(payload) {
		mt, m, err := ws.ReadMessage()
		if err != nil || mt != websocket.BinaryMessage {
			t.Fatalf("read: %d %v", mt, err)
		}
		got = append(got, m...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %q", got)
	}
}

// Ensure the job sees a clean environment: the allow-list, CGI/1.1 and the
// job variables, and nothing of the server's own.
func TestJobEnvironment(t *testing.T) {
	t.Setenv("CHIMIRROR_SECRET_TEST", "leak")
	s := startServer(t, protoApps(), Options{Software: "chimirror/test"})
	hdr := map[string][]string{"X-Custom": {"v1"}, "Authorization": {"Bearer secret"}}
	ws, err := s.tryDial("/apps/env?x=1&y=2", hdr, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	got := readSession(t, ws, 5*time.Second)
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(got.stdout)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	want := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "chimirror/test", "REQUEST_METHOD": "GET",
		"QUERY_STRING": "x=1&y=2", "REQUEST_URI": "/apps/env?x=1&y=2", "REMOTE_ADDR": "127.0.0.1",
		"SERVER_NAME": "127.0.0.1", "HTTPS": "off", "HTTP_X_CUSTOM": "v1", "PATH_INFO": "",
		"CHIMIRROR_APP": "env", "PATH": "/usr/local/bin:/usr/bin:/bin", "CHIMIRROR_TENANT": "public",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"REMOTE_PORT", "SERVER_PORT", "CHIMIRROR_JOB_ID", "HTTP_SEC_WEBSOCKET_KEY", "HTTP_HOST"} {
		if env[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
	if env["UNIQUE_ID"] != env["CHIMIRROR_JOB_ID"] {
		t.Errorf("UNIQUE_ID=%q, want the job ID %q (websocketd's UNIQUE_ID)", env["UNIQUE_ID"], env["CHIMIRROR_JOB_ID"])
	}
	if _, ok := env["HTTP_AUTHORIZATION"]; ok {
		t.Error("Authorization header was passed to the job")
	}
	// Nothing else: no server variables (the secret), only what a shell adds.
	known := map[string]bool{"REMOTE_PORT": true, "SERVER_PORT": true, "CHIMIRROR_JOB_ID": true, "UNIQUE_ID": true,
		"REMOTE_HOST": true, "SERVER_PROTOCOL": true, "SCRIPT_NAME": true, "PWD": true}
	var extra []string
	for k := range env {
		if _, ok := want[k]; !ok && !known[k] && !strings.HasPrefix(k, "HTTP_") {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("variables outside the allow-list: %v", extra)
	}
}

// Ensure the job holds fds 0, 1, 2 only, even when the server inherited more.
func TestJobFds(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/fds", ProtoV1)
	got := readSession(t, ws, 5*time.Second)
	fds := strings.Fields(string(got.stdout))
	// ls itself opens one directory fd (3) to list /proc/self/fd.
	if strings.Join(fds, " ") != "0 1 2 3" {
		t.Fatalf("fds %q, want 0 1 2 (+3 for ls's own directory)", fds)
	}
}

// Ensure every job is its own process group leader.
func TestJobProcessGroup(t *testing.T) {
	t.Parallel()
	s := startServer(t, protoApps(), Options{})
	ws := s.dial("/apps/pgrp", ProtoV1)
	got := readSession(t, ws, 5*time.Second)
	f := strings.Fields(string(got.stdout))
	if len(f) != 2 || f[0] != f[1] {
		t.Fatalf("pid/pgid %q: the job should lead its own group", got.stdout)
	}
}

// Ensure bulk output arrives byte-exact in each protocol, and that a job
// streaming behind a client that has not read yet is read in big chunks:
// messages over the small chunk's 64 KiB (for channel framing, fragments of
// one message).
func TestBulkOutput(t *testing.T) {
	const n = 3_000_000 // about 21 MB from seq: more than loopback TCP buffers hold
	var want []byte
	for i := 1; i <= n; i++ {
		want = strconv.AppendInt(want, int64(i), 10)
		want = append(want, '\n')
	}
	text := shApp("seq", "seq 1 "+strconv.Itoa(n))
	bin := text
	bin.Name, bin.Binary = "binseq", true
	s := startServer(t, supervisor.Config{Apps: []supervisor.App{text, bin}}, Options{})
	for _, tc := range []struct {
		name, path, proto string
		// stdout returns the stdout bytes a message carries.
		stdout func(t *testing.T, mt int, m []byte) []byte
	}{
		{"binary app", "/apps/binseq", "", func(t *testing.T, mt int, m []byte) []byte {
			if mt != websocket.BinaryMessage {
				t.Fatalf("message type %d", mt)
			}
			return m
		}},
		{"channel", "/apps/seq", ProtoChannel, func(t *testing.T, mt int, m []byte) []byte {
			if len(m) > 0 && m[0] == chanStdout {
				return m[1:]
			}
			return nil
		}},
		{"v1", "/apps/seq", ProtoV1, func(t *testing.T, mt int, m []byte) []byte {
			var ev event
			if err := json.Unmarshal(m, &ev); err != nil {
				t.Fatalf("bad event: %v", err)
			}
			if ev.Event == "/stdout" {
				return ev.bytes(t)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := s.dial(tc.path, tc.proto)
			time.Sleep(300 * time.Millisecond) // the job fills TCP buffers and its pipe
			if err := ws.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			var got []byte
			biggest := 0
			for {
				mt, m, err := ws.ReadMessage()
				if err != nil {
					if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseNormalClosure {
						t.Fatalf("after %d bytes: %v", len(got), err)
					}
					break
				}
				p := tc.stdout(t, mt, m)
				biggest = max(biggest, len(p))
				got = append(got, p...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			if biggest <= 64<<10+utf8.UTFMax { // v1 may carry a split rune's bytes over
				t.Fatalf("biggest stdout message %d bytes: the streaming job was never read in big chunks", biggest)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Ensure the ledger's messages_out counts every message the client
// received but the report of the end (v1's /exit, the channel status), in
// every protocol: the last line without a newline included.
func TestMessagesOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, proto string
		endReports  int
	}{
		{"lines", "", 0},
		{"v1", ProtoV1, 1},
		{"channel", ProtoChannel, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, protoApps(), Options{})
			var protos []string
			if tc.proto != "" {
				protos = []string{tc.proto}
			}
			ws := s.dial("/apps/lines", protos...)
			got := 0
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1000 {
						t.Fatalf("close: %v", err)
					}
					break
				}
				got++
			}
			l := s.sup.Ledger()
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				r, _, err := l.Get(st.LastID)
				if err != nil {
					t.Fatal(err)
				}
				// The end's record counts what was sent by the end; it is
				// brought up to date once the end is delivered.
				if !r.State.Open() && (r.Traffic.MessagesOut == int64(got-tc.endReports) || time.Now().After(deadline)) {
					if r.Traffic.MessagesOut != int64(got-tc.endReports) || got <= tc.endReports {
						t.Fatalf("ledger messages_out %d, client received %d (%d of them the end report)",
							r.Traffic.MessagesOut, got, tc.endReports)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still %s", r.ID, r.State)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

package web

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// channelApps: "echo" answers each stdin line and says when it gets INT;
// "trapint" exits 42 on INT.
func channelApps() supervisor.Config {
	return supervisor.Config{Apps: []supervisor.App{
		shApp("echo", `trap 'echo got INT' INT; echo ready; while read -r l; do echo "line $l"; done`),
		shApp("trapint", `trap 'echo got INT; exit 42' INT; echo ready; while :; do sleep 0.05; done`),
	}}
}

// channelSession is what a channel.chimirror.v1 client received.
type channelSession struct {
	stdout, stderr string
	status         map[string]any
	closeCode      int
}

// sendFrames writes each frame as one binary message.
func sendFrames(t *testing.T, ws *websocket.Conn, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
			t.Fatalf("send channel %d: %v", f[0], err)
		}
	}
}

// frame is channel ch followed by payload.
func frame(ch byte, payload string) []byte { return append([]byte{ch}, payload...) }

// readChannelUntil reads frames until stdout holds want, or, with want
// empty, until the server closes the connection.
func readChannelUntil(t *testing.T, ws *websocket.Conn, s *channelSession, want string) {
	t.Helper()
	if err := ws.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for want == "" || !strings.Contains(s.stdout, want) {
		mt, m, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if want == "" && errors.As(err, &ce) {
				s.closeCode = ce.Code
				return
			}
			t.Fatalf("read (waiting for %q, stdout so far %q): %v", want, s.stdout, err)
		}
		if mt != websocket.BinaryMessage || len(m) == 0 {
			t.Fatalf("frame of type %d: %q", mt, m)
		}
		switch m[0] {
		case chanStdout:
			s.stdout += string(m[1:])
		case chanStderr:
			s.stderr += string(m[1:])
		case chanStatus:
			if err := json.Unmarshal(m[1:], &s.status); err != nil {
				t.Fatalf("status %q: %v", m[1:], err)
			}
		default:
			t.Fatalf("frame on channel %d: %q", m[0], m[1:])
		}
	}
}

// TestChannel_Resize: channel 4 is Kubernetes' terminal resize. A resize,
// well-formed or not, and the old "4 + signal name" of chimirror's first
// numbering reach no process: the job goes on reading stdin, is never
// signalled, and exits by itself when stdin closes.
func TestChannel_Resize(t *testing.T) {
	t.Parallel()
	s := startServer(t, channelApps(), Options{})
	tests := []struct {
		name    string
		payload string
	}{
		{"resize", `{"Width":80,"Height":24}`},
		{"resize to zero", `{"Width":0,"Height":0}`},
		{"old numbering's signal", "INT"},
		{"old numbering's KILL", "KILL"},
		{"not JSON", "80x24"},
		{"empty", ""},
		{"a field missing", `{"Width":80}`},
		{"an unknown field", `{"Width":80,"Height":24,"Depth":1}`},
		{"negative", `{"Width":-1,"Height":24}`},
		{"over 16 bits", `{"Width":65536,"Height":24}`},
		{"not numbers", `{"Width":"80","Height":"24"}`},
		{"two objects", `{"Width":80,"Height":24}{"Width":1,"Height":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ws := s.dial("/apps/echo", ProtoChannel)
			var got channelSession
			readChannelUntil(t, ws, &got, "ready\n")
			sendFrames(t, ws, frame(chanResize, tc.payload), frame(chanStdin, "one\n"))
			readChannelUntil(t, ws, &got, "line one\n")
			sendFrames(t, ws, frame(chanResize, tc.payload), frame(chanStdin, "two\n"), []byte{chanClose})
			readChannelUntil(t, ws, &got, "")
			if got.stdout != "ready\nline one\nline two\n" {
				t.Errorf("stdout %q, want the two lines echoed and no signal", got.stdout)
			}
			if got.status["code"] != 0.0 || got.status["reason"] != "exit" || got.closeCode != websocket.CloseNormalClosure {
				t.Errorf("status %v, close %d; want exit 0 by itself, 1000", got.status, got.closeCode)
			}
		})
	}
}

// TestChannel_Signal: a signal name on the signal channel reaches the job.
func TestChannel_Signal(t *testing.T) {
	t.Parallel()
	s := startServer(t, channelApps(), Options{})
	tests := []struct {
		name      string
		payload   string
		code      float64
		signal    any
		reason    string
		closeCode int
	}{
		{"handled INT", "INT", 42, nil, "exit", 4042},
		{"INT with a newline", "INT\n", 42, nil, "exit", 4042},
		{"KILL", "KILL", 137, "KILL", "signal", 4137},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ws := s.dial("/apps/trapint", ProtoChannel)
			var got channelSession
			readChannelUntil(t, ws, &got, "ready\n")
			sendFrames(t, ws, frame(chanSignal, tc.payload))
			readChannelUntil(t, ws, &got, "")
			if got.status["code"] != tc.code || got.status["signal"] != tc.signal || got.status["reason"] != tc.reason {
				t.Errorf("status %v, want code %v, signal %v, reason %s", got.status, tc.code, tc.signal, tc.reason)
			}
			if got.closeCode != tc.closeCode {
				t.Errorf("close code %d, want %d", got.closeCode, tc.closeCode)
			}
		})
	}
}

// TestDecodeChannel: what each channel decodes to, and what is refused.
func TestDecodeChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mt      int
		msg     []byte
		deliver bool // an input for the job
		kind    supervisor.InputKind
		wantErr bool
	}{
		{name: "stdin", mt: websocket.BinaryMessage, msg: frame(chanStdin, "x"), deliver: true, kind: supervisor.InputStdin},
		{name: "close", mt: websocket.BinaryMessage, msg: []byte{chanClose}, deliver: true, kind: supervisor.InputCloseStdin},
		{name: "signal", mt: websocket.BinaryMessage, msg: frame(chanSignal, "TERM"), deliver: true, kind: supervisor.InputSignal},
		{name: "resize: no terminal, nothing to do", mt: websocket.BinaryMessage, msg: frame(chanResize, `{"Width":132,"Height":43}`)},
		{name: "resize with spaces", mt: websocket.BinaryMessage, msg: frame(chanResize, ` { "Width": 1, "Height": 65535 } `)},
		{name: "resize, malformed", mt: websocket.BinaryMessage, msg: frame(chanResize, `{"Height":24}`), wantErr: true},
		{name: "resize, null", mt: websocket.BinaryMessage, msg: frame(chanResize, `null`), wantErr: true},
		{name: "a signal on the resize channel", mt: websocket.BinaryMessage, msg: frame(chanResize, "TERM"), wantErr: true},
		{name: "unknown signal", mt: websocket.BinaryMessage, msg: frame(chanSignal, "STOP"), wantErr: true},
		{name: "stdout is not an input", mt: websocket.BinaryMessage, msg: frame(chanStdout, "x"), wantErr: true},
		{name: "status is not an input", mt: websocket.BinaryMessage, msg: frame(chanStatus, "{}"), wantErr: true},
		{name: "channel 5 unused", mt: websocket.BinaryMessage, msg: frame(5, "INT"), wantErr: true},
		{name: "text", mt: websocket.TextMessage, msg: frame(chanStdin, "x"), wantErr: true},
		{name: "empty", mt: websocket.BinaryMessage, msg: nil, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, deliver, err := decodeChannel(tc.mt, tc.msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			if deliver != tc.deliver || deliver && in.Kind != tc.kind {
				t.Errorf("deliver %v (kind %d), want %v (kind %d)", deliver, in.Kind, tc.deliver, tc.kind)
			}
		})
	}
}

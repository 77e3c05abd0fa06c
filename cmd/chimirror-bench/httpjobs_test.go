package main

import (
	"strconv"
	"strings"
	"testing"
)

// Ensure parseV1Output reads the server's output and exit events, counts
// the bytes a string or base64 carries, and refuses anything else.
func TestParseV1Output(t *testing.T) {
	tests := []struct {
		name    string
		obj     string
		event   string
		seq     uint64
		n       int
		wantErr string
	}{
		{name: "stdout", obj: `{"event":"/stdout","seq":7,"data":"hi\n"}`, event: "stdout", seq: 7, n: 3},
		{name: "stderr, escapes", obj: `{"event":"/stderr","seq":12,"data":"a\"\\\u001b\u00e9\ud83d\ude00"}`, event: "stderr", seq: 12, n: 1 + 1 + 1 + 1 + 2 + 4},
		{name: "base64", obj: `{"event":"/stdout","seq":3,"data":"/wA=","encoding":"base64"}`, event: "stdout", seq: 3, n: 2},
		{name: "exit", obj: `{"event":"/exit","seq":9,"data":{"code":0,"signal":null,"reason":"exit"}}`, event: "exit", seq: 9},
		{name: "gap", obj: `{"event":"/gap","data":{"from":1,"to":4}}`, wantErr: "not an output or exit event"},
		{name: "job", obj: `{"event":"/job","data":{}}`, wantErr: "not an output or exit event"},
		{name: "no seq", obj: `{"event":"/stdout","seq":,"data":"x"}`, wantErr: "bad seq"},
		{name: "data not a string", obj: `{"event":"/stdout","seq":1,"data":5}`, wantErr: "data is not a string"},
		{name: "cut escape", obj: `{"event":"/stdout","seq":1,"data":"\"}`, wantErr: "cut escape"},
		{name: "exit not an object", obj: `{"event":"/exit","seq":2,"data":{"code":}}`, wantErr: "exit data is not an object"},
		{name: "bad base64", obj: `{"event":"/stdout","seq":3,"data":"!!","encoding":"base64"}`, wantErr: "bad base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			event, seq, n, err := parseV1Output([]byte(tt.obj))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseV1Output = %q %d %d %v, want an error with %q", event, seq, n, err, tt.wantErr)
				}
				return
			}
			if err != nil || event != tt.event || seq != tt.seq || n != tt.n {
				t.Fatalf("parseV1Output = %q %d %d %v, want %q %d %d", event, seq, n, err, tt.event, tt.seq, tt.n)
			}
		})
	}
}

// Ensure readSSE counts a job's output to its exit, through comments and
// events longer than its buffer, and refuses a stream that skips an
// event, mislabels one, or ends before the exit.
func TestReadSSE(t *testing.T) {
	ev := func(id int, name, data string) string {
		obj := `{"event":"/` + name + `","seq":` + strconv.Itoa(id) + `,"data":` + data + `}`
		return "id: " + strconv.Itoa(id) + "\nevent: " + name + "\ndata: " + obj + "\n\n"
	}
	exit := ev(3, "exit", `{"code":0,"signal":null,"reason":"exit"}`)
	long := strings.Repeat("0", 200<<10)
	tests := []struct {
		name    string
		stream  string
		payload int64
		wantErr string
	}{
		{name: "whole", stream: ev(1, "stdout", `"ab"`) + ": keep-alive\n\n" + ev(2, "stderr", `"c"`) + exit, payload: 3},
		{name: "an event longer than the buffer", stream: ev(1, "stdout", `"`+long+`"`) + ev(2, "stdout", `"x"`) + exit, payload: 200<<10 + 1},
		{name: "an event skipped", stream: ev(1, "stdout", `"a"`) + exit, wantErr: "seq 3 after seq 1"},
		{name: "id not the seq", stream: strings.Replace(ev(1, "stdout", `"a"`), "id: 1", "id: 2", 1), wantErr: "id 2 carries"},
		{name: "name not the event's", stream: strings.Replace(ev(1, "stdout", `"a"`), "event: stdout", "event: stderr", 1), wantErr: "SSE event stderr"},
		{name: "no exit", stream: ev(1, "stdout", `"a"`), wantErr: "before the exit"},
		{name: "a gap", stream: "id: 4\nevent: gap\ndata: {\"event\":\"/gap\",\"data\":{\"from\":1,\"to\":4}}\n\n", wantErr: "not an output or exit event"},
		{name: "a stray line", stream: "retry: 10\n", wantErr: "unexpected line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readSSE(strings.NewReader(tt.stream))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readSSE = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.payload != tt.payload || got.last != 3 {
				t.Fatalf("readSSE = %+v, %v; want %d bytes, last 3", got, err, tt.payload)
			}
		})
	}
}

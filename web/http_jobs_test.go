package web

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

const (
	aliceToken = "alice-secret-0123456789abcdef0123456789"
	bobToken   = "bob-secret-0123456789abcdef0123456789ab"
)

// batchApp is a batch app running a shell script.
func batchApp(name, script string) supervisor.App {
	a := shApp(name, script)
	a.Mode = "batch"
	return a
}

// httpBase is the server's http:// URL.
func (s *testServer) httpBase() string { return "http" + strings.TrimPrefix(s.URL, "ws") }

// do makes a request with token as its bearer ("" none) and returns the
// answer's status, headers and body.
func (s *testServer) do(method, path, token string, body io.Reader, hdr http.Header) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.httpBase()+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// submitJob submits a job of app with stdin and returns its ID.
func (s *testServer) submitJob(app, token string, stdin []byte) string {
	s.t.Helper()
	st, hdr, body := s.do(http.MethodPost, "/apps/"+app+"/jobs", token, bytes.NewReader(stdin), nil)
	if st != http.StatusCreated {
		s.t.Fatalf("submit %s: %d %s", app, st, body)
	}
	var ans struct{ ID, Output string }
	jsonUnmarshal(s.t, body, &ans)
	if ans.ID == "" || hdr.Get("Location") != "/jobs/"+ans.ID+"/output" || ans.Output != "/jobs/"+ans.ID+"/output" {
		s.t.Fatalf("submit answer %s, Location %q", body, hdr.Get("Location"))
	}
	return ans.ID
}

// waitEnded waits until job id's final record is in the ledger.
func (s *testServer) waitEnded(id string) accounting.Record {
	s.t.Helper()
	var rec accounting.Record
	waitFor(s.t, 20*time.Second, id+" finished", func() bool {
		r, err := s.sup.Ledger().Record(id)
		rec = r
		return err == nil && !r.State.Open()
	})
	return rec
}

// Ensure a submitted batch job runs with the body as its stdin and no
// client, and that its spool returns stdout, stderr and both byte-exact,
// binary included, with Range, to its tenant only.
func TestSubmitAndOutput(t *testing.T) {
	t.Parallel()
	// The job echoes its stdin (binary) to stdout, then writes to stderr
	// and stdout in turns, and exits 3.
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("b", `cat; printf 'E1' >&2; printf 'O1'; sleep 0.1; printf 'E2' >&2; exit 3`),
		shApp("i", `cat`),
	}, Tenants: []supervisor.Tenant{tenant("alice", aliceToken, 0), tenant("bob", bobToken, 0)}}
	s := startServer(t, cfg, Options{})
	in := make([]byte, 300<<10)
	if _, err := rand.Read(in); err != nil {
		t.Fatal(err)
	}
	id := s.submitJob("b", aliceToken, in)
	rec := s.waitEnded(id)
	if rec.ExitCode == nil || *rec.ExitCode != 3 || !rec.Spool || rec.Traffic.StdinBytes != int64(len(in)) {
		t.Fatalf("record %+v: want exit 3, spool, all of stdin", rec)
	}
	wantOut := append(append([]byte{}, in...), "O1"...)
	path := "/jobs/" + id + "/output"
	for _, tc := range []struct {
		name, query string
		hdr         http.Header
		status      int
		want        []byte
	}{
		{"stdout", "?stream=stdout", nil, http.StatusOK, wantOut},
		{"stderr", "?stream=stderr", nil, http.StatusOK, []byte("E1E2")},
		{"all", "", nil, http.StatusOK, nil}, // checked below: order across streams is the pumps'
		{"range", "?stream=stdout", http.Header{"Range": {"bytes=1000-1999"}}, http.StatusPartialContent, wantOut[1000:2000]},
		{"suffix range", "?stream=stdout", http.Header{"Range": {"bytes=-2"}}, http.StatusPartialContent, []byte("O1")},
		{"range past the end", "?stream=stderr", http.Header{"Range": {"bytes=10-"}}, http.StatusRequestedRangeNotSatisfiable, nil},
		{"follow of an ended job", "?stream=stderr&follow=1", nil, http.StatusOK, []byte("E1E2")},
		{"bad stream", "?stream=x", nil, http.StatusBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, hdr, body := s.do(http.MethodGet, path+tc.query, aliceToken, nil, tc.hdr)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, body)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Fatalf("got %d bytes, want %d (first differ at %d)", len(body), len(tc.want), firstDiff(body, tc.want))
			}
			if st/100 == 2 && hdr.Get(jobStateHeader) != "finished" {
				t.Errorf("%s %q, want finished", jobStateHeader, hdr.Get(jobStateHeader))
			}
			if tc.name == "all" {
				if len(body) != len(wantOut)+4 || !bytes.Contains(body, in[:1000]) {
					t.Fatalf("all: %d bytes, want %d", len(body), len(wantOut)+4)
				}
			}
		})
	}
	// Auth: no token, another tenant's job and an unknown job.
	for _, tc := range []struct {
		name, path, token string
		status            int
	}{
		{"no token", path, "", http.StatusUnauthorized},
		{"other tenant", path, bobToken, http.StatusNotFound},
		{"unknown job", "/jobs/JOB99999999/output", aliceToken, http.StatusNotFound},
		{"bad id", "/jobs/nope/output", aliceToken, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, _, body := s.do(http.MethodGet, tc.path, tc.token, nil, nil); st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, body)
			}
		})
	}
	// An interactive app takes no submit, and a batch app no WebSocket.
	if st, _, body := s.do(http.MethodPost, "/apps/i/jobs", aliceToken, strings.NewReader("x"), nil); st != http.StatusConflict {
		t.Errorf("submit to an interactive app: %d %s, want 409", st, body)
	}
	if _, err := s.tryDial("/apps/b", http.Header{"Authorization": {"Bearer " + aliceToken}}); err == nil || err.(*dialError).status != http.StatusConflict {
		t.Errorf("WebSocket to a batch app: %v, want 409", err)
	}
}

// Ensure submits count against the caps as WebSocket jobs do (429 with
// Retry-After, no process started), need the tenant's token, and that
// ?stdin=open leaves stdin open while follow streams the output live.
func TestSubmitCapsAndFollow(t *testing.T) {
	t.Parallel()
	cfg := supervisor.Config{SpoolDir: t.TempDir(), Apps: []supervisor.App{
		batchApp("wait", `echo started; cat >/dev/null; exec sleep 600`),
	}, Tenants: []supervisor.Tenant{tenant("alice", aliceToken, 1)}}
	s := startServer(t, cfg, Options{})
	st, _, body := s.do(http.MethodPost, "/apps/wait/jobs?stdin=open", aliceToken, nil, nil)
	if st != http.StatusCreated {
		t.Fatalf("submit: %d %s", st, body)
	}
	var ans struct{ ID string }
	jsonUnmarshal(t, body, &ans)
	started := s.sup.Started()
	for _, tc := range []struct {
		name, token string
		status      int
	}{
		{"tenant at its cap", aliceToken, http.StatusTooManyRequests},
		{"no token", "", http.StatusUnauthorized},
		{"bad token", "nope", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, hdr, body := s.do(http.MethodPost, "/apps/wait/jobs", tc.token, strings.NewReader("x\n"), nil)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, body)
			}
			if st == http.StatusTooManyRequests && hdr.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	if n := s.sup.Started(); n != started {
		t.Fatalf("%d processes started by refused submits", n-started)
	}
	// Follow the live job: its first line arrives while it waits on stdin.
	req, err := http.NewRequest(http.MethodGet, s.httpBase()+"/jobs/"+ans.ID+"/output?follow=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get(jobStateHeader) != "running" {
		t.Errorf("%s %q, want running", jobStateHeader, resp.Header.Get(jobStateHeader))
	}
	first := make([]byte, len("started\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "started\n" {
		t.Fatalf("followed %q, %v", first, err)
	}
	// The job's stdin is still open (cat waits on it): a cancel ends it.
	if err := s.sup.Cancel(ans.ID, "test"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the cancel the follow got %q, %v: want its end", rest, err)
	}
	if rec := s.waitEnded(ans.ID); rec.Reason != string(supervisor.ReasonCancelled) {
		t.Fatalf("reason %q, want cancelled", rec.Reason)
	}
}

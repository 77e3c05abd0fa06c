package web

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

const adminSecret = "s3cret-token-0123456789abcdef0123456789"

// adminServer is a public test server plus its admin listener, with one
// admin token (adminSecret, labelled "ops").
type adminServer struct {
	*testServer
	admin *httptest.Server
	a     *Admin
}

func startAdmin(t *testing.T, cfg supervisor.Config) *adminServer {
	t.Helper()
	m := NewMetrics()
	cfg.OnEnd = m.JobEnded
	s := startServer(t, cfg, Options{Metrics: m})
	m.Watch(s.sup)
	a := NewAdmin(testLogger(t), s.sup, AdminOptions{Metrics: m, EventEvery: 100 * time.Millisecond, CPUSecondRate: 1,
		Tokens: []AdminToken{{Label: "ops", SHA256: sha256.Sum256([]byte(adminSecret))}}})
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = a.HTTPServer()
	ts.Listener = a.opts.Edge.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(func() { a.Close(); ts.Close() })
	return &adminServer{testServer: s, admin: ts, a: a}
}

// call makes an admin request with token (none if empty) and returns the
// status and body.
func (s *adminServer) call(t *testing.T, method, path, token string, hdr http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.admin.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func adminApps() supervisor.Config {
	return supervisor.Config{SampleEvery: 50 * time.Millisecond, Apps: []supervisor.App{
		shApp("quick", `echo hi`),
		shApp("hold", `echo up; exec sleep 60`),
	}}
}

// runQuick runs one job of the "quick" app to its end, record included.
func runQuick(t *testing.T, s *testServer) string {
	t.Helper()
	ws := s.dial("/apps/quick", ProtoV1)
	sess := readSession(t, ws, 5*time.Second)
	var job struct{ ID string }
	jsonUnmarshal(t, sess.events[0].Data, &job)
	// The client hears of the end while the final record commits; the job
	// leaves the table once it is on disk.
	waitFor(t, 5*time.Second, "the job's final record", func() bool { return s.sup.Running() == 0 })
	return job.ID
}

// Ensure that every API route refuses requests without a valid token, that
// failed attempts are rate-limited, and that health checks need none.
func TestAdmin_Auth(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/jobs"}, {"GET", "/api/v1/jobs/JOB00000001"}, {"POST", "/api/v1/jobs/JOB00000001/cancel"},
		{"GET", "/api/v1/acct"}, {"GET", "/api/v1/tenants"}, {"GET", "/api/v1/policies"}, {"GET", "/metrics"},
		{"GET", "/api/v1/events"},
	}
	for _, r := range routes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			code, body := s.call(t, r.method, r.path, "", nil)
			if code != http.StatusUnauthorized || !strings.Contains(string(body), `"error"`) {
				t.Fatalf("no token: %d %s", code, body)
			}
		})
	}
	for _, path := range []string{"/api/v1/healthz", "/api/v1/readyz", "/"} {
		if code, body := s.call(t, "GET", path, "", nil); code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	for i := range 5 {
		if code, _ := s.call(t, "GET", "/api/v1/jobs", "wrong", nil); code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d", i, code)
		}
	}
	if code, _ := s.call(t, "GET", "/api/v1/jobs", "wrong", nil); code != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures a wrong token should wait: %d", code)
	}
	// Someone's wrong guesses never lock an operator out.
	if code, body := s.call(t, "GET", "/api/v1/jobs", adminSecret, nil); code != http.StatusOK {
		t.Fatalf("after 5 failures the right token got %d %s, want 200", code, body)
	}
}

// Ensure that the login form sets an HttpOnly, SameSite=Strict cookie that
// then authenticates API calls, and that logout clears it.
func TestAdmin_LoginCookie(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	// do sends one request with the jar's cookies and returns the answer.
	do := func(method, path string, form url.Values) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, s.admin.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := do("POST", "/login", url.Values{"token": {"nope"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong login: %d", resp.StatusCode)
	}
	resp := do("POST", "/login", url.Values{"token": {adminSecret}})
	sc := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") {
		t.Fatalf("login: %d %q", resp.StatusCode, sc)
	}
	if resp := do("GET", "/api/v1/jobs", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("with cookie: %d", resp.StatusCode)
	}
	do("POST", "/logout", nil)
	if resp := do("GET", "/api/v1/jobs", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

// Ensure cancel answers 202 for a running job (which then ends cancelled,
// naming the token's label), 404 for an unknown one, 409 for one that has
// ended, 400 for a bad ID, and 403 for a cross-origin POST.
func TestAdmin_Cancel(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	done := runQuick(t, s.testServer)
	ws, id := s.dialJob("/apps/hold")
	cross := http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}
	tests := []struct {
		name string
		path string
		hdr  http.Header
		want int
	}{
		{"cross-origin", "/api/v1/jobs/" + id + "/cancel", cross, http.StatusForbidden},
		{"unknown", "/api/v1/jobs/JOB00009999/cancel", nil, http.StatusNotFound},
		{"finished", "/api/v1/jobs/" + done + "/cancel", nil, http.StatusConflict},
		{"bad id", "/api/v1/jobs/..%2f/cancel", nil, http.StatusBadRequest},
		{"running", "/api/v1/jobs/" + id + "/cancel", nil, http.StatusAccepted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := s.call(t, "POST", tc.path, adminSecret, tc.hdr); code != tc.want {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
		})
	}
	sess := readSession(t, ws, 10*time.Second)
	if sess.exit == nil || sess.exit.Reason != "cancelled" {
		t.Fatalf("cancelled job ended %+v", sess.exit)
	}
	code, body := s.call(t, "GET", "/api/v1/jobs/"+id, adminSecret, nil)
	var got struct {
		Job     accounting.Record
		Samples []accounting.Sample
	}
	jsonUnmarshal(t, body, &got)
	if code != http.StatusOK || got.Job.Reason != "cancelled" || got.Job.CancelledBy != "ops" || got.Job.State != accounting.StateFinished {
		t.Fatalf("record after cancel: %d %s", code, body)
	}
	if code, _ := s.call(t, "GET", "/api/v1/jobs/JOB00009999", adminSecret, nil); code != http.StatusNotFound {
		t.Fatalf("unknown job: %d", code)
	}
}

// Ensure the job list pages through more records than one page, newest
// first, without repeats; that running jobs carry live usage; and that
// filters and bad parameters behave.
func TestAdmin_JobsPagination(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	const n = 120
	for range n {
		runQuick(t, s.testServer)
	}
	hold := s.dial("/apps/hold", ProtoV1)
	if _, _, err := hold.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cursor, pages, last := "", 0, "JOB99999999"
	for {
		code, body := s.call(t, "GET", "/api/v1/jobs?limit=50&cursor="+cursor, adminSecret, nil)
		if code != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, code, body)
		}
		var p struct {
			Jobs []jobJSON
			Next string
		}
		jsonUnmarshal(t, body, &p)
		pages++
		for _, j := range p.Jobs {
			if seen[j.ID] || j.ID >= last {
				t.Fatalf("%s repeated or out of order", j.ID)
			}
			seen[j.ID], last = true, j.ID
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(seen) != n+1 || pages != 3 {
		t.Fatalf("%d jobs in %d pages", len(seen), pages)
	}
	waitFor(t, 3*time.Second, "a usage sample of the running job", func() bool {
		_, body := s.call(t, "GET", "/api/v1/jobs?state=running", adminSecret, nil)
		var p struct{ Jobs []jobJSON }
		jsonUnmarshal(t, body, &p)
		return len(p.Jobs) == 1 && p.Jobs[0].Live != nil && p.Jobs[0].Live.StdoutBytes == 3
	})
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"state=zombie", 400}, {"limit=0", 400}, {"limit=5000", 400}, {"since=yesterday", 400}, {"cursor=x", 400},
		{"app=quick&limit=1", 200}, {"state=finished&since=2026-01-01", 200},
	} {
		if code, body := s.call(t, "GET", "/api/v1/jobs?"+tc.query, adminSecret, nil); code != tc.want {
			t.Errorf("%s: %d %s", tc.query, code, body)
		}
	}
}

// Ensure accounting reports come as JSON and CSV, and tenants and
// policies answer.
func TestAdmin_AcctTenantsPolicies(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	for range 3 {
		runQuick(t, s.testServer)
	}
	code, body := s.call(t, "GET", "/api/v1/acct?by=app", adminSecret, nil)
	var rep struct{ Groups []accounting.Group }
	jsonUnmarshal(t, body, &rep)
	if code != 200 || len(rep.Groups) != 1 || rep.Groups[0].Key != "quick" || rep.Groups[0].Jobs != 3 || rep.Groups[0].Reasons["exit"] != 3 {
		t.Fatalf("acct: %d %s", code, body)
	}
	code, body = s.call(t, "GET", "/api/v1/acct?by=app&format=csv", adminSecret, nil)
	if code != 200 || !strings.HasPrefix(string(body), "app,jobs,cpu_seconds") || !strings.Contains(string(body), "\nquick,3,") {
		t.Fatalf("csv: %d %s", code, body)
	}
	if code, _ := s.call(t, "GET", "/api/v1/acct?by=color", adminSecret, nil); code != 400 {
		t.Fatalf("bad grouping: %d", code)
	}
	code, body = s.call(t, "GET", "/api/v1/tenants", adminSecret, nil)
	if code != 200 || !strings.Contains(string(body), `"name":"public"`) || !strings.Contains(string(body), `"jobs":3`) {
		t.Fatalf("tenants: %d %s", code, body)
	}
	if code, body := s.call(t, "GET", "/api/v1/policies", adminSecret, nil); code != 200 || !strings.Contains(string(body), `"policies"`) {
		t.Fatalf("policies: %d %s", code, body)
	}
	code, body = s.call(t, "GET", "/metrics", adminSecret, nil)
	for _, want := range []string{`chimirror_starts_total 3`, `chimirror_sessions{state="running"} 0`,
		`chimirror_ledger_write_errors_total 0`, `chimirror_setup_seconds_count`, "go_goroutines",
		`chimirror_replay_memory_bytes 0`, `chimirror_replay_memory_max_bytes `} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
}

// Ensure live events: a subscriber gets /jobs/started, /jobs/usage and
// /jobs/ended for a job, and a bad request gets an error callback.
func TestAdmin_Events(t *testing.T) {
	t.Parallel()
	s := startAdmin(t, adminApps())
	d := websocket.Dialer{Subprotocols: []string{ProtoV1}}
	ev, resp, err := d.Dial("ws"+strings.TrimPrefix(s.admin.URL, "http")+"/api/v1/events",
		http.Header{"Authorization": {"Bearer " + adminSecret}})
	if err != nil {
		t.Fatalf("dial events: %v %v", err, resp)
	}
	defer ev.Close()
	send := func(event, data string, cb int) {
		if err := ev.WriteJSON(map[string]any{"event": event, "data": data, "callback": cb}); err != nil {
			t.Fatal(err)
		}
	}
	send("/subscribe", "/nothing", 1)
	send("/subscribe", "/jobs", 2)
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	id := "" // the job starts once the subscription is confirmed
	cancelled := false
	for !got["/jobs/ended"] {
		if err := ev.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		_, m, err := ev.ReadMessage()
		if err != nil {
			t.Fatalf("events so far %v: %v", got, err)
		}
		var e struct {
			Event string
			Data  json.RawMessage
		}
		jsonUnmarshal(t, m, &e)
		switch e.Event {
		case "/callback":
			var cb struct {
				Callback int
				OK       bool
			}
			jsonUnmarshal(t, e.Data, &cb)
			if cb.OK != (cb.Callback == 2) {
				t.Fatalf("callback %s", e.Data)
			}
			if cb.Callback == 2 {
				_, id = s.dialJob("/apps/hold")
			}
		case "/jobs/started", "/jobs/ended":
			if id == "" || !strings.Contains(string(e.Data), id) {
				t.Fatalf("%s for another job: %s", e.Event, e.Data)
			}
		case "/jobs/usage":
			if strings.Contains(string(e.Data), id) && !cancelled {
				cancelled = true
				if err := s.sup.Cancel(id, "test"); err != nil {
					t.Fatal(err)
				}
			}
		}
		got[e.Event] = true
	}
	for _, want := range []string{"/callback", "/jobs/started", "/jobs/usage", "/jobs/ended"} {
		if !got[want] {
			t.Errorf("no %s event", want)
		}
	}
}

package web

import (
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
)

//go:embed admin
var adminFiles embed.FS

// AdminToken is one operator credential. Only its SHA-256 is kept.
type AdminToken struct {
	Label  string // recorded as cancelled_by
	SHA256 [32]byte
}

// AdminOptions configure the operator console and API.
type AdminOptions struct {
	Tokens  []AdminToken
	Metrics *Metrics
	// Policies lists the loaded job classes for GET /api/v1/policies.
	Policies func() []*policies.Policy
	// Chargeback rates add a cost column to accounting reports.
	CPUSecondRate, GiBHourRate float64
	// EventEvery is how often live events are pushed; default 1 s.
	EventEvery time.Duration
}

// Admin is the operator's listener: the console at /, the JSON API at
// /api/v1 and live events. It must be served apart from the public
// listener (a public port never exposes it). Every route but the page, its
// static files, login, healthz and readyz needs an admin token: a bearer
// token, or the cookie the login form sets. Cross-origin writes are
// refused (http.CrossOriginProtection).
type Admin struct {
	log     *slog.Logger
	sup     *supervisor.Supervisor
	ledger  *accounting.Ledger
	opts    AdminOptions
	tokens  atomic.Pointer[[]AdminToken] // opts.Tokens, then SetTokens's
	handler http.Handler
	limiter *failLimiter
	hub     *hub
}

// adminCookie holds the token a browser logged in with (HttpOnly,
// SameSite=Strict, so scripts and other sites never see or send it).
const adminCookie = "chimirror_admin"

// NewAdmin returns the admin handler for sup. Call Close to stop its
// event hub.
func NewAdmin(log *slog.Logger, sup *supervisor.Supervisor, opts AdminOptions) *Admin {
	if opts.EventEvery <= 0 {
		opts.EventEvery = time.Second
	}
	a := &Admin{log: log, sup: sup, ledger: sup.Ledger(), opts: opts, limiter: newFailLimiter(5, time.Minute)}
	a.SetTokens(opts.Tokens)
	static, err := fs.Sub(adminFiles, "admin")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	page, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic(err) // likewise
	}
	a.hub = newHub(log, sup, opts.EventEvery)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage(page))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("POST /login", a.handle(a.login, false))
	mux.HandleFunc("POST /logout", a.handle(a.logout, false))
	mux.HandleFunc("GET /api/v1/healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /api/v1/readyz", a.readyz)
	mux.HandleFunc("GET /api/v1/jobs", a.handle(a.listJobs, true))
	mux.HandleFunc("GET /api/v1/jobs/{id}", a.handle(a.getJob, true))
	mux.HandleFunc("POST /api/v1/jobs/{id}/cancel", a.handle(a.cancelJob, true))
	mux.HandleFunc("GET /api/v1/acct", a.handle(a.acct, true))
	mux.HandleFunc("GET /api/v1/tenants", a.handle(a.tenants, true))
	mux.HandleFunc("GET /api/v1/policies", a.handle(a.policies, true))
	mux.HandleFunc("GET /api/v1/events", a.handle(a.events, true))
	if opts.Metrics != nil {
		mh := opts.Metrics.Handler() // built once: it gathers the registry per scrape
		metrics := a.handle(func(w http.ResponseWriter, r *http.Request, _ string) error {
			mh.ServeHTTP(w, r)
			return nil
		}, true)
		mux.HandleFunc("GET /api/v1/metrics", metrics)
		mux.HandleFunc("GET /metrics", metrics)
	}
	a.handler = http.NewCrossOriginProtection().Handler(mux)
	return a
}

func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// HTTPServer wraps the admin handler with timeouts.
func (a *Admin) HTTPServer(addr string) *http.Server {
	return &http.Server{Addr: addr, Handler: a, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
}

// Close stops live events and closes their connections.
func (a *Admin) Close() { a.hub.close() }

// handle turns an error-returning handler into an http.HandlerFunc
// (Caddy-style); with auth it first checks the admin token and passes
// its label on. An *httpError is shown to the client as {"error": Msg},
// any other error as a 500.
func (a *Admin) handle(h func(http.ResponseWriter, *http.Request, string) error, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		label := ""
		var err error
		if auth {
			label, err = a.authenticate(r)
		}
		if err == nil {
			err = h(w, r, label)
		}
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			a.log.Error("admin request failed", "method", r.Method, "uri", r.RequestURI, "err", err)
			he = &httpError{Status: http.StatusInternalServerError, Msg: "internal error: " + err.Error()}
		}
		if he.Bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chimirror-admin"`)
		}
		if he.RetryAfter != "" {
			w.Header().Set("Retry-After", he.RetryAfter)
		}
		writeJSON(w, he.Status, map[string]string{"error": he.Msg})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// Compact: a page of 1,000 running jobs is 40% smaller and faster to
	// encode than indented (pipe it to jq to read it).
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return // the client went away; nothing left to tell it
	}
}

// authenticate returns the label of the request's admin token. Failures
// are counted per client address; too many get 429 for a while.
func (a *Admin) authenticate(r *http.Request) (string, error) {
	host := clientHost(r)
	if a.limiter.blocked(host) {
		return "", a.tooManyFails(host)
	}
	token, ok := bearerToken(r)
	if !ok {
		if c, err := r.Cookie(adminCookie); err == nil {
			token = c.Value
		}
	}
	if token == "" {
		return "", unauthorized("log in: an admin token is required (Authorization: Bearer TOKEN)")
	}
	if label, ok := a.check(token); ok {
		return label, nil
	}
	a.limiter.fail(host)
	return "", unauthorized("wrong admin token")
}

// unauthorized is a 401 that asks for a bearer token.
func unauthorized(msg string) error {
	return &httpError{Status: http.StatusUnauthorized, Msg: msg, Bearer: true}
}

// tooManyFails is the 429 for a host the login limiter blocks; it may
// retry once the limiter's window has passed.
func (a *Admin) tooManyFails(host string) error {
	return &httpError{Status: http.StatusTooManyRequests, Msg: fmt.Sprintf("too many failed logins from %s; wait a minute", host),
		RetryAfter: strconv.Itoa(int(a.limiter.window.Seconds()))}
}

// SetTokens replaces who may use the console and the API (a config
// reload). A removed token stops working at once, the cookie of a browser
// that logged in with it included.
func (a *Admin) SetTokens(tokens []AdminToken) {
	ts := slices.Clone(tokens)
	a.tokens.Store(&ts)
}

// check returns the label of the admin token that token is (compared
// with every one, in constant time).
func (a *Admin) check(token string) (string, bool) {
	t, ok := findToken(token, *a.tokens.Load(), func(t AdminToken) [32]byte { return t.SHA256 })
	return t.Label, ok
}

// clientHost is who failed logins are counted against: the IPv4 address,
// or the IPv6 /64 (one host's usual allocation; counting single IPv6
// addresses would let one client rotate past the limit).
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Unmap().Is4() {
		return host
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

func (a *Admin) login(w http.ResponseWriter, r *http.Request, _ string) error {
	host := clientHost(r)
	if a.limiter.blocked(host) {
		return a.tooManyFails(host)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "bad login form: %v", err)
	}
	token := r.PostForm.Get("token")
	if _, ok := a.check(token); !ok || token == "" {
		a.limiter.fail(host)
		return unauthorized("wrong admin token")
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Admin) logout(w http.ResponseWriter, r *http.Request, _ string) error {
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// servePage serves the console page, read from the embedded tree once.
func servePage(page []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; connect-src 'self'")
		w.Header().Set("X-Frame-Options", "DENY")
		if _, err := w.Write(page); err != nil {
			return // the client went away
		}
	}
}

func (a *Admin) readyz(w http.ResponseWriter, _ *http.Request) {
	if !a.sup.Accepting() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// jobJSON is a record as the API shows it: running jobs carry "live".
type jobJSON struct {
	accounting.Record
	Live *liveJSON `json:"live,omitempty"`
}

// liveJSON is a running job's usage now: traffic is current, cgroup
// readings are from the last sample (SampledAt).
type liveJSON struct {
	CPUNs              int64     `json:"cpu_ns"`
	CPUPercent         *float64  `json:"cpu_percent,omitempty"`
	MemoryCurrentBytes int64     `json:"memory_current_bytes"`
	MemoryPeakBytes    int64     `json:"memory_peak_bytes"`
	Pids               int64     `json:"pids"`
	StdinBytes         int64     `json:"stdin_bytes"`
	StdoutBytes        int64     `json:"stdout_bytes"`
	StderrBytes        int64     `json:"stderr_bytes"`
	MessagesIn         int64     `json:"messages_in"`
	SampledAt          time.Time `json:"sampled_at,omitzero"`
}

func liveOf(info supervisor.JobInfo) *liveJSON {
	l := &liveJSON{MemoryCurrentBytes: -1, MemoryPeakBytes: -1, StdinBytes: info.Counters.StdinBytes,
		StdoutBytes: info.Counters.StdoutBytes, StderrBytes: info.Counters.StderrBytes, MessagesIn: info.Counters.MessagesIn,
		SampledAt: info.UsageAt}
	if info.Sandboxed && !info.UsageAt.IsZero() {
		u := info.Usage
		l.CPUNs, l.MemoryCurrentBytes, l.MemoryPeakBytes, l.Pids = u.CPUUserNs+u.CPUSystemNs, u.MemoryCurrentBytes, u.MemoryPeakBytes, u.PidsCurrent
	}
	if info.CPUPercent >= 0 && info.Sandboxed {
		p := info.CPUPercent
		l.CPUPercent = &p
	}
	return l
}

// endedRecord is an ended job's final record, from the ledger.
func (a *Admin) endedRecord(id string) (jobJSON, bool) {
	if a.ledger == nil {
		return jobJSON{}, false
	}
	rec, err := a.ledger.Record(id)
	if err != nil {
		a.log.Warn("events: read ended job", "job", id, "err", err)
		return jobJSON{}, false
	}
	return jobJSON{Record: rec}, true
}

// running is a running job's record with its live usage.
func (a *Admin) running(id string) (jobJSON, bool) {
	rec, info, ok := a.sup.Record(id)
	if !ok {
		return jobJSON{}, false
	}
	rec.Traffic = accounting.Traffic{StdinBytes: info.Counters.StdinBytes, StdoutBytes: info.Counters.StdoutBytes,
		StderrBytes: info.Counters.StderrBytes, MessagesIn: info.Counters.MessagesIn}
	return jobJSON{Record: rec, Live: liveOf(info)}, true
}

const (
	defaultPage = 50
	maxPage     = 1000
)

// parseTime reads an RFC 3339 time or a date (midnight UTC).
func parseTime(key, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, errorf(http.StatusBadRequest, "bad %s %q: use RFC 3339 (2026-11-23T10:00:00Z) or a date (2026-11-23)", key, v)
}

func (a *Admin) listJobs(w http.ResponseWriter, r *http.Request, _ string) error {
	v := r.URL.Query()
	q := accounting.Query{State: v.Get("state"), Tenant: v.Get("tenant"), App: v.Get("app"), Reason: v.Get("reason"),
		Policy: v.Get("policy"), Cursor: v.Get("cursor"), Limit: defaultPage}
	if q.State == "" {
		q.State = "all"
	}
	var err error
	if q.Since, err = parseTime("since", v.Get("since")); err != nil {
		return err
	}
	if q.Until, err = parseTime("until", v.Get("until")); err != nil {
		return err
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			return errorf(http.StatusBadRequest, "bad limit %q: 1 to %d", s, maxPage)
		}
		q.Limit = n
	}
	if err := q.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	page, err := a.ledger.List(q)
	if err != nil {
		return err
	}
	out := struct {
		Jobs []jobJSON `json:"jobs"`
		Next string    `json:"next,omitempty"`
	}{Jobs: make([]jobJSON, 0, len(page.Records)), Next: page.Next}
	for _, rec := range page.Records {
		if rec.State.Open() {
			if j, ok := a.running(rec.ID); ok {
				j.LastSeen = rec.LastSeen
				out.Jobs = append(out.Jobs, j)
				continue
			}
		}
		out.Jobs = append(out.Jobs, jobJSON{Record: rec})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *Admin) getJob(w http.ResponseWriter, r *http.Request, _ string) error {
	id := r.PathValue("id")
	if _, err := accounting.ParseID(id); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	rec, samples, err := a.ledger.Get(id)
	if errors.Is(err, accounting.ErrNotFound) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	j := jobJSON{Record: rec}
	if live, ok := a.running(rec.ID); ok {
		live.LastSeen = rec.LastSeen
		j = live
	}
	samples = closeSamples(samples, j)
	writeJSON(w, http.StatusOK, map[string]any{"job": j, "samples": samples})
	return nil
}

// closeSamples ends a job's samples with its latest reading: the ledger
// skips samples that did not change, so an idle job may have one sample
// for its whole life. A running job gets its live reading; an ended one
// its final CPU at ended_at (its memory as last sampled).
func closeSamples(samples []accounting.Sample, j jobJSON) []accounting.Sample {
	if samples == nil {
		samples = []accounting.Sample{}
	}
	var last accounting.Sample
	if n := len(samples); n > 0 {
		last = samples[n-1]
	}
	var end accounting.Sample
	switch {
	case j.Live != nil && !j.Live.SampledAt.IsZero():
		l := j.Live
		end = accounting.Sample{At: l.SampledAt, CPUNs: l.CPUNs, MemoryCurrentBytes: l.MemoryCurrentBytes, PidsCurrent: l.Pids,
			StdinBytes: l.StdinBytes, StdoutBytes: l.StdoutBytes, StderrBytes: l.StderrBytes}
	case !j.State.Open() && !j.EndedAt.IsZero() && len(samples) > 0:
		end = last
		end.At, end.CPUNs = j.EndedAt, j.Usage.CPUNs()
		end.StdinBytes, end.StdoutBytes, end.StderrBytes = j.Traffic.StdinBytes, j.Traffic.StdoutBytes, j.Traffic.StderrBytes
	default:
		return samples
	}
	if end.At.After(last.At) {
		samples = append(samples, end)
	}
	return samples
}

func (a *Admin) cancelJob(w http.ResponseWriter, r *http.Request, label string) error {
	id := r.PathValue("id")
	seq, err := accounting.ParseID(id)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	id = accounting.FormatID(seq)
	err = a.sup.Cancel(id, label)
	if err == nil {
		a.log.Info("job cancelled by operator", "job", id, "by", label)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "state": "cancelling"})
		return nil
	}
	if !errors.Is(err, supervisor.ErrNoJob) {
		return err
	}
	if a.ledger != nil {
		if rec, gerr := a.ledger.Record(id); gerr == nil {
			return errorf(http.StatusConflict, "%s has already ended (%s, %s)", id, rec.State, rec.Reason)
		}
	}
	return errorf(http.StatusNotFound, "no such job: %s", id)
}

func (a *Admin) reportQuery(r *http.Request) (accounting.ReportQuery, error) {
	v := r.URL.Query()
	q := accounting.ReportQuery{By: v.Get("by"), CPUSecondRate: a.opts.CPUSecondRate, GiBHourRate: a.opts.GiBHourRate}
	if q.By == "" {
		q.By = "tenant"
	}
	var err error
	if q.Since, err = parseTime("since", v.Get("since")); err != nil {
		return q, err
	}
	if q.Until, err = parseTime("until", v.Get("until")); err != nil {
		return q, err
	}
	if err := q.Validate(); err != nil {
		return q, errorf(http.StatusBadRequest, "%v", err)
	}
	return q, nil
}

func (a *Admin) acct(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := a.reportQuery(r)
	if err != nil {
		return err
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	groups, err := a.ledger.Report(q)
	if err != nil {
		return err
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, http.StatusOK, map[string]any{"by": q.By, "since": q.Since, "until": q.Until, "groups": groups})
		return nil
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="chimirror-acct-by-%s.csv"`, q.By))
		return WriteReportCSV(w, q.By, groups)
	default:
		return errorf(http.StatusBadRequest, "bad format %q: json or csv", f)
	}
}

// WriteReportCSV writes an accounting report as CSV, one row per group.
func WriteReportCSV(w interface{ Write([]byte) (int, error) }, by string, groups []accounting.Group) error {
	cw := csv.NewWriter(w)
	rows := [][]string{{by, "jobs", "cpu_seconds", "memory_peak_bytes", "gib_hours", "bytes", "reasons", "cost"}}
	for _, g := range groups {
		rows = append(rows, []string{g.Key, strconv.Itoa(g.Jobs), strconv.FormatFloat(g.CPUSeconds, 'f', 3, 64),
			strconv.FormatInt(g.MemoryPeakBytes, 10), strconv.FormatFloat(g.GiBHours, 'f', 6, 64),
			strconv.FormatInt(g.Bytes, 10), FormatReasons(g.Reasons, ";"), strconv.FormatFloat(g.Cost, 'f', 4, 64)})
	}
	return cw.WriteAll(rows)
}

// FormatReasons renders counts by reason as "exit=2;oom=1", sorted.
func FormatReasons(m map[string]int, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, sep)
}

func (a *Admin) tenants(w http.ResponseWriter, _ *http.Request, _ string) error {
	jobs := a.sup.Jobs()
	running := make(map[string]int)
	for _, j := range jobs {
		running[j.Tenant]++
	}
	type tenantJSON struct {
		Name        string            `json:"name"`
		Running     int               `json:"running"`
		MaxSessions int               `json:"max_sessions"`
		Today       *accounting.Group `json:"today,omitempty"`
	}
	list := []tenantJSON{}
	ts := a.sup.Tenants()
	if len(ts) == 0 {
		ts = []*supervisor.Tenant{supervisor.PublicTenant}
	}
	today := make(map[string]accounting.Group)
	if a.ledger != nil {
		now := time.Now()
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
		groups, err := a.ledger.Report(accounting.ReportQuery{By: "tenant", Since: midnight,
			CPUSecondRate: a.opts.CPUSecondRate, GiBHourRate: a.opts.GiBHourRate})
		if err != nil {
			return err
		}
		for _, g := range groups {
			today[g.Key] = g
		}
	}
	for _, t := range ts {
		tj := tenantJSON{Name: t.Name, Running: running[t.Name], MaxSessions: t.MaxSessions}
		g, ok := today[t.Name]
		if !ok {
			g = accounting.Group{Key: t.Name, Reasons: map[string]int{}}
		}
		tj.Today = &g
		list = append(list, tj)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": list, "running": len(jobs), "max_sessions": a.sup.MaxSessions()})
	return nil
}

func (a *Admin) policies(w http.ResponseWriter, _ *http.Request, _ string) error {
	type policyJSON struct {
		Name           string  `json:"name"`
		Source         string  `json:"source"`
		CPU            float64 `json:"cpu,omitempty"`
		MemoryMaxBytes int64   `json:"memory_max_bytes,omitempty"`
		PidsMax        int64   `json:"pids_max,omitempty"`
		WallTimeNs     int64   `json:"wall_time_ns,omitempty"`
		CPUTimeNs      int64   `json:"cpu_time_ns,omitempty"`
		IdleTimeoutNs  int64   `json:"idle_timeout_ns,omitempty"`
		MaxOutputBytes int64   `json:"max_output_bytes,omitempty"`
		Network        bool    `json:"network"`
		User           string  `json:"user"`
		UserNamespace  bool    `json:"user_namespace"`
		Initiators     int     `json:"initiators"`
	}
	list := []policyJSON{}
	if a.opts.Policies != nil {
		for _, p := range a.opts.Policies() {
			list = append(list, policyJSON{Name: p.Name, Source: p.Source, CPU: p.CPU, MemoryMaxBytes: p.MemoryMaxBytes,
				PidsMax: p.PidsMax, WallTimeNs: int64(p.WallTime), CPUTimeNs: int64(p.CPUTime), IdleTimeoutNs: int64(p.IdleTimeout),
				MaxOutputBytes: p.MaxOutputBytes, Network: p.Network, User: p.User, UserNamespace: p.UserNamespace, Initiators: p.Initiators})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": list})
	return nil
}

// failLimiter blocks a client address after max failed logins within
// window, until the window has passed. It holds at most maxHosts entries.
type failLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

const maxHosts = 10000

func newFailLimiter(max int, window time.Duration) *failLimiter {
	return &failLimiter{max: max, window: window, fails: make(map[string][]time.Time)}
}

func (l *failLimiter) recent(host string, now time.Time) []time.Time {
	ts := l.fails[host]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, host)
	} else {
		l.fails[host] = ts
	}
	return ts
}

// blocked reports whether host may not try now: it failed max times
// within the window, or the table is full of hosts failing right now and
// host is not one of them (fail closed: under such an attack, new
// addresses wait until entries expire, rather than clearing the blocks).
func (l *failLimiter) blocked(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if len(l.recent(host, now)) >= l.max {
		return true
	}
	_, known := l.fails[host]
	return !known && len(l.fails) >= maxHosts && !l.expire(now)
}

// expire forgets hosts whose failures are all older than the window and
// reports whether the table has room.
func (l *failLimiter) expire(now time.Time) bool {
	for h := range l.fails {
		l.recent(h, now)
	}
	return len(l.fails) < maxHosts
}

func (l *failLimiter) fail(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	ts := l.recent(host, now)
	if len(ts) == 0 && len(l.fails) >= maxHosts && !l.expire(now) {
		return // full of active entries: blocked() already refuses new hosts
	}
	if len(ts) < l.max {
		l.fails[host] = append(ts, now)
	}
}

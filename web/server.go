// Package web is chimirror's HTTP side: the WebSocket endpoint of every app,
// its protocol adapters, and the test page.
package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// Limits bound what one client can cost the server. Zero values take the
// defaults of DefaultLimits.
type Limits struct {
	MaxMessageBytes   int64         // largest client message; over it: close 1009, job ended
	MaxLineBytes      int64         // longest stdout line in the text-lines protocol; longer lines are split
	PingInterval      time.Duration // keepalive ping period; a client silent for PingInterval+PongTimeout is gone
	PongTimeout       time.Duration
	WriteTimeout      time.Duration // a client that takes longer to accept a write is gone
	HandshakeTimeout  time.Duration
	ReadHeaderTimeout time.Duration // slowloris guard before the upgrade
	MaxHeaderBytes    int
}

// DefaultLimits are used for every zero field of Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:   1 << 20,
		MaxLineBytes:      64 << 10,
		PingInterval:      20 * time.Second,
		PongTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		HandshakeTimeout:  10 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = d.MaxLineBytes
	}
	if l.PingInterval == 0 {
		l.PingInterval = d.PingInterval
	}
	if l.PongTimeout <= 0 {
		l.PongTimeout = d.PongTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = d.HandshakeTimeout
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return l
}

// Options configure a Server.
type Options struct {
	// Origins allowed to open a WebSocket, as "scheme://host[:port]". Empty
	// means same-origin only. Requests without an Origin (non-browsers) pass.
	Origins []string
	Limits  Limits
	// QuickApp, when set, runs at every path but the test page's, as
	// websocketd runs its command (chimirror serve -- CMD): the job gets
	// SCRIPT_NAME "/" and the path as PATH_INFO. At /apps/QuickApp it
	// runs as any app does.
	QuickApp string
	// AppsAtRoot serves each app at /NAME too, as websocketd's --dir serves
	// its programs (chimirror serve --dir DIR).
	AppsAtRoot bool
	// Software is SERVER_SOFTWARE, e.g. "chimirror/0.1.0".
	Software string
	// Metrics, when set, counts starts, refusals and setup latency.
	Metrics *Metrics
	// Edge is the listener's TLS, proxies, hosts and base path.
	Edge Edge
	// ConsoleURL, when set, is linked from the test page for clients on
	// this host (the operator); nobody else learns where it is.
	ConsoleURL string
}

// Server serves the apps of a Supervisor.
type Server struct {
	log      *slog.Logger
	sup      *supervisor.Supervisor
	opts     Options
	origins  map[string]bool
	upgrader websocket.Upgrader
	limiter  *failLimiter // wrong tenant tokens, per client address
	refusals *refusalLog
}

// writePool shares write buffers between connections: a connection holds one
// only while it writes a message.
var writePool sync.Pool

// New returns a Server for sup.
func New(log *slog.Logger, sup *supervisor.Supervisor, opts Options) *Server {
	opts.Limits = opts.Limits.withDefaults()
	s := &Server{log: log, sup: sup, opts: opts, origins: make(map[string]bool), limiter: newFailLimiter(5, time.Minute),
		refusals: newRefusalLog(log)}
	for _, o := range opts.Origins {
		s.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: opts.Limits.HandshakeTimeout,
		WriteBufferSize:  chunkWriteBuffer,
		WriteBufferPool:  &writePool,
		CheckOrigin:      s.originAllowed,
	}
	return s
}

// chunkWriteBuffer fits a small output chunk (64 KiB) and a channel byte in
// one frame. A bigger chunk goes out as the buffer plus the rest, unbuffered.
const chunkWriteBuffer = 64<<10 + 64

// HTTPServer is the server behind its edge, with the timeouts that keep
// slow clients from holding connections before the upgrade. Serve it on
// Options.Edge.Listener(ln).
func (s *Server) HTTPServer() *http.Server {
	e := s.opts.Edge
	e.ReadHeaderTimeout, e.MaxHeaderBytes = s.opts.Limits.ReadHeaderTimeout, s.opts.Limits.MaxHeaderBytes
	return e.httpServer(s, s.log)
}

// httpError is an error with the status and message a client should see:
// as plain text on the public listener, as {"error"} on the admin's.
type httpError struct {
	Status     int
	Msg        string
	RetryAfter string
	Bearer     bool // 401: ask for a bearer token
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func errorf(status int, format string, args ...any) error {
	return &httpError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP routes on the escaped path, so "%2f" or "%2e" can never turn
// into a different app name.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.route(w, r); err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			s.log.Error("request failed", "method", r.Method, "uri", redactedURI(r), "err", err)
			he = &httpError{Status: http.StatusInternalServerError, Msg: "internal error"}
		}
		if websocket.IsWebSocketUpgrade(r) {
			s.opts.Metrics.rejected(he.Status)
			s.refusals.refused(r, he.Status, he.Msg)
		}
		if he.RetryAfter != "" {
			w.Header().Set("Retry-After", he.RetryAfter)
		}
		if he.Bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chimirror"`)
		}
		http.Error(w, he.Msg, he.Status)
	}
}

// redactedURI is r's path and query for the log, the secrets a query may
// carry (an EventSource's or a browser's ?token= and ?resume=) elided.
func redactedURI(r *http.Request) string {
	q := r.URL.Query()
	for _, k := range []string{"token", "resume"} {
		if q.Has(k) {
			q.Set(k, "REDACTED")
		}
	}
	if len(q) == 0 {
		return r.URL.EscapedPath()
	}
	return r.URL.EscapedPath() + "?" + q.Encode()
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.EscapedPath()
	if ok, err := s.routeJobs(w, r); ok { // http_jobs.go
		return err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	upgrade := websocket.IsWebSocketUpgrade(r)
	// An app's name is a segment of the escaped path; what follows it is
	// PATH_INFO. In quick mode only the app's own name is its path here:
	// any other /apps/… is one more path of the command's.
	if rest, ok := strings.CutPrefix(p, "/apps/"); ok {
		name, info, clean := splitApp(rest)
		if !clean { // names no app, as it did before PATH_INFO
			name, info = rest, ""
		}
		if _, known := s.sup.App(name); known || s.opts.QuickApp == "" || !upgrade {
			return s.serveApp(w, r, name, "/apps/"+name, info)
		}
	}
	switch {
	case s.opts.QuickApp != "" && upgrade:
		if _, _, clean := splitApp(p); !clean {
			return errorf(http.StatusNotFound, "not found: %s (a path with . or .. segments, or a NUL)", p)
		}
		// SCRIPT_NAME "/" and PATH_INFO the whole path, as websocketd has them.
		return s.serveApp(w, r, s.opts.QuickApp, "/", p)
	case p == "/" && !upgrade:
		return s.servePage(w, r)
	case s.opts.AppsAtRoot && p != "/":
		name, info, clean := splitApp(p[1:])
		if _, ok := s.sup.App(name); ok && clean {
			return s.serveApp(w, r, name, "/"+name, info)
		}
	}
	return errorf(http.StatusNotFound, "not found: %s", p)
}

// splitApp splits an escaped path (less its leading "/apps/" or "/") into
// its first segment, an app's name, and the rest. clean: the rest,
// decoded, has no "." or ".." segment and no NUL, which a program reading
// PATH_INFO as a file path might follow out of its tree or choke on.
func splitApp(p string) (name, rest string, clean bool) {
	name, _, _ = strings.Cut(p, "/")
	rest = p[len(name):]
	info, err := url.PathUnescape(rest)
	if err != nil || strings.IndexByte(info, 0) >= 0 {
		return name, rest, false
	}
	for seg := range strings.SplitSeq(info, "/") {
		if seg == "." || seg == ".." {
			return name, rest, false
		}
	}
	return name, rest, true
}

// serveApp runs app name for the request. script is the path that chose
// it (SCRIPT_NAME) and rest the escaped path after that (PATH_INFO, once
// decoded).
func (s *Server) serveApp(w http.ResponseWriter, r *http.Request, name, script, rest string) error {
	t0 := time.Now()
	// name is still escaped: an exact match rules out "..", "%2e", "%2f".
	app, ok := s.sup.App(name)
	if !ok {
		return errorf(http.StatusNotFound, "unknown app %q", name)
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return errorf(http.StatusUpgradeRequired, "%s is a WebSocket endpoint; open / for the test page", script)
	}
	if app.RunsBatch() {
		return errorf(http.StatusConflict, "app %s runs batch jobs: submit one with POST %s/jobs (the body is its stdin)", name, script)
	}
	pathInfo, err := url.PathUnescape(rest)
	if err != nil { // EscapedPath is always a valid escaping; never seen
		return errorf(http.StatusBadRequest, "path %q: %v", rest, err)
	}
	proto, tenant, err := s.admitClient(r)
	if err != nil {
		return err
	}
	job, err := s.startJob(r, app, tenant, script, pathInfo, protoName(proto))
	if err != nil {
		return err
	}
	hw := &hijackWriter{ResponseWriter: w}
	// Every protocol's client learns the job and its resume token here;
	// chimirror.v1's gets them in /job too.
	hdr := http.Header{headerJob: {job.ID}, headerResume: {job.ResumeToken()}}
	if proto != "" {
		hdr.Set("Sec-Websocket-Protocol", proto)
	}
	ws, err := s.upgrader.Upgrade(hw, r, hdr)
	if err != nil { // gorilla has answered the client
		job.Log().Info("upgrade failed", "err", err)
		job.Abort()
		return nil
	}
	wc := newWSConn(ws, hw.bc, job.Log(), s.opts.Limits)
	wc.acks = proto == ProtoV1 && r.Header.Get(headerAck) == "1"
	s.opts.Metrics.started(t0)
	c := s.client(proto, wc, job)
	if v, ok := c.(*v1Proto); ok {
		job.StartRecorded() // /job acknowledges the job: its record first
		first := v.job
		first.Resume = job.ResumeToken()
		if err := v.sendJob(first); err != nil {
			job.Log().Info("send /job", "err", err)
		}
	}
	// The session runs on a goroutine of its own, and the handler returns:
	// net/http then lets go of the request, its buffers and the deep stack
	// that parsed them (about 10 KB a session). The goroutine belongs to
	// the job: it ends when Run returns, and the supervisor's Shutdown
	// waits for every job.
	go job.Run(c)
	return nil
}

// The headers of a job's upgrade response, and of a reattach request.
const (
	headerJob    = "X-Chimirror-Job"
	headerResume = "X-Chimirror-Resume"
	// headerAck "1" on a chimirror.v1 request: the client acknowledges by
	// itself (/ack) from its first event on.
	headerAck = "X-Chimirror-Ack"
)

// client is the adapter of protocol proto over wc for job.
func (s *Server) client(proto string, wc *wsConn, job *supervisor.Job) supervisor.Client {
	switch proto {
	case ProtoV1:
		return &v1Proto{wsConn: wc, job: v1Job{ID: job.ID, App: job.App.Name,
			Attach:      strings.TrimRight(s.opts.Edge.BasePath, "/") + "/jobs/" + job.ID + "/attach",
			ReplayBytes: job.ReplayBytes(), DetachTimeoutMs: job.DetachTimeout().Milliseconds()}}
	case ProtoChannel:
		return &channelProto{wsConn: wc}
	}
	return &linesProto{wsConn: wc, binary: job.App.Binary}
}

// admitClient checks what every WebSocket client of a job must pass, in
// this order: its Origin, its sub-protocol (returned) and its tenant's
// token (the tenant returned).
// startJob starts a job of app for r's client, its CGI environment saying
// script (below the base path) and pathInfo; an error is the refusal to
// answer with. A tenant's own token is chimirror's secret, never the
// job's: Authorization is not passed for a tenant's job.
func (s *Server) startJob(r *http.Request, app *supervisor.App, tenant *supervisor.Tenant, script, pathInfo, protocol string) (*supervisor.Job, error) {
	pass := app.PassHeaders
	if tenant != supervisor.PublicTenant {
		pass = slices.DeleteFunc(slices.Clone(pass), func(h string) bool { return h == "Authorization" })
	}
	env := cgiEnv(r, s.opts.Software, pass, strings.TrimRight(s.opts.Edge.BasePath, "/")+script, pathInfo)
	job, err := s.sup.Start(supervisor.Request{App: app.Name, Tenant: tenant, Env: env,
		Remote: r.RemoteAddr, Client: clientHost(r), UserAgent: r.UserAgent(), Protocol: protocol})
	if err != nil {
		return nil, admitError(err)
	}
	return job, nil
}

func (s *Server) admitClient(r *http.Request) (proto string, tenant *supervisor.Tenant, err error) {
	if !s.originAllowed(r) {
		return "", nil, errorf(http.StatusForbidden, "origin %q is not allowed", r.Header.Get("Origin"))
	}
	if proto, err = pickProtocol(r); err != nil {
		return "", nil, err
	}
	if tenant, err = s.authenticate(r); err != nil {
		return "", nil, err
	}
	return proto, tenant, nil
}

func protoName(p string) string {
	if p == "" {
		return "lines"
	}
	return p
}

func admitError(err error) error {
	switch {
	case errors.Is(err, supervisor.ErrTenantBusy), errors.Is(err, supervisor.ErrClientBusy):
		return &httpError{Status: http.StatusTooManyRequests, Msg: err.Error() + "; try again later", RetryAfter: "1"}
	case errors.Is(err, supervisor.ErrBusy):
		return &httpError{Status: http.StatusTooManyRequests, Msg: "too many sessions; try again later", RetryAfter: "1"}
	case errors.Is(err, supervisor.ErrShuttingDown):
		return &httpError{Status: http.StatusServiceUnavailable, Msg: "server is shutting down", RetryAfter: "5"}
	case errors.Is(err, supervisor.ErrUnknownApp):
		return errorf(http.StatusNotFound, "%v", err)
	case errors.Is(err, supervisor.ErrCannotStart):
		// The app needs mending; a Retry-After would only bring the client back.
		return errorf(http.StatusInternalServerError, "could not start job: %v", err)
	}
	// The rest may pass: the host short of memory, processes or ids.
	return &httpError{Status: http.StatusServiceUnavailable, Msg: "could not start job: " + err.Error(), RetryAfter: "1"}
}

// authenticate finds the request's tenant by its bearer token, from the
// Authorization header or, for browsers, ?token=. With no tenants
// configured everyone is the public tenant. Tokens are compared as SHA-256
// sums in constant time, against every tenant.
func (s *Server) authenticate(r *http.Request) (*supervisor.Tenant, error) {
	tenants := s.sup.Tenants()
	if len(tenants) == 0 {
		return supervisor.PublicTenant, nil
	}
	token, ok := bearerToken(r)
	if !ok {
		token = r.URL.Query().Get("token")
	}
	if token == "" {
		return nil, &httpError{Status: http.StatusUnauthorized, Msg: "a tenant token is required: Authorization: Bearer TOKEN, or ?token=TOKEN", Bearer: true}
	}
	// As the admin's: a correct token first, so that someone's guesses
	// from the same address never lock a tenant out; wrong ones are
	// counted per client address (behind trusted proxies, the real one).
	found, ok := findToken(token, tenants, func(t *supervisor.Tenant) [32]byte { return t.TokenSHA256 })
	if ok {
		return found, nil
	}
	host := clientHost(r)
	if s.limiter.blocked(host) {
		return nil, s.limiter.refusal(host, "tenant tokens")
	}
	s.limiter.fail(host)
	if tokenBits(token) < MinTokenBits {
		return nil, shortToken("tenant")
	}
	return nil, &httpError{Status: http.StatusUnauthorized, Msg: "unknown tenant token", Bearer: true}
}

// MinTokenBits is the least randomness a token may have. The length
// needed depends on the alphabet a token is written in: 32 hex digits, 26
// base32 characters (crypto/rand.Text), 22 of base64 (chimirror token
// makes 43, 256 bits). Tokens are kept as unsalted SHA-256 sums, which is
// sound only for random tokens this strong: no dictionary holds them and
// 2^128 guesses are out of reach, so a salt or a slow hash would add
// nothing but cost to every request.
const MinTokenBits = 128

// tokenBits is what token can hold at most, judged by the smallest
// common alphabet it is written in: digits, hex, base32, base64 or any
// printable ASCII.
func tokenBits(token string) float64 {
	alphabets := []struct {
		bits float64
		in   func(rune) bool
	}{
		{math.Log2(10), func(c rune) bool { return c >= '0' && c <= '9' }},
		{4, func(c rune) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }},
		{5, func(c rune) bool { return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' || c == '=' }},
		{6, func(c rune) bool {
			return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+/-_=", c)
		}},
	}
	for _, a := range alphabets {
		if strings.IndexFunc(token, func(c rune) bool { return !a.in(c) }) < 0 {
			return a.bits * float64(len(token))
		}
	}
	return math.Log2(95) * float64(len(token))
}

// shortToken is the 401 for a token too weak to be one chimirror takes.
func shortToken(who string) error {
	return unauthorized(fmt.Sprintf("%s tokens must hold at least %d bits (32 hex digits, 26 base32 or 22 base64 characters): make one with chimirror token", who, MinTokenBits))
}

// bearerToken is the token of an "Authorization: Bearer TOKEN" header.
func bearerToken(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// findToken returns the last of entries whose SHA-256 sum (by sumOf) is
// token's. It compares the sum with every entry in constant time, so the
// time taken tells nothing about which entry, if any, matched.
//
// A token weaker than MinTokenBits never matches: the config holds only
// hashes, so a weak token can only be refused where it is seen.
func findToken[T any](token string, entries []T, sumOf func(T) [32]byte) (T, bool) {
	var found T
	if tokenBits(token) < MinTokenBits {
		return found, false
	}
	sum := sha256.Sum256([]byte(token))
	ok := false
	for _, e := range entries {
		if s := sumOf(e); subtle.ConstantTimeCompare(sum[:], s[:]) == 1 {
			found, ok = e, true
		}
	}
	return found, ok
}

// pickProtocol chooses the sub-protocol. A client that offers protocols, none
// of which we speak, is refused rather than silently given text lines.
func pickProtocol(r *http.Request) (string, error) {
	offered := websocket.Subprotocols(r)
	if len(offered) == 0 {
		return "", nil
	}
	for _, p := range offered {
		if p == ProtoV1 || p == ProtoChannel {
			return p, nil
		}
	}
	return "", errorf(http.StatusBadRequest, "unsupported sub-protocol %q; this server speaks %s and %s (or none, for text lines)",
		strings.Join(offered, ", "), ProtoV1, ProtoChannel)
}

// originAllowed: no Origin (not a browser), an allow-listed one, or, with no
// allow-list, the same host as the request.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.origins) > 0 {
		return s.origins[strings.ToLower(origin)]
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// withheldVars are the HTTP_* variables of the headers that never reach a
// job unless its app passes them (pass names the header): they carry the
// client's credentials. HTTP_PROXY never does, whatever header makes it: a
// program would take it for its proxy (httpoxy, CVE-2016-5385). Matching
// the variable, not the header, also catches "Proxy_Authorization".
var withheldVars = map[string]string{"HTTP_COOKIE": "Cookie", "HTTP_AUTHORIZATION": "Authorization",
	"HTTP_PROXY_AUTHORIZATION": "Proxy-Authorization", "HTTP_PROXY": ""}

// cgiEnv is the CGI/1.1 environment websocketd gives its programs, less
// the withheld headers that pass does not name. scriptName is the path
// that chose the app, base path included, and pathInfo the decoded rest.
func cgiEnv(r *http.Request, software string, pass []string, scriptName, pathInfo string) []string {
	remoteHost, remotePort := splitAddr(r.RemoteAddr)
	serverName, serverPort, err := net.SplitHostPort(r.Host)
	if err != nil { // a Host without a port: take the port we accepted on
		serverName, serverPort = r.Host, ""
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			_, serverPort = splitAddr(la.String())
		}
	}
	// A ?token= is a secret: the job never sees it.
	rawQuery, uri := r.URL.RawQuery, r.RequestURI
	if q := r.URL.Query(); q.Has("token") {
		q.Del("token")
		rawQuery = q.Encode()
		uri = r.URL.EscapedPath()
		if rawQuery != "" {
			uri += "?" + rawQuery
		}
	}
	https := "off"
	if isHTTPS(r) {
		https = "on"
	}
	env := make([]string, 0, 16+len(r.Header))
	env = append(env,
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_SOFTWARE="+software,
		"SERVER_PROTOCOL="+r.Proto,
		"SERVER_NAME="+serverName,
		"SERVER_PORT="+serverPort,
		"REQUEST_METHOD="+r.Method,
		"REQUEST_URI="+uri,
		"SCRIPT_NAME="+scriptName,
		"PATH_INFO="+pathInfo,
		"QUERY_STRING="+rawQuery,
		"REMOTE_ADDR="+remoteHost,
		"REMOTE_HOST="+remoteHost,
		"REMOTE_PORT="+remotePort,
		"HTTPS="+https,
		"HTTP_HOST="+r.Host, // net/http keeps Host out of r.Header
	)
	for k, vs := range r.Header {
		v := headerVar(k, vs)
		name := v[:strings.IndexByte(v, '=')]
		if h, ok := withheldVars[name]; ok && (h == "" || !slices.Contains(pass, h)) {
			continue
		}
		if name == "HTTP_COOKIE" {
			// The console's login cookie is an admin token, and a browser
			// sends it to this port too (cookies do not keep to a port).
			if v = withoutCookie(v, adminCookie); v == "HTTP_COOKIE=" {
				continue
			}
		}
		env = append(env, v)
	}
	return env
}

// withoutCookie drops every cookie called name from a Cookie header's
// variable ("HTTP_COOKIE=a=1; b=2", joined with ", " when sent twice).
func withoutCookie(v, name string) string {
	prefix, list, _ := strings.Cut(v, "=")
	var kept []string
	for _, part := range strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' }) {
		part = strings.TrimSpace(part)
		if n, _, _ := strings.Cut(part, "="); strings.TrimSpace(n) != name && part != "" {
			kept = append(kept, part)
		}
	}
	return prefix + "=" + strings.Join(kept, "; ")
}

// headerVar renders a header as HTTP_NAME=value: upper case, other bytes '_'.
func headerVar(k string, vs []string) string {
	b := make([]byte, 0, 5+len(k)+1+len(vs[0]))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	b = append(b, '=')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, v...)
	}
	return string(b)
}

// splitAddr splits "host:port"; an address without a port is all host.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return h, p
}

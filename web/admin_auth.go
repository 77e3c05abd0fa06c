package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AdminToken is one operator credential. Only its SHA-256 is kept.
type AdminToken struct {
	Label  string // recorded as cancelled_by
	SHA256 [32]byte
}

// adminCookie holds the token a browser logged in with (HttpOnly,
// SameSite=Strict, so scripts and other sites never see or send it).
const adminCookie = "chimirror_admin"

// authenticate returns the label of the request's admin token (bearer or
// the console's cookie); see verify.
func (a *Admin) authenticate(r *http.Request) (string, error) {
	token, ok := bearerToken(r)
	if !ok {
		if c, err := r.Cookie(adminCookie); err == nil {
			token = c.Value
		}
	}
	if token == "" {
		if host := clientHost(r); a.limiter.blocked(host) {
			return "", a.tooManyFails(host)
		}
		return "", unauthorized("log in: an admin token is required (Authorization: Bearer TOKEN)")
	}
	return a.verify(r, token)
}

// verify returns the label of admin token token. Failures are counted per
// client address; too many get 429 for a while. A correct token is checked
// before the limiter's verdict, so that someone's wrong guesses never lock
// an operator out (admin tokens are random, 192 bits: the limiter keeps
// guessing slow and quiet, not feasible).
func (a *Admin) verify(r *http.Request, token string) (string, error) {
	if label, ok := a.check(token); ok && token != "" {
		return label, nil
	}
	host := clientHost(r)
	if a.limiter.blocked(host) {
		return "", a.tooManyFails(host)
	}
	a.limiter.fail(host)
	if token != "" && tokenBits(token) < MinTokenBits {
		return "", shortToken("admin")
	}
	return "", unauthorized("wrong admin token")
}

// unauthorized is a 401 that asks for a bearer token.
func unauthorized(msg string) error {
	return &httpError{Status: http.StatusUnauthorized, Msg: msg, Bearer: true}
}

// tooManyFails is the 429 for a host the login limiter blocks; it may
// retry once the limiter's window has passed.
func (a *Admin) tooManyFails(host string) error { return a.limiter.refusal(host, "logins") }

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

// login sets the cookie for a correct token (an empty one counts as a
// wrong one: the form was sent).
func (a *Admin) login(w http.ResponseWriter, r *http.Request, _ string) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "bad login form: %v", err)
	}
	token := r.PostForm.Get("token")
	if _, err := a.verify(r, token); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: token, Path: a.cookiePath(), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: isHTTPS(r)})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cookiePath keeps the login cookie to the console's own paths.
func (a *Admin) cookiePath() string { return strings.TrimRight(a.opts.Edge.BasePath, "/") + "/" }

func (a *Admin) logout(w http.ResponseWriter, r *http.Request, _ string) error {
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: a.cookiePath(), MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
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

// refusal is the 429 for a host the limiter blocks (what: "logins",
// "tenant tokens"); it may retry once the window has passed.
func (l *failLimiter) refusal(host, what string) error {
	wait := l.wait(host)
	return &httpError{Status: http.StatusTooManyRequests, Msg: fmt.Sprintf("too many failed %s from %s; wait %v", what, host, wait),
		RetryAfter: strconv.Itoa(int(wait / time.Second))}
}

// wait is how long until host may try again: until its oldest failure in
// the window leaves it, in whole seconds, one at least.
func (l *failLimiter) wait(host string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	wait := l.window
	if ts := l.recent(host, now); len(ts) > 0 {
		wait = l.window - now.Sub(ts[0])
	}
	return max(wait.Truncate(time.Second)+time.Second, time.Second)
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

package web

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Edge is what both listeners do before a request reaches a handler: TLS,
// request framing, the client's real address behind trusted proxies, the
// Host check and the base path. The zero Edge serves plain HTTP at / to
// any loopback or IP-literal Host, with default timeouts.
type Edge struct {
	// TLS, when set, is the listener's TLS configuration (see TLSConfig).
	TLS *tls.Config
	// TrustedProxies may set the client's address and scheme with
	// X-Forwarded-For, Forwarded and X-Forwarded-Proto. A request from
	// any other peer has its headers ignored.
	TrustedProxies []netip.Prefix
	// Hosts are the names clients may use in Host (and Origin, for the
	// same-origin rule). IP literals and "localhost" always pass: a DNS
	// rebinding attack needs a name the attacker controls.
	Hosts []string
	// BasePath ("/chimirror") serves everything under a prefix; "" is /.
	BasePath string
	// ReadHeaderTimeout bounds a request's head; BodyTimeout its body
	// after that; IdleTimeout a keep-alive connection between requests.
	ReadHeaderTimeout, BodyTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                              int
}

// Edge defaults: see Edge.
const (
	DefaultBodyTimeout = 10 * time.Second
	DefaultIdleTimeout = 60 * time.Second
)

func (e Edge) withDefaults() Edge {
	if e.ReadHeaderTimeout <= 0 {
		e.ReadHeaderTimeout = DefaultLimits().ReadHeaderTimeout
	}
	if e.BodyTimeout <= 0 {
		e.BodyTimeout = DefaultBodyTimeout
	}
	if e.IdleTimeout <= 0 {
		e.IdleTimeout = DefaultIdleTimeout
	}
	if e.MaxHeaderBytes <= 0 {
		e.MaxHeaderBytes = DefaultLimits().MaxHeaderBytes
	}
	e.BasePath = strings.TrimRight(e.BasePath, "/")
	return e
}

// Listener is ln as the edge serves it: TLS, when configured, then the
// request-framing check.
func (e Edge) Listener(ln net.Listener) net.Listener {
	if e.TLS != nil {
		ln = tls.NewListener(ln, e.TLS)
	}
	return framingListener(ln)
}

// httpServer serves h behind the edge, with its timeouts. Serve it on
// Listener's listener.
func (e Edge) httpServer(h http.Handler, log *slog.Logger) *http.Server {
	e = e.withDefaults()
	return &http.Server{
		Handler:           e.wrap(h, log),
		ReadHeaderTimeout: e.ReadHeaderTimeout,
		// The whole request: a WebSocket upgrade clears it once
		// hijacked (gorilla does), so it bounds only a slow body.
		ReadTimeout:    e.ReadHeaderTimeout + e.BodyTimeout,
		IdleTimeout:    e.IdleTimeout,
		MaxHeaderBytes: e.MaxHeaderBytes,
		ConnContext:    framingConnContext,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// wrap is the edge in front of h. Its order matters: framing first (a
// smuggled request is never routed), then the client's address (every
// later refusal is logged and limited by it), then Host, then the path.
func (e Edge) wrap(h http.Handler, log *slog.Logger) http.Handler {
	return framed(e.admit(h, newProxyHint(log, e.TrustedProxies)))
}

// framed refuses a request whose head had both Content-Length and
// Transfer-Encoding, before anything reads it (see framingListener).
func framed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad, closeAfter := framingVerdict(r)
		if closeAfter {
			w.Header().Set("Connection", "close")
		}
		if bad {
			http.Error(w, "a request may not have both Content-Length and Transfer-Encoding", http.StatusBadRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// admit is the edge after framing: the client's address, Host, the base
// path.
func (e Edge) admit(h http.Handler, hint *proxyHint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, https := resolveClient(r, e.TrustedProxies)
		hint.check(r)
		r = r.WithContext(withEdgeInfo(r.Context(), edgeInfo{peer: r.RemoteAddr, https: https || r.TLS != nil || connTLS(r) != nil}))
		r.RemoteAddr = addr
		if !e.hostAllowed(r.Host) {
			http.Error(w, "misdirected request: this server does not answer to host "+r.Host+" (add it to hosts)", http.StatusMisdirectedRequest)
			return
		}
		if e.BasePath != "" {
			p := r.URL.EscapedPath()
			rest, ok := strings.CutPrefix(p, e.BasePath)
			if !ok || (rest != "" && rest[0] != '/') {
				http.Error(w, "not found: "+p+" (this server is at "+e.BasePath+"/)", http.StatusNotFound)
				return
			}
			if rest == "" {
				http.Redirect(w, r, e.BasePath+"/", http.StatusMovedPermanently)
				return
			}
			r2 := *r
			u := *r.URL
			u.RawPath = rest
			u.Path = strings.TrimPrefix(u.Path, e.BasePath)
			if u.Path == "" {
				u.Path = "/"
			}
			r2.URL = &u
			r = &r2
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed: an IP literal, localhost, or one of Hosts, with any port.
func (e Edge) hostAllowed(host string) bool {
	if host == "" { // HTTP/1.0 without Host: no browser, no rebinding
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	for _, h := range e.Hosts {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// edgeInfo is what the edge learnt of a request, for the handlers behind
// it.
type edgeInfo struct {
	peer  string // the TCP peer: the proxy, when one forwarded the request
	https bool   // TLS to us, or to a trusted proxy that says so
}

type edgeKey struct{}

func withEdgeInfo(ctx context.Context, ei edgeInfo) context.Context {
	return context.WithValue(ctx, edgeKey{}, ei)
}

// isHTTPS reports whether the client reached us over TLS, directly or
// through a trusted proxy.
func isHTTPS(r *http.Request) bool {
	if ei, ok := r.Context().Value(edgeKey{}).(edgeInfo); ok {
		return ei.https
	}
	return r.TLS != nil
}

// proxyHint says once, as a warning, that a peer not in trusted_proxies
// sends forwarding headers: a proxy in front that is not trusted makes
// every client one address (its limiter, its per-client cap, its test
// page link), which fails quietly otherwise.
type proxyHint struct {
	log     *slog.Logger
	trusted []netip.Prefix
	said    atomic.Bool
}

func newProxyHint(log *slog.Logger, trusted []netip.Prefix) *proxyHint {
	return &proxyHint{log: log, trusted: trusted}
}

func (p *proxyHint) check(r *http.Request) {
	if p == nil || p.said.Load() || (r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("Forwarded") == "") {
		return
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || isTrusted(peer.Addr(), p.trusted) || !p.said.CompareAndSwap(false, true) {
		return
	}
	p.log.Warn("a peer not in trusted_proxies sends X-Forwarded-For or Forwarded: its headers are ignored. "+
		"If it is your proxy, add it to trusted_proxies, or every client is known by its address (said once)",
		"peer", peer.Addr().String())
}

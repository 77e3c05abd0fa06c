package web

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestResolveClient: only a trusted peer's headers name the client; the
// chain is read from the right, skipping trusted hops; unreadable entries
// end the walk; the proto is the one of the entry that named the client.
func TestResolveClient(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:ffff::/48"),
	}
	const (
		proxy     = "10.0.0.1:40000"    // trusted
		stranger  = "198.51.100.1:5555" // untrusted
		mapped    = "[::ffff:127.0.0.1]:40000"
		v6proxy   = "[2001:db8:ffff::1]:40000"
		xff, xfp  = "X-Forwarded-For", "X-Forwarded-Proto"
		forwarded = "Forwarded"
	)
	type line [2]string // one header line: name, value
	tests := []struct {
		name      string
		peer      string
		trusted   []netip.Prefix // nil: trusted above
		lines     []line
		wantAddr  string
		wantHTTPS bool
	}{
		// Who may speak.
		{name: "untrusted peer, forged X-Forwarded-For", peer: stranger,
			lines: []line{{xff, "203.0.113.7"}, {xfp, "https"}}, wantAddr: stranger},
		{name: "untrusted peer, forged Forwarded", peer: stranger,
			lines: []line{{forwarded, "for=203.0.113.7;proto=https"}}, wantAddr: stranger},
		{name: "no trusted proxies", peer: proxy, trusted: []netip.Prefix{},
			lines: []line{{xff, "203.0.113.7"}}, wantAddr: proxy},
		{name: "trusted peer, no headers", peer: proxy, wantAddr: proxy},
		{name: "peer not an address", peer: "@", lines: []line{{xff, "203.0.113.7"}}, wantAddr: "@"},
		{name: "IPv4-mapped peer matches an IPv4 prefix", peer: mapped,
			lines: []line{{xff, "203.0.113.7"}}, wantAddr: "203.0.113.7:"},
		{name: "IPv6 peer in an IPv6 prefix", peer: v6proxy,
			lines: []line{{xff, "2001:db8::7"}}, wantAddr: "[2001:db8::7]:"},
		{name: "IPv6 peer outside the prefix", peer: "[2001:db8::1]:40000",
			lines: []line{{xff, "203.0.113.7"}}, wantAddr: "[2001:db8::1]:40000"},

		// X-Forwarded-For.
		{name: "one hop", peer: proxy, lines: []line{{xff, "203.0.113.7"}}, wantAddr: "203.0.113.7:"},
		{name: "forged, real: the rightmost untrusted", peer: proxy,
			lines: []line{{xff, "192.0.2.66, 203.0.113.7"}}, wantAddr: "203.0.113.7:"},
		{name: "several trusted hops skipped", peer: proxy,
			lines: []line{{xff, "192.0.2.66, 203.0.113.7, 10.1.2.3, 127.0.0.1, 10.4.5.6"}}, wantAddr: "203.0.113.7:"},
		{name: "every hop trusted: the leftmost", peer: proxy,
			lines: []line{{xff, "10.1.1.1, 10.2.2.2"}}, wantAddr: "10.1.1.1:"},
		{name: "several lines are one list", peer: proxy,
			lines: []line{{xff, "192.0.2.66"}, {xff, "203.0.113.7, 10.1.2.3"}}, wantAddr: "203.0.113.7:"},
		{name: "empty entries ignored", peer: proxy,
			lines: []line{{xff, " , 203.0.113.7,,10.1.2.3 , "}}, wantAddr: "203.0.113.7:"},
		{name: "an entry with a port", peer: proxy,
			lines: []line{{xff, "203.0.113.7:4711"}}, wantAddr: "203.0.113.7:4711"},
		{name: "bracketed IPv6 with a port", peer: proxy,
			lines: []line{{xff, "[2001:db8::1]:4711"}}, wantAddr: "[2001:db8::1]:4711"},
		{name: "bare IPv6", peer: proxy, lines: []line{{xff, "2001:db8::1"}}, wantAddr: "[2001:db8::1]:"},
		{name: "bracketed IPv6 without a port", peer: proxy, lines: []line{{xff, "[2001:db8::1]"}}, wantAddr: "[2001:db8::1]:"},
		{name: "IPv4-mapped hop is trusted and reported as IPv4", peer: proxy,
			lines: []line{{xff, "::ffff:203.0.113.7, ::ffff:10.1.2.3"}}, wantAddr: "203.0.113.7:"},
		{name: "garbage left of the client is never read", peer: proxy,
			lines: []line{{xff, "<script>, 203.0.113.7"}}, wantAddr: "203.0.113.7:"},
		{name: "garbage: the last good hop", peer: proxy,
			lines: []line{{xff, "203.0.113.7, not-an-ip, 10.1.2.3"}}, wantAddr: "10.1.2.3:"},
		{name: "garbage rightmost: the peer", peer: proxy,
			lines: []line{{xff, "203.0.113.7, 10.1.2.3.4"}}, wantAddr: proxy},
		{name: "unknown: the peer", peer: proxy, lines: []line{{xff, "203.0.113.7, unknown"}}, wantAddr: proxy},
		{name: "port out of range", peer: proxy, lines: []line{{xff, "203.0.113.7:70000"}}, wantAddr: proxy},
		{name: "IPv4 in brackets", peer: proxy, lines: []line{{xff, "[203.0.113.7]"}}, wantAddr: proxy},
		{name: "only empty entries", peer: proxy, lines: []line{{xff, ""}}, wantAddr: proxy},

		// X-Forwarded-Proto.
		{name: "proto https", peer: proxy,
			lines: []line{{xff, "203.0.113.7"}, {xfp, "https"}}, wantAddr: "203.0.113.7:", wantHTTPS: true},
		{name: "proto HTTPS, any case", peer: proxy,
			lines: []line{{xff, "203.0.113.7"}, {xfp, " HTTPS "}}, wantAddr: "203.0.113.7:", wantHTTPS: true},
		{name: "proto http", peer: proxy, lines: []line{{xff, "203.0.113.7"}, {xfp, "http"}}, wantAddr: "203.0.113.7:"},
		{name: "proto without X-Forwarded-For", peer: proxy, lines: []line{{xfp, "https"}}, wantAddr: proxy, wantHTTPS: true},
		{name: "one proto speaks for the chain", peer: proxy,
			lines: []line{{xff, "203.0.113.7, 10.1.2.3"}, {xfp, "https"}}, wantAddr: "203.0.113.7:", wantHTTPS: true},
		{name: "protos line up from the right: the client's https", peer: proxy,
			lines: []line{{xff, "203.0.113.7, 10.1.2.3"}, {xfp, "https, http"}}, wantAddr: "203.0.113.7:", wantHTTPS: true},
		{name: "protos line up from the right: the client's http", peer: proxy,
			lines: []line{{xff, "203.0.113.7, 10.1.2.3"}, {xfp, "http, https"}}, wantAddr: "203.0.113.7:"},
		{name: "a forged proto left of the client's", peer: proxy,
			lines: []line{{xff, "192.0.2.66, 203.0.113.7"}, {xfp, "https"}, {xfp, "http"}}, wantAddr: "203.0.113.7:"},

		// Forwarded.
		{name: "Forwarded for and proto", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60;proto=https;by=203.0.113.43"}}, wantAddr: "192.0.2.60:", wantHTTPS: true},
		{name: "Forwarded names in any case", peer: proxy,
			lines: []line{{forwarded, "For=192.0.2.60;PROTO=HTTPS"}}, wantAddr: "192.0.2.60:", wantHTTPS: true},
		{name: "Forwarded quoted IPv6 with a port", peer: proxy,
			lines: []line{{forwarded, `for="[2001:db8:cafe::17]:4711"`}}, wantAddr: "[2001:db8:cafe::17]:4711"},
		{name: "Forwarded quoted IPv4 with a port", peer: proxy,
			lines: []line{{forwarded, `for="192.0.2.60:4711"`}}, wantAddr: "192.0.2.60:4711"},
		{name: "Forwarded quoted pairs", peer: proxy,
			lines: []line{{forwarded, `for="\[2001:db8::1\]:80"`}}, wantAddr: "[2001:db8::1]:80"},
		{name: "Forwarded chain: the rightmost untrusted, with its proto", peer: proxy,
			lines:    []line{{forwarded, `for=192.0.2.66;proto=http, for="[2001:db8::1]:4711";proto=https, for=10.1.2.3;proto=http`}},
			wantAddr: "[2001:db8::1]:4711", wantHTTPS: true},
		{name: "Forwarded every hop trusted", peer: proxy,
			lines: []line{{forwarded, "for=10.1.1.1;proto=https, for=10.2.2.2"}}, wantAddr: "10.1.1.1:", wantHTTPS: true},
		{name: "Forwarded lines are one list", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.66"}, {forwarded, "for=192.0.2.60, for=10.1.2.3"}}, wantAddr: "192.0.2.60:"},
		{name: "Forwarded empty pairs and elements", peer: proxy,
			lines: []line{{forwarded, " , for=192.0.2.60;;proto=https; ,"}}, wantAddr: "192.0.2.60:", wantHTTPS: true},
		{name: "Forwarded wins over X-Forwarded-For", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60"}, {xff, "203.0.113.7"}, {xfp, "https"}}, wantAddr: "192.0.2.60:"},
		{name: "an empty Forwarded leaves X-Forwarded-For", peer: proxy,
			lines: []line{{forwarded, ""}, {xff, "203.0.113.7"}}, wantAddr: "203.0.113.7:"},
		{name: "Forwarded unknown: the peer", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60, for=unknown"}}, wantAddr: proxy},
		{name: "Forwarded unknown: the peer's proto", peer: proxy,
			lines: []line{{forwarded, "for=unknown;proto=https"}}, wantAddr: proxy, wantHTTPS: true},
		{name: "Forwarded without for", peer: proxy,
			lines: []line{{forwarded, "proto=https;by=10.0.0.1"}}, wantAddr: proxy, wantHTTPS: true},
		{name: "Forwarded obfuscated node: the last good hop", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60, for=_hidden, for=10.1.2.3"}}, wantAddr: "10.1.2.3:"},
		{name: "Forwarded obfuscated port", peer: proxy,
			lines: []line{{forwarded, `for="192.0.2.60:_gazonk"`}}, wantAddr: "192.0.2.60:"},
		{name: "Forwarded obfuscated port of IPv6", peer: proxy,
			lines: []line{{forwarded, `for="[2001:db8::1]:_p-1"`}}, wantAddr: "[2001:db8::1]:"},
		{name: "Forwarded unterminated quote", peer: proxy,
			lines: []line{{forwarded, `for="192.0.2.60`}}, wantAddr: proxy},
		{name: "Forwarded duplicate parameter", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60;for=192.0.2.61"}}, wantAddr: proxy},
		{name: "Forwarded missing value", peer: proxy, lines: []line{{forwarded, "for=;proto=https"}}, wantAddr: proxy},
		{name: "Forwarded junk after a value", peer: proxy, lines: []line{{forwarded, `for="192.0.2.60"x`}}, wantAddr: proxy},
		{name: "Forwarded garbage spoils its own line only", peer: proxy,
			lines: []line{{forwarded, `for="192.0.2.66, for=192.0.2.67`}, {forwarded, "for=192.0.2.60"}}, wantAddr: "192.0.2.60:"},
		{name: "Forwarded garbage rightmost: the peer", peer: proxy,
			lines: []line{{forwarded, "for=192.0.2.60"}, {forwarded, "for=192.0.2.61 ; = "}}, wantAddr: proxy},
		{name: "Forwarded unbracketed IPv6 with a port", peer: proxy,
			lines: []line{{forwarded, `for="2001:db8::1:4711"`}}, wantAddr: "[2001:db8::1:4711]:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			for _, l := range tc.lines {
				r.Header.Add(l[0], l[1])
			}
			tr := tc.trusted
			if tr == nil {
				tr = trusted
			}
			addr, https := resolveClient(r, tr)
			if addr != tc.wantAddr || https != tc.wantHTTPS {
				t.Errorf("resolveClient = %q, https %v; want %q, https %v", addr, https, tc.wantAddr, tc.wantHTTPS)
			}
			if addr != tc.peer {
				if _, _, err := net.SplitHostPort(addr); err != nil {
					t.Errorf("addr %q: %v", addr, err)
				}
			}
		})
	}
}

// TestEdgeClientAddr: behind the edge, handlers see the client resolved
// through trusted proxies: as r.RemoteAddr, in the login limiter's key,
// in a job's CGI environment, and as the scheme.
func TestEdgeClientAddr(t *testing.T) {
	t.Parallel()
	e := Edge{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	tests := []struct {
		name, peer, xff, xfp string
		wantRemote, wantHost string
		wantHTTPS            bool
	}{
		{name: "through the proxy", peer: "127.0.0.1:40000", xff: "203.0.113.7", xfp: "https",
			wantRemote: "203.0.113.7:", wantHost: "203.0.113.7", wantHTTPS: true},
		{name: "IPv6 client through the proxy: its /64", peer: "127.0.0.1:40000", xff: "2001:db8:1:2:3:4:5:6",
			wantRemote: "[2001:db8:1:2:3:4:5:6]:", wantHost: "2001:db8:1:2::/64"},
		{name: "straight from a client", peer: "127.0.0.2:40000", xff: "203.0.113.7", xfp: "https",
			wantRemote: "127.0.0.2:40000", wantHost: "127.0.0.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var remote, host string
			var https bool
			var env map[string][]string
			h := e.admit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				remote, host, https = r.RemoteAddr, clientHost(r), isHTTPS(r)
				env = envMap(t, cgiEnv(r, "test", nil, "/apps/x", ""))
			}), nil)
			r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/apps/x", nil)
			r.RemoteAddr = tc.peer
			r.Header.Set("X-Forwarded-For", tc.xff)
			r.Header.Set("X-Forwarded-Proto", tc.xfp)
			h.ServeHTTP(httptest.NewRecorder(), r)
			if remote != tc.wantRemote || host != tc.wantHost || https != tc.wantHTTPS {
				t.Errorf("RemoteAddr %q, limiter key %q, https %v; want %q, %q, %v", remote, host, https, tc.wantRemote, tc.wantHost, tc.wantHTTPS)
			}
			wantAddr, wantPort, err := net.SplitHostPort(tc.wantRemote)
			if err != nil {
				t.Fatal(err)
			}
			wantHTTPS := map[bool]string{true: "on", false: "off"}[tc.wantHTTPS]
			for k, want := range map[string]string{"REMOTE_ADDR": wantAddr, "REMOTE_PORT": wantPort, "HTTPS": wantHTTPS} {
				if got := env[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
		})
	}
}

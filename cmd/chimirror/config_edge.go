package main

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/chimirror/chimirror/web"
)

// edge takes what both listeners share at the network edge: trusted
// proxies, the host names, the base path and the timeouts; and keeps the
// admin listener on loopback unless it is meant to be public, over TLS.
func (p *configParse) edge() {
	c, fc, at := p.c, p.fc, p.at
	var trusted []netip.Prefix
	for _, s := range fc.TrustedProxies {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				pfx, err = a.Prefix(a.BitLen())
			}
		}
		if err != nil {
			at("", 0, "trusted_proxies", "%q: want an address or a CIDR prefix, like \"127.0.0.1/32\" or \"10.0.0.0/8\"", s)
			continue
		}
		if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		if pfx.Bits() == 0 {
			at("", 0, "trusted_proxies", "%q trusts every client to name itself: list your proxies' addresses", s)
			continue
		}
		trusted = append(trusted, pfx.Masked())
	}
	var hosts []string
	for _, h := range fc.Hosts {
		name := strings.TrimSuffix(strings.ToLower(h), ".")
		if name == "" || strings.ContainsAny(name, ":/ ") {
			at("", 0, "hosts", "%q: want a host name as clients type it, like \"jobs.example.com\" (no scheme, no port)", h)
			continue
		}
		hosts = append(hosts, name)
	}
	base := fc.BasePath
	if base != "" {
		if !strings.HasPrefix(base, "/") || strings.ContainsAny(base, "?#% ") || strings.Contains(base, "//") ||
			strings.Contains("/"+base+"/", "/../") || strings.Contains("/"+base+"/", "/./") {
			at("", 0, "base_path", "%q: want a path like \"/chimirror\"", base)
		}
		base = strings.TrimRight(base, "/")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"body_timeout", time.Duration(fc.BodyTimeout)}, {"idle_timeout", time.Duration(fc.IdleTimeout)}} {
		if d.v < 0 {
			at("", 0, d.key, "must not be negative")
		}
	}
	edge := func(e web.Edge) web.Edge {
		e.TrustedProxies, e.Hosts, e.BasePath = trusted, hosts, base
		e.BodyTimeout, e.IdleTimeout = time.Duration(fc.BodyTimeout), time.Duration(fc.IdleTimeout)
		return e
	}
	c.Web.Edge = edge(c.Web.Edge)
	c.AdminEdge = edge(c.AdminEdge)
	c.AdminEdge.ReadHeaderTimeout = c.Web.Limits.ReadHeaderTimeout
	c.AdminPublic = fc.AdminPublic
	if msg := adminExposure(c.AdminListen, fc.AdminPublic, c.AdminEdge.TLS != nil); msg != "" {
		at("", 0, "admin_listen", "%s", msg)
	}
}

// adminExposure says what is wrong with serving the console at addr: off
// loopback, it must be meant (admin_public = true) and over TLS, for its
// tokens and cookie cross the network.
func adminExposure(addr string, public, tls bool) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "\"" + addr + "\": want HOST:PORT, like \"127.0.0.1:8081\""
	}
	if web.IsLoopbackHost(host) {
		return ""
	}
	switch {
	case !public:
		return "\"" + addr + "\" is not loopback: the console and API would face the network. Keep it on 127.0.0.1, " +
			"or set admin_public = true and admin TLS (tls_cert and tls_key, or admin_tls_cert and admin_tls_key)"
	case !tls:
		return "\"" + addr + "\" with admin_public = true needs TLS: set tls_cert and tls_key, or admin_tls_cert and admin_tls_key"
	}
	return ""
}

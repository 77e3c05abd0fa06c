package web

import (
	"net/http"
	"net/netip"
)

// resolveClient: STUB, to be replaced by the trusted-proxies resolution.
// It returns the client's address as "host:port" (port may be empty) and
// whether a trusted proxy says the client used https.
func resolveClient(r *http.Request, trusted []netip.Prefix) (addr string, https bool) {
	return r.RemoteAddr, false
}

package web

import (
	"embed"
	"html/template"
	"net/http"
	"net/netip"
	"strings"
)

//go:embed page/index.html
var pageFS embed.FS

var pageTmpl = template.Must(template.ParseFS(pageFS, "page/index.html"))

// servePage is the test page: talk to any app from a browser, websocketd
// devconsole-style, with nothing loaded from outside.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The console's address only for a client on this host: the operator.
	console := ""
	if host, _ := splitAddr(r.RemoteAddr); s.opts.ConsoleURL != "" && IsLoopbackHost(host) {
		console = s.opts.ConsoleURL
	}
	return pageTmpl.Execute(w, map[string]any{"Apps": s.sup.Apps(), "Quick": s.opts.QuickApp, "Console": console})
}

// IsLoopbackHost reports whether host names this machine's loopback:
// "localhost" or a loopback IP (v4-mapped too); "" (every address) does not.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

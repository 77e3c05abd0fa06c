package web

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
)

// framingListener: STUB, to be replaced by the request-framing check.
func framingListener(ln net.Listener) net.Listener { return ln }

// framingConnContext: STUB.
func framingConnContext(ctx context.Context, c net.Conn) context.Context { return ctx }

// framingVerdict: STUB. bad: the request had both Content-Length and
// Transfer-Encoding; closeAfter: the connection must close after it.
func framingVerdict(r *http.Request) (bad, closeAfter bool) { return false, false }

// connTLS is the TLS state of r's connection, nil without TLS: STUB.
func connTLS(r *http.Request) *tls.ConnectionState { return r.TLS }

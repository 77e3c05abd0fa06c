package main

// tls: STUB. Loads tls_cert/tls_key (and admin_tls_*, admin_client_ca)
// into c.Web.Edge.TLS and c.AdminEdge.TLS.
func (p *configParse) tls() {}

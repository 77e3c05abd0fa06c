package main

import (
	"crypto/tls"
	"errors"
	"path/filepath"

	"github.com/chimirror/chimirror/web"
)

// tlsSetup is a config's TLS: the files its keys name and the listeners'
// certificates loaded from them.
type tlsSetup struct {
	files tlsFiles
	// public and admin are the listeners' certificates, nil without TLS;
	// admin is public itself when admin_tls_cert and admin_tls_key are
	// unset. SIGHUP reloads them from files, the ones the server started
	// with: a changed path needs a restart.
	public, admin *web.KeyPair
	// clientCAs is admin_client_ca's bundle, which SIGHUP re-reads too.
	clientCAs *web.CAPool
}

// tlsFiles are the TLS keys' paths, from the config file's directory; ""
// when unset.
type tlsFiles struct {
	cert, key, adminCert, adminKey, clientCA string
}

// tls loads tls_cert and tls_key for the public listener; admin_tls_cert
// and admin_tls_key for the admin one, which takes the public pair when
// they are unset; and admin_client_ca, mutual TLS on the admin listener.
// It runs after web, which makes c.Web afresh; before setDataDir, which
// hides the keys from jobs; and before edge, which wants admin TLS for an
// admin_listen off loopback.
func (p *configParse) tls() {
	c, fc := p.c, p.fc
	path := func(s string) string {
		if s == "" || filepath.IsAbs(s) {
			return s
		}
		return filepath.Join(c.dir, s) // like every path in the file: from its directory
	}
	f := tlsFiles{cert: path(fc.TLSCert), key: path(fc.TLSKey), adminCert: path(fc.AdminTLSCert),
		adminKey: path(fc.AdminTLSKey), clientCA: path(fc.AdminClientCA)}
	c.tls.files = f
	pub, pubOn := p.keyPair("tls_cert", f.cert, "tls_key", f.key)
	adm, admOn := pub, pubOn
	if f.adminCert != "" || f.adminKey != "" {
		adm, admOn = p.keyPair("admin_tls_cert", f.adminCert, "admin_tls_key", f.adminKey)
	}
	c.tls.public, c.tls.admin = pub, adm
	var clientCAs *web.CAPool
	if f.clientCA != "" {
		if !admOn {
			p.at("", 0, "admin_client_ca", "mutual TLS needs admin TLS: set tls_cert and tls_key, or admin_tls_cert and admin_tls_key")
		} else if pool, err := web.LoadCAPool(f.clientCA); err != nil {
			p.at("", 0, "admin_client_ca", "%v", err)
		} else {
			clientCAs = pool
		}
	}
	c.tls.clientCAs = clientCAs
	c.Web.Edge.TLS = edgeTLS(pub, pubOn, nil)
	c.AdminEdge.TLS = edgeTLS(adm, admOn, clientCAs)
}

// keyPair loads a certificate and its key, named by keys certKey and
// keyKey. on says whether TLS is meant, loaded or not: a broken file is a
// problem of its own, and not also a want of TLS.
func (p *configParse) keyPair(certKey, certFile, keyKey, keyFile string) (kp *web.KeyPair, on bool) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, false
	case keyFile == "":
		p.at("", 0, certKey, "set without %s: give both, or neither", keyKey)
		return nil, true
	case certFile == "":
		p.at("", 0, keyKey, "set without %s: give both, or neither", certKey)
		return nil, true
	}
	kp, err := web.LoadKeyPair(certFile, keyFile)
	if err != nil {
		key := certKey
		if fe, ok := errors.AsType[*web.FileError](err); ok && fe.Path == keyFile && keyFile != certFile {
			key = keyKey
		}
		p.at("", 0, key, "%v", err)
		return nil, true
	}
	return kp, true
}

// edgeTLS is a listener's TLS: nil when off. When it is on but its files
// are broken (kp nil), the config has a problem and is never served; the
// TLS it gets then serves no certificate, so no handshake could succeed.
func edgeTLS(kp *web.KeyPair, on bool, clientCAs *web.CAPool) *tls.Config {
	switch {
	case !on:
		return nil
	case kp == nil:
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return web.TLSConfig(kp, clientCAs)
}

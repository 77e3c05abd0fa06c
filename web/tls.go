package web

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
)

// KeyPair is a listener's certificate and key, read from files. Its
// GetCertificate serves the pair last loaded, so a Reload changes what new
// handshakes get while connections already made, and their sessions, go on
// untouched.
type KeyPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate] // never nil once loaded
}

// FileError is a TLS file that cannot be used: the file at fault (of a
// pair, the certificate's or the key's) and why.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string {
	if pe, ok := errors.AsType[*fs.PathError](e.Err); ok && pe.Path == e.Path {
		return e.Err.Error() // "open PATH: ..." names the file already
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FileError) Unwrap() error { return e.Err }

// errNoCertificate: a file meant to hold certificates holds none.
var errNoCertificate = errors.New("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")

// LoadKeyPair reads a PEM certificate (the leaf first, then any
// intermediates) and its PEM private key. An error is a *FileError naming
// the file at fault.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.Reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Reload reads the pair's files again, and serves what they hold from the
// next handshake on. On an error (a *FileError) the pair served stays the
// one loaded before: broken files on disk never take a listener down.
func (kp *KeyPair) Reload() error {
	certPEM, err := os.ReadFile(kp.certFile)
	if err != nil {
		return &FileError{Path: kp.certFile, Err: err}
	}
	// The certificate is checked alone first, so that what X509KeyPair
	// finds wrong after it is the key's fault.
	if _, err := parseCertificates(certPEM); err != nil {
		return &FileError{Path: kp.certFile, Err: err}
	}
	keyPEM, err := os.ReadFile(kp.keyFile)
	if err != nil {
		return &FileError{Path: kp.keyFile, Err: err}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return &FileError{Path: kp.keyFile, Err: err}
	}
	if c.Leaf == nil { // X509KeyPair sets it, unless GODEBUG x509keypairleaf=0
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return &FileError{Path: kp.certFile, Err: err}
		}
	}
	kp.cur.Store(&c)
	return nil
}

// GetCertificate is the pair last loaded, for tls.Config.GetCertificate.
func (kp *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return kp.cur.Load(), nil
}

// Leaf is the certificate served now (its serial and expiry, for logs).
func (kp *KeyPair) Leaf() *x509.Certificate { return kp.cur.Load().Leaf }

// Files are the certificate and key files the pair is read from.
func (kp *KeyPair) Files() (certFile, keyFile string) { return kp.certFile, kp.keyFile }

// LoadCertPool reads a PEM bundle of certificates: CAs to trust. See
// AppendCertFile.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if err := AppendCertFile(pool, path); err != nil {
		return nil, err
	}
	return pool, nil
}

// AppendCertFile adds the certificates of a PEM bundle to pool. Every
// CERTIFICATE block must parse, and there must be one; other blocks are
// skipped. An error is a *FileError, and pool is left as it was.
func AppendCertFile(pool *x509.CertPool, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return nil
}

// parseCertificates parses the CERTIFICATE blocks of PEM data: at least
// one, each sound.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errNoCertificate
	}
	return certs, nil
}

// CAPool is a CA bundle read from a file, which Reload re-reads: a
// revoked operator CA stops working at the next SIGHUP, not the next
// restart.
type CAPool struct {
	path string
	pool atomic.Pointer[x509.CertPool]
}

// LoadCAPool reads the PEM bundle at path (see AppendCertFile).
func LoadCAPool(path string) (*CAPool, error) {
	p := &CAPool{path: path}
	if err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload re-reads the bundle; a broken one leaves the pool as it was.
func (p *CAPool) Reload() error {
	pool, err := LoadCertPool(p.path)
	if err != nil {
		return err
	}
	p.pool.Store(pool)
	return nil
}

// Path is the bundle's file.
func (p *CAPool) Path() string { return p.path }

// Pool is the bundle as last read.
func (p *CAPool) Pool() *x509.CertPool { return p.pool.Load() }

// TLSConfig is a listener's TLS: kp's certificate, reloadable; with
// clientCAs, mutual TLS (every client presents a certificate one of its
// CAs signed, as the bundle was last read). TLS 1.2 at least, Go's
// defaults otherwise. It offers HTTP/1.1 alone: WebSockets need it, and
// the request-framing listener above TLS hides the *tls.Conn from
// net/http, which could never serve h2 on it.
func TLSConfig(kp *KeyPair, clientCAs *CAPool) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: kp.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
	if clientCAs != nil {
		c.ClientCAs, c.ClientAuth = clientCAs.Pool(), tls.RequireAndVerifyClientCert
		base := c.Clone()
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cc := base.Clone()
			cc.ClientCAs = clientCAs.Pool()
			return cc, nil
		}
	}
	return c
}

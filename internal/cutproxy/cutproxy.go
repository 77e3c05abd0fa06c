// Package cutproxy is a TCP proxy for tests whose Cut drops every
// connection through it at once with a reset and no WebSocket close frame,
// as a network change or a proxy restart does.
package cutproxy

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards each connection it accepts on loopback to a target.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the copies

	mu    sync.Mutex
	conns []net.Conn
}

// New starts a proxy to target (host:port); the test's cleanup stops it
// and waits for its goroutines.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Error(err)
		}
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// pipe copies until either side fails or closes, then closes dst. The
// copy's error (a Cut, or the peer closing) says nothing a test checks.
func pipe(dst, src net.Conn) {
	defer dst.Close()
	io.Copy(dst, src) //nolint:errcheck
}

// Cut resets every connection through the proxy.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) //nolint:errcheck // a reset, not a FIN, where it takes
		}
		c.Close()
	}
	p.conns = nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

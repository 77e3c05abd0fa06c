// Package cutproxy is a TCP proxy for tests whose Cut drops every
// connection through it at once with a reset and no WebSocket close frame,
// as a network change or a proxy restart does.
package cutproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards each connection it accepts on loopback to a target.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the copies

	mu    sync.Mutex
	conns []net.Conn

	dropping atomic.Bool // Drop: bytes read are thrown away
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
		p.wg.Go(func() { p.pipe(s, c) })
		p.wg.Go(func() { p.pipe(c, s) })
	}
}

// pipe copies until either side fails or closes, then closes dst; while
// dropping, what it reads is lost. The copy's error (a Cut, or the peer
// closing) says nothing a test checks.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.dropping.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Drop makes the proxy lose every byte it reads from then on, both ways,
// until Cut: what a sender wrote in that time, its socket took as sent,
// and it never arrives, as on a network that dies under a connection.
func (p *Proxy) Drop() { p.dropping.Store(true) }

// Cut resets every connection through the proxy (and ends Drop).
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.dropping.Store(false)
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

// Package relay is a TCP relay for tests that break a connection the way a peer that
// dies mid-call does: the request goes through and is acted on, and no answer comes
// back. Put it between a client and a gateway, or between a gateway and Redis.
package relay

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay forwards every connection made to Addr to its target.
type Relay struct {
	// Addr is the host:port to dial instead of the target.
	Addr string

	target   string
	listener net.Listener
	mu       sync.Mutex
	holding  bool
	conns    []net.Conn
}

// Start starts a relay to target (host:port) on a free loopback port, closed when
// the test ends.
func Start(t testing.TB, target string) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: l.Addr().String(), target: target, listener: l}
	t.Cleanup(r.Close)
	go r.accept()
	return r
}

func (r *Relay) accept() {
	for {
		c, err := r.listener.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, s)
		r.mu.Unlock()
		go func() {
			io.Copy(s, c)
			s.Close()
		}()
		go r.answer(c, s)
	}
}

// answer copies what the target writes to the client, dropping it while held. A
// connection the target closes while held stays open, silent, until Cut.
func (r *Relay) answer(c, s net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		r.mu.Lock()
		held := r.holding
		r.mu.Unlock()
		switch {
		case held && err != nil:
			return
		case held:
		case n > 0:
			if _, err := c.Write(buf[:n]); err != nil {
				c.Close()
				return
			}
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

// Hold drops everything the target sends from now on, on every connection, until
// Cut: requests still go through and are acted on, and the client hears nothing, not
// even a connection the target closes.
func (r *Relay) Hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holding = true
}

// Cut breaks every connection through the relay and stops holding: new connections
// pass, answers and all.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns, r.holding = nil, false
}

// Close breaks every connection and refuses new ones, as when the target's machine
// is gone.
func (r *Relay) Close() {
	r.listener.Close()
	r.Cut()
}

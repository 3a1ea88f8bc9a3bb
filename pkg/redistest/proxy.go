package redistest

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from its own loopback port to a target, and can simulate
// network failures without root:
//
//   - Blackhole: a partition. Nothing is forwarded in either direction and nothing is closed:
//     each side's writes succeed into kernel buffers and its reads wait, as on a half-open link
//     whose peer vanished without a FIN. New connections are accepted (the kernel completes the
//     handshake) but not forwarded either.
//   - Restore: the partition heals; held data and held connections go through.
//   - Cut: every current connection is closed on both sides (a reset); new ones work.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	mu     sync.Mutex // guards what follows
	cond   *sync.Cond // signalled when holed or closed change
	holed  bool
	closed bool
	conns  map[net.Conn]struct{}

	wg sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{t: t, target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address: give it to the client instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in both directions without closing anything.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.holed = true
	p.mu.Unlock()
}

// Restore resumes forwarding after Blackhole.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.holed = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Cut closes every current connection, both sides.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy: the listener and every connection are closed. It is idempotent and runs
// at cleanup.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cond.Broadcast()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// open waits while the proxy is black-holed; false once it is closed.
func (p *Proxy) open() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.holed && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

// track adds c to the connections Cut and Close close; false if the proxy is closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	if !p.open() { // a connection made during a partition waits for the partition to heal
		return
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(upstream) {
		return
	}
	defer p.untrack(upstream)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(upstream, client) }()
	go func() { defer wg.Done(); p.pump(client, upstream) }()
	wg.Wait()
}

// pump copies src to dst, holding data while black-holed. When either side fails, both close.
func (p *Proxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		if !p.open() {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.open() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

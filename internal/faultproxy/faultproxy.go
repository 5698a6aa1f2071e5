// Package faultproxy is a TCP proxy for tests that puts network faults
// between a client (the gateway) and a server (PostgreSQL, Redis): added
// latency, a blackhole, resets, and connections dropped mid-stream. It runs
// in the test process; its mode can be switched at any time and applies to
// the connections already open as well as to new ones.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does to traffic.
type Mode int

const (
	// Pass forwards everything (after the latency, if any).
	Pass Mode = iota
	// Blackhole accepts connections but forwards nothing, either way: new
	// connections are not dialed, and open ones stall, their data held until
	// the mode changes. Nothing is closed, as when packets are lost.
	Blackhole
	// Reset aborts (RST) every open connection, and every new one as soon as
	// it is accepted, as a firewall rejecting with tcp-reset does.
	Reset
	// Drop closes a connection, both ways, instead of forwarding the server's
	// next bytes beyond a budget (see SetDrop): a connection lost in the
	// middle of a reply.
	Drop
	// Forget makes the open connections silent for good, as a NAT or a load
	// balancer that dropped an idle flow's state does: every byte either
	// way is discarded from now on, also after the mode changes, and
	// nothing is closed; only the client can notice, by its own timeouts.
	// New connections are held as by Blackhole.
	Forget
)

func (m Mode) String() string {
	return [...]string{"pass", "blackhole", "reset", "drop", "forget"}[m]
}

// Proxy forwards the connections it accepts on Addr to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    Mode
	latency time.Duration
	budget  int64         // Drop: server bytes forwarded per connection before it is closed
	changed chan struct{} // closed (and replaced) on every change
	links   map[*link]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// link is one proxied connection: the client's and, once dialed, the
// server's.
type link struct {
	client    net.Conn
	done      chan struct{} // closed when the link is torn down
	once      sync.Once
	received  int64 // server bytes forwarded since the drop budget was set (under Proxy.mu)
	forgotten bool  // by Forget (under Proxy.mu)

	mu     sync.Mutex
	server net.Conn // nil until dialed
}

// Start listens on a free loopback port and forwards to target
// ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's "host:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set switches the mode; Reset also aborts the open connections.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	var cut []*link
	if m == Reset {
		for l := range p.links {
			cut = append(cut, l)
		}
	}
	for l := range p.links {
		switch m {
		case Drop:
			l.received = 0
		case Forget:
			l.forgotten = true
		}
	}
	p.notifyLocked()
	p.mu.Unlock()
	for _, l := range cut {
		l.abort()
	}
}

// SetDrop switches to Drop: each connection forwards at most n more bytes
// from the server (0: none), then both of its sides are closed.
func (p *Proxy) SetDrop(n int64) {
	p.mu.Lock()
	p.budget = n
	p.mu.Unlock()
	p.Set(Drop)
}

// SetLatency delays every chunk forwarded, either way, by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.notifyLocked()
	p.mu.Unlock()
}

// Cut aborts (RST) every open connection and leaves the mode as it is:
// clients that reconnect get through (or not) as the mode says.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	var cut []*link
	for l := range p.links {
		cut = append(cut, l)
	}
	p.mu.Unlock()
	for _, l := range cut {
		l.abort()
	}
	return len(cut)
}

// Conns returns the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening and aborts every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.notifyLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// state returns the mode, the latency, the drop budget and a channel closed
// at the next change.
func (p *Proxy) state() (Mode, time.Duration, int64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency, p.budget, p.changed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.abort()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the server for a new link once the mode lets it through, and
// forwards both ways until either side goes.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	for {
		mode, _, _, changed := p.state()
		if mode == Reset {
			l.abort()
			return
		}
		if mode != Blackhole && mode != Forget {
			break
		}
		select {
		case <-changed:
		case <-l.done:
			return
		}
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		l.abort()
		return
	}
	l.mu.Lock()
	select {
	case <-l.done: // torn down while dialing
		l.mu.Unlock()
		s.Close()
		return
	default:
	}
	l.server = s
	l.mu.Unlock()
	var both sync.WaitGroup
	both.Go(func() { p.pump(l, l.client, s, false) })
	both.Go(func() { p.pump(l, s, l.client, true) })
	both.Wait()
}

// pump copies from one side to the other, chunk by chunk, as the mode says
// at each chunk. fromServer marks the server-to-client direction, which
// Drop counts.
func (p *Proxy) pump(l *link, from, to net.Conn, fromServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !p.forward(l, to, buf[:n], fromServer) {
			return
		}
		if err != nil {
			// One side closed or failed: close both, as a router would
			// pass the FIN or RST on.
			l.close()
			return
		}
	}
}

// forward writes one chunk when the mode allows, and reports whether the
// link is still up.
func (p *Proxy) forward(l *link, to net.Conn, chunk []byte, fromServer bool) bool {
	for {
		mode, latency, budget, changed := p.state()
		p.mu.Lock()
		if mode == Forget {
			l.forgotten = true // dialed as the mode changed
		}
		forgotten := l.forgotten
		p.mu.Unlock()
		if forgotten {
			return true
		}
		switch mode {
		case Reset:
			l.abort()
			return false
		case Blackhole:
			select {
			case <-changed:
				continue
			case <-l.done:
				return false
			}
		case Drop:
			if fromServer {
				p.mu.Lock()
				left := max(budget-l.received, 0)
				if int64(len(chunk)) <= left {
					l.received += int64(len(chunk))
					p.mu.Unlock()
					break
				}
				l.received = budget
				p.mu.Unlock()
				to.Write(chunk[:left])
				l.close()
				return false
			}
		}
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-changed: // a new latency or mode: apply it to this chunk
				t.Stop()
				continue
			case <-l.done:
				t.Stop()
				return false
			}
		}
		if _, err := to.Write(chunk); err != nil {
			l.close()
			return false
		}
		return true
	}
}

// abort resets both sides: closing with a zero linger sends RST.
func (l *link) abort() {
	l.teardown(true)
}

// close closes both sides in the ordinary way (FIN).
func (l *link) close() {
	l.teardown(false)
}

func (l *link) teardown(rst bool) {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.done)
		server := l.server
		l.mu.Unlock()
		for _, c := range []net.Conn{l.client, server} {
			if c == nil {
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok && rst {
				tc.SetLinger(0)
			}
			c.Close()
		}
	})
}

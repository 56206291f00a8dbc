// Package natproxy is a loopback TCP proxy that behaves like a carrier
// NAT in front of the broker, for tests of dead-link detection and
// adaptive keep-alive.
//
// Each accepted connection is a "mapping" to the target. Fault knobs:
//
//   - IdleTimeout: a mapping with no traffic in either direction for longer
//     than the timeout is dropped. With OnIdle Blackhole (the default) the
//     drop is silent: both directions stop forwarding, bytes are read and
//     discarded, nothing is closed: the client's socket stays "up", its
//     writes succeed, nothing ever arrives (what a carrier NAT that forgot
//     the mapping does). With OnIdle Reset both sockets are closed with
//     RST.
//   - BlackholeAll / ResetAll act on every current mapping at once.
//
// With no timeout and no knob it forwards faithfully (normal mode).
package natproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Action is what happens to a mapping that is dropped.
type Action int

const (
	// Blackhole stops forwarding silently; nothing is closed.
	Blackhole Action = iota
	// Reset closes both sides with RST.
	Reset
)

// Stats counts mappings and forwarded bytes.
type Stats struct {
	Accepted   int // connections accepted
	Blackholed int // mappings dropped silently
	Resets     int // mappings dropped with RST
	// BytesUp and BytesDown are the bytes forwarded client → broker and
	// broker → client over all mappings (TLS records and handshakes
	// included when the client speaks TLS): the wire cost.
	BytesUp, BytesDown int64
}

// Proxy forwards loopback connections to a target. Create it with New.
// It is safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	idle    time.Duration // 0 = mappings never expire
	onIdle  Action
	conns   map[*mapping]struct{}
	st      Stats
	closed  bool
	lastErr error
	drops   []time.Time // when mappings were dropped (either action)
	wg      sync.WaitGroup
}

// New listens on 127.0.0.1:0 and forwards to target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("natproxy listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[*mapping]struct{})}
	p.wg.Add(1)
	go p.accept() // ends when Close closes the listener
	return p, nil
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetIdleTimeout makes mappings idle for longer than d drop with action a
// (0 = never). It applies to current mappings too.
func (p *Proxy) SetIdleTimeout(d time.Duration, a Action) {
	p.mu.Lock()
	p.idle, p.onIdle = d, a
	ms := p.snapshotLocked()
	p.mu.Unlock()
	for _, m := range ms {
		m.poke()
	}
}

// BlackholeAll silently drops every current mapping.
func (p *Proxy) BlackholeAll() { p.dropAll(Blackhole) }

// ResetAll drops every current mapping with RST.
func (p *Proxy) ResetAll() { p.dropAll(Reset) }

func (p *Proxy) dropAll(a Action) {
	p.mu.Lock()
	ms := p.snapshotLocked()
	p.mu.Unlock()
	for _, m := range ms {
		m.drop(a)
	}
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Drops returns when mappings were dropped, oldest first.
func (p *Proxy) Drops() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.drops...)
}

// Close stops listening and closes every mapping.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ms := p.snapshotLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, m := range ms {
		m.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) snapshotLocked() []*mapping {
	ms := make([]*mapping, 0, len(p.conns))
	for m := range p.conns {
		ms = append(ms, m)
	}
	return ms
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Lock()
			p.lastErr = err
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		m := &mapping{p: p, down: c.(*net.TCPConn), up: up.(*net.TCPConn), last: time.Now(), kick: make(chan struct{}, 1), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			m.close()
			return
		}
		p.conns[m] = struct{}{}
		p.st.Accepted++
		p.mu.Unlock()
		p.wg.Add(3)
		go m.pipe(m.down, m.up, &p.st.BytesUp)   // client → broker; ends when a side closes
		go m.pipe(m.up, m.down, &p.st.BytesDown) // broker → client
		go m.expire()                            // ends when the mapping is closed
	}
}

// mapping is one proxied connection.
type mapping struct {
	p        *Proxy
	down, up *net.TCPConn
	kick     chan struct{}
	done     chan struct{}

	mu        sync.Mutex
	last      time.Time // guarded by mu; last forwarded byte
	dead      bool      // guarded by mu; dropped (blackholed or reset)
	closeOnce sync.Once
}

func (m *mapping) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// pipe forwards src to dst until src ends, counting the bytes forwarded
// in *count (guarded by the proxy's mu); once the mapping is blackholed,
// what src sends is read and discarded.
func (m *mapping) pipe(src, dst *net.TCPConn, count *int64) {
	defer m.p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m.mu.Lock()
			dead := m.dead
			if !dead {
				m.last = time.Now()
			}
			m.mu.Unlock()
			if !dead {
				// Counted before the write, so the count covers whatever
				// the other end has seen (an echo may arrive before a
				// count made after the write).
				m.p.mu.Lock()
				*count += int64(n)
				m.p.mu.Unlock()
				w, werr := dst.Write(buf[:n])
				if werr != nil {
					m.p.mu.Lock()
					*count -= int64(n - w)
					m.p.mu.Unlock()
					m.close()
					return
				}
			}
		}
		if err != nil {
			m.mu.Lock()
			dead := m.dead
			m.mu.Unlock()
			if dead && !errors.Is(err, net.ErrClosed) {
				// A blackholed mapping passes nothing, not even the
				// close: the other side keeps its socket. Keep the
				// source's end until the proxy closes.
				<-m.done
				return
			}
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
				return
			}
			m.close()
			return
		}
	}
}

// expire drops the mapping once it was idle for the proxy's timeout.
func (m *mapping) expire() {
	defer m.p.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.p.mu.Lock()
		idle, a := m.p.idle, m.p.onIdle
		m.p.mu.Unlock()
		m.mu.Lock()
		last, dead := m.last, m.dead
		m.mu.Unlock()
		if dead {
			<-m.done
			return
		}
		wait := time.Hour
		if idle > 0 {
			since := time.Since(last)
			if since > idle {
				m.drop(a)
				continue
			}
			wait = idle - since + time.Millisecond
		}
		t.Reset(wait)
		select {
		case <-m.done:
			return
		case <-m.kick:
		case <-t.C:
		}
	}
}

// drop ends the mapping with action a.
func (m *mapping) drop(a Action) {
	m.mu.Lock()
	if m.dead {
		m.mu.Unlock()
		return
	}
	m.dead = true // dropped either way: nothing is forwarded any more
	m.mu.Unlock()
	m.p.mu.Lock()
	if a == Blackhole {
		m.p.st.Blackholed++
	} else {
		m.p.st.Resets++
	}
	m.p.drops = append(m.p.drops, time.Now())
	m.p.mu.Unlock()
	if a == Reset {
		_ = m.down.SetLinger(0) // close sends RST
		_ = m.up.SetLinger(0)
		m.close()
	}
	m.poke()
}

func (m *mapping) close() {
	m.closeOnce.Do(func() {
		close(m.done)
		_ = m.down.Close()
		_ = m.up.Close()
		m.p.mu.Lock()
		delete(m.p.conns, m)
		m.p.mu.Unlock()
	})
}

package uplink

import (
	"sync/atomic"
	"time"
)

// hooks are the session's run-time overrides (vehicle-state profiles,
// battery guard): keep-alive, batch latency and the classes published.
// They are safe for concurrent use.
type hooks struct {
	keepAlive    atomic.Int64 // nanoseconds; keep-alive of the next connection
	batchLatency atomic.Int64 // nanoseconds
	classes      atomic.Pointer[func(Class) bool]
	wake         chan struct{} // capacity 1: the drain re-reads the overrides
}

func (h *hooks) init(cfg Config) {
	h.keepAlive.Store(int64(cfg.KeepAlive.Std()))
	h.batchLatency.Store(int64(cfg.BatchLatency.Std()))
	h.wake = make(chan struct{}, 1)
}

func (h *hooks) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// allow returns the class filter, nil for all classes.
func (h *hooks) allow() func(Class) bool {
	if p := h.classes.Load(); p != nil {
		return *p
	}
	return nil
}

// SetKeepAlive sets the MQTT keep-alive, clamped to AWS IoT's 30 s–1200 s.
// MQTT fixes the keep-alive in CONNECT: a value more than twice or less
// than half the live connection's is applied by one clean reconnect at
// the next quiet moment (at most one per 10 min, kaswitch.go); a closer
// one waits for the next connection. A value lower than the current
// connection's applies at once all the same (the session pings at it
// itself, and dead-link detection follows). With adaptive keep-alive it
// is the upper bound the probing climbs to.
func (s *Session) SetKeepAlive(d time.Duration) {
	s.setKeepAlive(min(max(d, AWSMinKeepAlive), AWSMaxKeepAlive))
}

func (s *Session) setKeepAlive(d time.Duration) {
	if s.hooks.keepAlive.Swap(int64(d)) == int64(d) {
		return // unchanged: nothing to wake
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.watch.poke()
	}
	s.hooks.poke() // the drain may reconnect for it (kaswitch.go)
}

// SetBatchLatency sets how long a record may wait for others to share its
// message (negative means 0). It applies at once, to the batches already
// open too.
func (s *Session) SetBatchLatency(d time.Duration) {
	s.hooks.batchLatency.Store(int64(max(d, 0)))
	s.hooks.poke()
}

// SetPublishClasses restricts which classes of buffered records are
// published: records of a class for which allow returns false stay in the
// buffer (they are not leased) until it returns true again. nil allows
// every class. allow must be fast and safe for concurrent use; it is
// called from the drain. Records leased before the call still go out.
func (s *Session) SetPublishClasses(allow func(class uint8) bool) {
	if allow == nil {
		s.hooks.classes.Store(nil)
	} else {
		f := func(c Class) bool { return allow(uint8(c)) }
		s.hooks.classes.Store(&f)
	}
	s.hooks.poke()
}

// keepAliveTarget is the configured (or profile) keep-alive for the next
// connection, before adaptive probing.
func (s *Session) keepAliveTarget() time.Duration {
	return time.Duration(s.hooks.keepAlive.Load())
}

// batchLatency is the current batch latency.
func (s *Session) batchLatency() time.Duration {
	return time.Duration(s.hooks.batchLatency.Load())
}

package uplink

import "time"

// SetTestKeepAlive sets the keep-alive of the next connection without
// the 30 s AWS floor, so tests can use seconds.
func SetTestKeepAlive(s *Session, d time.Duration) { s.setKeepAlive(d) }

// DisableAdaptiveBatching makes s batch as before adaptive batching (for
// the comparison test).
func DisableAdaptiveBatching(s *Session) { s.noEagerBatch = true }

// KeepAliveOf is the keep-alive the next connection would use.
func KeepAliveOf(s *Session) time.Duration { return s.keepAliveTarget() }

// SetAdaptiveMin sets the shortest adaptive interval (30 s in production)
// and returns a func that restores it.
func SetAdaptiveMin(d time.Duration) (restore func()) {
	old := adaptiveMin
	adaptiveMin = d
	return func() { adaptiveMin = old }
}

// Learned returns the adaptive keep-alive state on the current network:
// the longest interval that held, the shortest that failed (0: none),
// and the interval the next connection pings at.
func Learned(s *Session) (good, ceiling, next time.Duration) {
	key := s.learner.key()
	next = s.learner.interval(key, time.Hour)
	s.learner.mu.Lock()
	defer s.learner.mu.Unlock()
	n := s.learner.netLocked(key)
	return n.Good, n.Ceiling, next
}

// ParseRoute exposes the default-route parser.
var ParseRoute = parseRoute

// DrainLoops is how many times the drain loop has gone round; IdleWaits
// how many times it waited idle.
func DrainLoops(s *Session) uint64 { return s.st.drainLoops.Load() }

// IdleWaits is how many idle waits the drain began.
func IdleWaits(s *Session) uint64 { return s.st.idleWaits.Load() }

// SetBeforeIdle runs f in the drain just before each idle wait (set it
// before Run); quiet means only an append (or the end) can end the wait:
// nothing in flight, no batch deadline, no pending override.
func SetBeforeIdle(s *Session, f func(quiet bool)) { s.testBeforeIdle = f }

// SetKeepAliveSwitchQuiet sets how long the link must have received
// nothing before a keep-alive reconnect (5 s in production) and returns
// a func that restores it.
func SetKeepAliveSwitchQuiet(d time.Duration) (restore func()) {
	old := kaSwitchQuiet
	kaSwitchQuiet = d
	return func() { kaSwitchQuiet = old }
}

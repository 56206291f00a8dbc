package uplink

import "time"

// SetTestKeepAlive sets the keep-alive of the next connection without
// the 30 s AWS floor, so tests can use seconds.
func SetTestKeepAlive(s *Session, d time.Duration) { s.hooks.keepAlive.Store(int64(d)) }

// DisableAdaptiveBatching makes s batch as before adaptive batching (for
// the comparison test).
func DisableAdaptiveBatching(s *Session) { s.noEagerBatch = true }

// KeepAliveOf is the keep-alive the next connection would use.
func KeepAliveOf(s *Session) time.Duration { return s.keepAliveTarget() }

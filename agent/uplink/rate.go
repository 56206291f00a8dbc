package uplink

import (
	"sync"
	"time"
)

// limiter is a token bucket with a burst of one: any one-second window
// sees at most rate+1 events. take records an event that happened anyway
// (an inbound message) and may drive the bucket into debt, which delays
// the next wait.
type limiter struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time // guarded by mu; earliest time of the next event
	now      func() time.Time
	// bytes, if set, is the per-connection throughput (one event per
	// byte) that waitPublish enforces together with the publish rate.
	bytes *limiter
}

func newLimiter(perSecond int, now func() time.Time) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{interval: time.Second / time.Duration(perSecond), now: now}
}

// newPublishLimiter limits publishes to perSecond and, if bytesPerSecond
// is positive, their payload bytes to bytesPerSecond. The byte bucket has
// a burst of one message: a message goes when the bytes before it are
// paid for, and delays the next by its own size.
func newPublishLimiter(perSecond int, bytesPerSecond int64, now func() time.Time) *limiter {
	l := newLimiter(perSecond, now)
	if l != nil && bytesPerSecond > 0 {
		// Rounded up: never faster than the cap.
		l.bytes = &limiter{interval: time.Duration((int64(time.Second) + bytesPerSecond - 1) / bytesPerSecond), now: now}
	}
	return l
}

// byteDelay is how long until the throughput cap lets the next message
// go (0 without a cap).
func (l *limiter) byteDelay() time.Duration {
	if l == nil {
		return 0
	}
	return l.bytes.delay()
}

// waitPublish blocks until one publish of size payload bytes may happen
// under both the publish rate and the throughput cap, or done or lost is
// closed (lost may be nil). A nil limiter never waits.
func (l *limiter) waitPublish(done, lost <-chan struct{}, size int) bool {
	if l == nil {
		return true
	}
	d := l.reserve(1)
	if l.bytes != nil {
		d = max(d, l.bytes.reserve(size))
	}
	return sleep(d, done, lost)
}

// reserve books n events and returns how long to wait before the first.
func (l *limiter) reserve(n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.next.Before(now) {
		l.next = now
	}
	wait := l.next.Sub(now)
	l.next = l.next.Add(time.Duration(n) * l.interval)
	return wait
}

// delay is how long until the next event may happen (0 for a nil
// limiter); it reserves nothing.
func (l *limiter) delay() time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(0, l.next.Sub(l.now()))
}

// wait blocks until n events may happen or done or lost is closed (lost
// may be nil). A nil limiter never waits.
func (l *limiter) wait(done, lost <-chan struct{}, n int) bool {
	if l == nil {
		return true
	}
	return sleep(l.reserve(n), done, lost)
}

// sleep waits d unless done or lost is closed first.
func sleep(d time.Duration, done, lost <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	case <-lost:
		return false
	}
}

// take records one event that was not waited for.
func (l *limiter) take() {
	if l != nil {
		l.reserve(1)
	}
}

// Package backoff implements capped exponential backoff with jitter, and a
// context-aware sleep, for every retry and restart loop of the module (the
// agent's supervisors, the MQTT reconnect, the SocketCAN reopen, the
// provisioning and EST retries).
//
// It imports nothing of this module.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy computes the delay before a retry: the nominal delay
// min(Max, Base·2^attempt), randomised by Spread so that a fleet that
// failed at once does not retry in lock step. The zero Spread is "full
// jitter". A Policy is a value; Backoff adds the attempt counter.
type Policy struct {
	// Base is the nominal delay of attempt 0.
	Base time.Duration
	// Max caps the nominal delay.
	Max time.Duration
	// Spread selects the jitter: 0 draws each delay uniformly from
	// [0, nominal) ("full jitter"); a value in (0, 1] draws it from
	// [nominal·(1−Spread), nominal·(1+Spread)).
	Spread float64
	// Rand returns a uniform value in [0, n) for n > 0; nil means
	// math/rand/v2. Tests replace it.
	Rand func(n int64) int64
}

// Nominal returns min(Max, Base·2^attempt), the delay before jitter.
func (p Policy) Nominal(attempt int) time.Duration {
	shift := min(max(attempt, 0), 30)
	d := p.Base << shift
	if d <= 0 || d>>shift != p.Base || d > p.Max { // overflowed or capped
		d = p.Max
	}
	return max(d, 0)
}

// Delay returns the jittered delay before retry number attempt (0-based).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Nominal(attempt)
	if d <= 0 {
		return 0
	}
	r := p.Rand
	if r == nil {
		r = rand.Int64N // jitter needs spread, not unpredictability: math/rand is right
	}
	if p.Spread <= 0 {
		return time.Duration(r(int64(d)))
	}
	s := min(p.Spread, 1)
	lo := time.Duration(float64(d) * (1 - s))
	width := time.Duration(float64(d)*(1+s)) - lo
	if width <= 0 {
		return lo
	}
	return lo + time.Duration(r(int64(width)))
}

// Backoff is a Policy with an attempt counter, for loops that retry until
// a success and then start over. It is not safe for concurrent use.
type Backoff struct {
	Policy
	attempt int
}

// New returns a full-jitter Backoff with the given base and cap.
func New(base, maxDelay time.Duration) *Backoff {
	return &Backoff{Policy: Policy{Base: base, Max: maxDelay}}
}

// Next returns the next delay and advances the attempt counter.
func (b *Backoff) Next() time.Duration {
	d := b.Delay(b.attempt)
	b.attempt++
	return d
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt returns how many delays were handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Wait sleeps for d or until ctx is done; it reports whether the full
// delay elapsed (for `for backoff.Wait(ctx, d) { ... }` loops).
func Wait(ctx context.Context, d time.Duration) bool { return Sleep(ctx, d) == nil }

// Sleep waits d or until ctx is done. It returns nil when d elapsed and
// ctx.Err() otherwise; with d ≤ 0 it returns ctx.Err() at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

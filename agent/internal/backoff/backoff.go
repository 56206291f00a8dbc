// Package backoff implements capped exponential backoff with full jitter
// and a context-aware wait, for the agent's restart and retry loops.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff computes successive delays: a uniformly random duration in
// [0, min(Max, Base·2^attempt)] ("full jitter"), so that a fleet restarted
// at once does not retry in lock step. The zero value is not useful; set
// Base and Max.
type Backoff struct {
	Base    time.Duration
	Max     time.Duration
	attempt int
	// rand returns a value in [0, n); tests replace it.
	rand func(n int64) int64
}

// New returns a Backoff with the given base and cap.
func New(base, max time.Duration) *Backoff {
	return &Backoff{Base: base, Max: max}
}

// Next returns the next delay and advances the attempt counter.
func (b *Backoff) Next() time.Duration {
	ceil := b.Base << min(b.attempt, 30)
	if ceil <= 0 || ceil > b.Max {
		ceil = b.Max
	}
	b.attempt++
	r := b.rand
	if r == nil {
		r = rand.Int64N
	}
	return time.Duration(r(int64(ceil) + 1))
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt returns how many delays were handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Wait sleeps for d or until ctx is done; it reports whether the full
// delay elapsed.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Package buffertest holds the conformance suite for buffer queues, a fake
// clock, and a Faulty wrapper that injects errors for consumers' tests.
package buffertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// Queue is the queue behaviour the suite checks; *buffer.Queue implements
// it.
type Queue interface {
	Append(ctx context.Context, c buffer.Class, data []byte) (uint64, error)
	Lease(max int, maxBytes int) ([]buffer.Record, error)
	Ack(seqs ...uint64) error
	Release(seqs ...uint64)
	Ready() <-chan struct{}
	Stats() buffer.Stats
	Close() error
}

var _ Queue = (*buffer.Queue)(nil)

// Opener opens the queue under test with o. The suite fills in o (Dir from
// t.TempDir(), bounds, clock); the opener may change how it is stored
// (e.g. set InMemory) but not the semantics.
type Opener func(t testing.TB, o buffer.Options) Queue

// Clock is a fake clock for Options.Now, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Faulty wraps a Queue and fails calls on demand. The zero knobs pass
// everything through. Set knobs with the setters while the queue is in use
// from other goroutines.
type Faulty struct {
	Queue

	mu         sync.Mutex
	failAppend error // guarded by mu
	failAck    error // guarded by mu
	failLease  error // guarded by mu
	appends    int   // guarded by mu: failed and successful Append calls
	acks       int   // guarded by mu
}

// NewFaulty wraps q.
func NewFaulty(q Queue) *Faulty { return &Faulty{Queue: q} }

// FailAppend makes Append return err without storing (nil restores).
func (f *Faulty) FailAppend(err error) { f.mu.Lock(); f.failAppend = err; f.mu.Unlock() }

// FailAck makes Ack return err without deleting (nil restores).
func (f *Faulty) FailAck(err error) { f.mu.Lock(); f.failAck = err; f.mu.Unlock() }

// FailLease makes Lease return err (nil restores).
func (f *Faulty) FailLease(err error) { f.mu.Lock(); f.failLease = err; f.mu.Unlock() }

// Calls returns how many Append and Ack calls the wrapper has seen.
func (f *Faulty) Calls() (appends, acks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appends, f.acks
}

// Append implements Queue.
func (f *Faulty) Append(ctx context.Context, c buffer.Class, data []byte) (uint64, error) {
	f.mu.Lock()
	err := f.failAppend
	f.appends++
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.Queue.Append(ctx, c, data)
}

// Ack implements Queue.
func (f *Faulty) Ack(seqs ...uint64) error {
	f.mu.Lock()
	err := f.failAck
	f.acks++
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Queue.Ack(seqs...)
}

// Lease implements Queue.
func (f *Faulty) Lease(max int, maxBytes int) ([]buffer.Record, error) {
	f.mu.Lock()
	err := f.failLease
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.Queue.Lease(max, maxBytes)
}

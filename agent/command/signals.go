package command

import (
	"sync"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// Signals is the engine's view of live decoded vehicle signals.
type Signals interface {
	// Latest returns the most recent sample of the named signal.
	Latest(name string) (drivers.Sample, bool)
	// Changed returns a channel that is closed the next time any sample
	// is stored after the call (a broadcast; call again after each wake).
	Changed() <-chan struct{}
}

// SampleCache is a ready Signals implementation: feed it every decoded
// sample (it is a drivers.Sink; Emit never blocks on readers).
type SampleCache struct {
	mu      sync.Mutex
	latest  map[string]drivers.Sample // guarded by mu
	changed chan struct{}             // guarded by mu; nil when nobody waits
}

// NewSampleCache returns an empty cache.
func NewSampleCache() *SampleCache {
	return &SampleCache{latest: map[string]drivers.Sample{}}
}

// Emit stores s as the latest sample of s.Name and wakes waiters.
func (c *SampleCache) Emit(s drivers.Sample) {
	c.mu.Lock()
	c.latest[s.Name] = s
	ch := c.changed
	c.changed = nil
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// Latest implements Signals.
func (c *SampleCache) Latest(name string) (drivers.Sample, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.latest[name]
	return s, ok
}

// Changed implements Signals.
func (c *SampleCache) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

package drivertest

import (
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// Sink is a drivers.Sink that records every sample. After Close, further
// Emit calls are counted as late (a driver bug) instead of recorded. It is
// safe for concurrent use.
type Sink struct {
	mu      sync.Mutex
	samples []drivers.Sample // guarded by mu
	closed  bool             // guarded by mu
	late    int              // guarded by mu
	changed chan struct{}    // closed and replaced on every Emit; guarded by mu
}

var _ drivers.Sink = (*Sink)(nil)

// Emit records s.
func (s *Sink) Emit(smp drivers.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.late++
		return
	}
	s.samples = append(s.samples, smp)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Close makes further Emit calls late.
func (s *Sink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// Late returns the number of Emit calls after Close.
func (s *Sink) Late() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.late
}

// Samples returns a copy of the recorded samples.
func (s *Sink) Samples() []drivers.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]drivers.Sample(nil), s.samples...)
}

// Len returns the number of recorded samples.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples)
}

// Wait blocks until some recorded sample satisfies match or timeout passes,
// and returns the first such sample.
func (s *Sink) Wait(timeout time.Duration, match func(drivers.Sample) bool) (drivers.Sample, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		s.mu.Lock()
		for _, smp := range s.samples[seen:] {
			if match(smp) {
				s.mu.Unlock()
				return smp, true
			}
		}
		seen = len(s.samples)
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return drivers.Sample{}, false
		}
	}
}

// Named returns a match function for Wait selecting samples by name.
func Named(name string) func(drivers.Sample) bool {
	return func(s drivers.Sample) bool { return s.Name == name }
}

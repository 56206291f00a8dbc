// Package signals keeps the latest value of every vehicle signal the drivers
// report, with the time it was last seen, for the command engine's
// interlocks and feedback checks, the shadow and the status view.
package signals

import (
	"sort"
	"sync"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// Store is a concurrency-safe latest-value table. The zero value is not
// usable; call New.
type Store struct {
	mu      sync.Mutex
	latest  map[string]drivers.Sample // guarded by mu
	changed chan struct{}             // guarded by mu; closed on the next Set after a Changed call
	watched bool                      // guarded by mu; someone holds changed
}

// New returns an empty store.
func New() *Store {
	return &Store{latest: map[string]drivers.Sample{}, changed: make(chan struct{})}
}

// Set records s as the latest value of s.Name and wakes waiters.
func (st *Store) Set(s drivers.Sample) {
	st.mu.Lock()
	st.latest[s.Name] = s
	if st.watched {
		close(st.changed)
		st.changed = make(chan struct{})
		st.watched = false
	}
	st.mu.Unlock()
}

// Latest returns the latest sample of name.
func (st *Store) Latest(name string) (drivers.Sample, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.latest[name]
	return s, ok
}

// Changed returns a channel closed at the next Set (of any signal).
func (st *Store) Changed() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.watched = true
	return st.changed
}

// Snapshot returns a copy of every latest sample, sorted by name.
func (st *Store) Snapshot() []drivers.Sample {
	st.mu.Lock()
	out := make([]drivers.Sample, 0, len(st.latest))
	for _, s := range st.latest {
		out = append(out, s)
	}
	st.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

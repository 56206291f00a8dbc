// Package health is the agent's liveness and degradation registry, in the
// spirit of tailscale's health package.
//
// Long-running loops register with Tracker.Loop and call Loop.Beat each time
// round (at least a few times per watchdog interval, also while idle). A
// critical loop that stops beating makes Tracker.Healthy false, which makes
// agent/sdnotify withhold its systemd watchdog pings: a deadlocked pipeline
// gets restarted, not only a dead process. Components that work but are
// impaired (MQTT offline, buffer dropping records) report SetDegraded; that
// is shown to operators but does not fail the watchdog.
package health

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// A Tracker records loop heartbeats and degraded components. It is safe for
// concurrent use. The zero value is not usable; call New.
type Tracker struct {
	now func() time.Time

	mu       sync.Mutex
	loops    map[string]*Loop       // guarded by mu
	degraded map[string]Degradation // guarded by mu
}

// New returns an empty Tracker. now is the clock; nil means time.Now.
func New(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{
		now:      now,
		loops:    make(map[string]*Loop),
		degraded: make(map[string]Degradation),
	}
}

// A Loop is one registered loop's heartbeat handle. Its methods are safe for
// concurrent use and cheap enough to call on every iteration.
type Loop struct {
	t        *Tracker
	name     string
	critical bool

	// lastBeat is guarded by t.mu: beats are at most a few per second per
	// loop, so a shared mutex is simpler than atomics and costs nothing.
	lastBeat time.Time
	idle     bool // waiting for input since lastBeat (Idle)
	closed   bool
}

// Loop registers the loop name (e.g. "driver/can0", "batcher", "uplink",
// "command") and returns its handle. A critical loop is considered hung when
// it has not beaten within the maxAge given to Healthy; a non-critical loop
// is only reported. Registration counts as the first beat. Registering a name
// again (a restarted loop) returns a fresh handle that replaces the old one.
func (t *Tracker) Loop(name string, critical bool) *Loop {
	l := &Loop{t: t, name: name, critical: critical}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.loops[name]; ok {
		old.closed = true
	}
	l.lastBeat = t.now()
	t.loops[name] = l
	return l
}

// Beat records that the loop is alive (and, after Idle, busy again).
func (l *Loop) Beat() {
	l.t.mu.Lock()
	if !l.closed {
		l.lastBeat, l.idle = l.t.now(), false
	}
	l.t.mu.Unlock()
}

// Idle records that the loop is alive and about to block waiting for input
// (a channel receive with no timer armed): a waiting loop is not hung, so
// it needs no periodic wake-up to keep beating. Call it right before the
// blocking wait, with nothing else left to do; the next Beat (first thing
// after the wait) ends it. A loop that hangs while working has called Beat
// since and so is still caught.
func (l *Loop) Idle() {
	l.t.mu.Lock()
	if !l.closed {
		l.lastBeat, l.idle = l.t.now(), true
	}
	l.t.mu.Unlock()
}

// Close unregisters the loop; call it when the loop returns on purpose
// (shutdown, feature disabled), so that its silence is not taken for a hang.
// Close is idempotent and a closed loop's Beat does nothing.
func (l *Loop) Close() {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.t.loops[l.name] == l {
		delete(l.t.loops, l.name)
	}
}

// Name returns the name the loop was registered with.
func (l *Loop) Name() string { return l.name }

// SetDegraded marks component as working but impaired, with a short
// human-readable reason ("mqtt disconnected", "buffer full: dropping oldest").
// Setting the same reason again keeps the original Since time.
func (t *Tracker) SetDegraded(component, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.degraded[component]; ok && d.Reason == reason {
		return
	}
	t.degraded[component] = Degradation{Component: component, Reason: reason, Since: t.now()}
}

// Clear removes component's degradation, if any.
func (t *Tracker) Clear(component string) {
	t.mu.Lock()
	delete(t.degraded, component)
	t.mu.Unlock()
}

// Healthy reports whether every critical loop has beaten within maxAge or
// waits idle for input (Loop.Idle). why
// is a one-line explanation: the hung loops when ok is false; otherwise the
// degraded components, or "ok" when there are none.
func (t *Tracker) Healthy(maxAge time.Duration) (ok bool, why string) {
	s := t.Snapshot()
	var hung []string
	for _, l := range s.Loops {
		if l.Critical && !l.Idle && l.Age > maxAge {
			hung = append(hung, fmt.Sprintf("%s silent for %s", l.Name, l.Age.Round(time.Second)))
		}
	}
	if len(hung) > 0 {
		return false, "hung: " + strings.Join(hung, ", ")
	}
	if len(s.Degraded) > 0 {
		parts := make([]string, len(s.Degraded))
		for i, d := range s.Degraded {
			parts[i] = d.Component + ": " + d.Reason
		}
		return true, "degraded: " + strings.Join(parts, "; ")
	}
	return true, "ok"
}

// Snapshot is a point-in-time copy of a Tracker's state.
type Snapshot struct {
	// Taken is when the snapshot was taken (by the Tracker's clock).
	Taken time.Time `json:"taken"`
	// Loops are the registered loops, sorted by name.
	Loops []LoopState `json:"loops"`
	// Degraded are the degraded components, sorted by component.
	Degraded []Degradation `json:"degraded"`
}

// LoopState is one loop in a Snapshot.
type LoopState struct {
	Name     string        `json:"name"`
	Critical bool          `json:"critical"`
	LastBeat time.Time     `json:"last_beat"`
	Age      time.Duration `json:"age_ns"` // Taken - LastBeat
	// Idle: the loop waits for input since LastBeat (Loop.Idle).
	Idle bool `json:"idle,omitempty"`
}

// Degradation is one degraded component.
type Degradation struct {
	Component string    `json:"component"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// Snapshot returns a copy of the current state.
func (t *Tracker) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	s := Snapshot{
		Taken:    now,
		Loops:    make([]LoopState, 0, len(t.loops)),
		Degraded: make([]Degradation, 0, len(t.degraded)),
	}
	for _, l := range t.loops {
		s.Loops = append(s.Loops, LoopState{
			Name: l.name, Critical: l.critical, LastBeat: l.lastBeat, Age: now.Sub(l.lastBeat), Idle: l.idle,
		})
	}
	for _, d := range t.degraded {
		s.Degraded = append(s.Degraded, d)
	}
	sort.Slice(s.Loops, func(i, j int) bool { return s.Loops[i].Name < s.Loops[j].Name })
	sort.Slice(s.Degraded, func(i, j int) bool { return s.Degraded[i].Component < s.Degraded[j].Component })
	return s
}

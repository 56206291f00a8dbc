package profile

import (
	"fmt"
	"strings"
	"time"
)

// Ignition is a three-valued ignition state.
type Ignition int

// Ignition states.
const (
	IgnitionUnknown Ignition = iota
	IgnitionOff
	IgnitionOn
)

// Inputs are the live values the rules look at, taken at Now.
type Inputs struct {
	Now      time.Time
	Ignition Ignition
	// OffSince is when the ignition was first seen off (valid while off).
	OffSince  time.Time
	Speed     float64
	SpeedOK   bool
	Battery   float64
	BatteryOK bool
	// LastBus is the last bus activity (or when the engine started).
	LastBus time.Time
}

// holds reports whether every condition of r holds at in.Now, and the
// earliest later time a time condition (off_for, bus_silent_for) that
// does not hold yet will (zero if none).
func (r *Rule) holds(in Inputs) (bool, time.Time) {
	ok := true
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	switch r.Ignition {
	case "on":
		ok = ok && in.Ignition == IgnitionOn
	case "off":
		ok = ok && in.Ignition == IgnitionOff
	}
	if r.OffFor > 0 {
		if in.Ignition != IgnitionOff {
			ok = false
		} else if at := in.OffSince.Add(r.OffFor.Std()); in.Now.Before(at) {
			ok = false
			later(at)
		}
	}
	if r.BusSilentFor > 0 {
		if at := in.LastBus.Add(r.BusSilentFor.Std()); in.Now.Before(at) {
			ok = false
			later(at)
		}
	}
	if r.SpeedAbove != nil {
		ok = ok && in.SpeedOK && in.Speed > *r.SpeedAbove
	}
	if r.SpeedBelow != nil {
		ok = ok && in.SpeedOK && in.Speed < *r.SpeedBelow
	}
	if r.BatteryBelow != nil {
		ok = ok && in.BatteryOK && in.Battery < *r.BatteryBelow
	}
	if r.BatteryAbove != nil {
		ok = ok && in.BatteryOK && in.Battery > *r.BatteryAbove
	}
	return ok, next
}

// describe says why r matched, with the values seen.
func (r *Rule) describe(i int, in Inputs) string {
	var parts []string
	if r.Ignition != "" {
		parts = append(parts, "ignition "+r.Ignition)
	}
	if r.OffFor > 0 {
		parts = append(parts, fmt.Sprintf("off for %v ≥ %v", in.Now.Sub(in.OffSince).Round(time.Second), r.OffFor.Std()))
	}
	if r.BusSilentFor > 0 {
		parts = append(parts, fmt.Sprintf("bus silent for %v ≥ %v", in.Now.Sub(in.LastBus).Round(time.Second), r.BusSilentFor.Std()))
	}
	if r.SpeedAbove != nil {
		parts = append(parts, fmt.Sprintf("speed %.1f > %g km/h", in.Speed, *r.SpeedAbove))
	}
	if r.SpeedBelow != nil {
		parts = append(parts, fmt.Sprintf("speed %.1f < %g km/h", in.Speed, *r.SpeedBelow))
	}
	if r.BatteryBelow != nil {
		parts = append(parts, fmt.Sprintf("battery %.2f < %g V", in.Battery, *r.BatteryBelow))
	}
	if r.BatteryAbove != nil {
		parts = append(parts, fmt.Sprintf("battery %.2f > %g V", in.Battery, *r.BatteryAbove))
	}
	if r.For > 0 {
		parts = append(parts, fmt.Sprintf("held %v", r.For.Std()))
	}
	if len(parts) == 0 {
		parts = append(parts, "always")
	}
	return fmt.Sprintf("rule %d: %s", i+1, strings.Join(parts, ", "))
}

// selector applies the rules with entry hysteresis (a rule's `for`) and
// the minimum dwell. It is pure: the caller supplies the time.
type selector struct {
	rules    []Rule
	minDwell time.Duration
	current  string
	since    time.Time   // when current was entered
	reason   string      // why current was chosen
	held     []time.Time // per rule: since when its conditions hold (zero: not)
}

func newSelector(c *Config, now time.Time) *selector {
	return &selector{rules: c.Rules, minDwell: c.MinDwell.Std(), current: c.Initial, since: now,
		reason: "initial profile (no rule matched yet)", held: make([]time.Time, len(c.Rules))}
}

// step evaluates the rules at in.Now. It reports whether the profile
// changed and the next time the outcome may change without a new input
// (zero: only a new input can change it).
func (s *selector) step(in Inputs) (changed bool, next time.Time) {
	later := func(t time.Time) {
		if !t.IsZero() && t.After(in.Now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	target, why := "", ""
	for i := range s.rules {
		r := &s.rules[i]
		ok, at := r.holds(in)
		later(at)
		if !ok {
			s.held[i] = time.Time{}
			continue
		}
		if s.held[i].IsZero() {
			s.held[i] = in.Now
		}
		if until := s.held[i].Add(r.For.Std()); in.Now.Before(until) {
			later(until)
			continue
		}
		if target == "" {
			target, why = r.Profile, r.describe(i, in)
		}
	}
	if target == "" || target == s.current {
		return false, next
	}
	if until := s.since.Add(s.minDwell); in.Now.Before(until) {
		later(until)
		return false, next
	}
	s.current, s.since, s.reason = target, in.Now, why
	return true, next
}

package canmap

import (
	"path"
	"time"
)

// policy is a target's sampling policy.
type policy struct {
	deadband    float64
	deadbandPct float64
	minInterval time.Duration
	heartbeat   time.Duration
}

// Override changes the sampling policy of the signals whose name matches
// Match (a name, or a path.Match glob such as "Vehicle.*" or "*") at run
// time, e.g. for a vehicle-state profile. Nil fields keep the configured
// value.
type Override struct {
	Match       string
	Deadband    *float64
	DeadbandPct *float64
	MinInterval *time.Duration
	Heartbeat   *time.Duration
	// Keep pins the matching signals to their configured policy whatever
	// the other overrides say (e.g. the inputs of command interlocks,
	// which must stay fresh).
	Keep bool
}

// SetOverrides replaces the overrides in effect: every signal gets its
// configured policy with the overrides that match its name applied in
// order (a later one wins field by field). Nil or empty restores the
// configured policies. It is safe to call concurrently with Decode; the
// change applies from the next frame, and a signal keeps its last
// reported value (a longer heartbeat counts from the last report).
func (d *Decoder) SetOverrides(ov []Override) {
	for name, t := range d.byName {
		p := t.base
		hit, keep := false, false
		for _, o := range ov {
			if ok, _ := path.Match(o.Match, name); !ok && o.Match != name {
				continue
			}
			hit, keep = true, keep || o.Keep
			if o.Deadband != nil {
				p.deadband = *o.Deadband
			}
			if o.DeadbandPct != nil {
				p.deadbandPct = *o.DeadbandPct
			}
			if o.MinInterval != nil {
				p.minInterval = *o.MinInterval
			}
			if o.Heartbeat != nil {
				p.heartbeat = *o.Heartbeat
			}
		}
		if !hit || keep {
			t.pol.Store(&t.base)
			continue
		}
		t.pol.Store(&p)
	}
}

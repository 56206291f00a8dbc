// Package canmap turns CAN frames into named samples: it decodes each frame
// through a DBC database, maps the configured DBC signals
// ("MESSAGE.Signal") to stable, VSS-style names, applies each signal's
// sampling policy (on change, absolute/relative deadband, minimum interval,
// heartbeat) and records when every mapped signal was last seen, for
// staleness checks.
//
// It is shared by the drivers that carry CAN traffic (the live "can" driver
// and the "candump" replay driver), so both decode and sample identically.
// Decoder.Decode is the per-frame path: it does not allocate and logs
// nothing.
package canmap

import (
	"errors"
	"fmt"
	"math"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Duration is a time.Duration written in config as a Go duration string
// ("200ms", "1m").
type Duration = units.Duration

// Signal maps one DBC signal to a stable name with a sampling policy. It is
// the `[[driver.signal]]` table of the CAN drivers' config.
//
// A value is reported the first time it is seen, then whenever it differs
// from the last reported value by more than Deadband (absolute) and more
// than DeadbandPct percent of the last reported value, but never sooner
// than MinInterval after the previous report. When Heartbeat is set, the
// value is reported again on the first frame after Heartbeat has passed
// without a report, changed or not (a heartbeat re-asserts a live value; a
// signal whose frames stop gets no heartbeat and goes stale).
type Signal struct {
	// Name is the stable name samples carry, e.g. "Vehicle.Speed".
	Name string `toml:"name"`
	// Source is the DBC signal, "MESSAGE.Signal".
	Source string `toml:"source"`
	// Deadband is the absolute change (physical units) to exceed; 0
	// reports every change.
	Deadband float64 `toml:"deadband"`
	// DeadbandPct is the relative change, in percent of the last reported
	// value, to exceed; 0 disables it.
	DeadbandPct float64 `toml:"deadband_pct"`
	// MinInterval is the shortest time between two reports; 0 disables it.
	MinInterval Duration `toml:"min_interval"`
	// Heartbeat re-reports an unchanged value after this long; 0 disables
	// it.
	Heartbeat Duration `toml:"heartbeat"`
}

// Unmapped policies: what happens to DBC signals no Signal entry names.
const (
	// UnmappedDrop ignores them (the default).
	UnmappedDrop = "drop"
	// UnmappedEmit reports them on change under the name "MESSAGE.Signal".
	UnmappedEmit = "emit"
)

// ErrConfig classifies invalid signal-map configuration.
var ErrConfig = errors.New("invalid signal map")

// validate checks the policy fields of s (not its source, which needs the
// DBC).
func (s *Signal) validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("%w: signal %q: name is empty", ErrConfig, s.Source)
	case s.Source == "":
		return fmt.Errorf("%w: signal %q: source is empty (want MESSAGE.Signal)", ErrConfig, s.Name)
	case s.Deadband < 0 || math.IsNaN(s.Deadband) || math.IsInf(s.Deadband, 0):
		return fmt.Errorf("%w: signal %q: deadband %v must be a finite number >= 0", ErrConfig, s.Name, s.Deadband)
	case s.DeadbandPct < 0 || math.IsNaN(s.DeadbandPct) || math.IsInf(s.DeadbandPct, 0):
		return fmt.Errorf("%w: signal %q: deadband_pct %v must be a finite number >= 0", ErrConfig, s.Name, s.DeadbandPct)
	case s.MinInterval < 0:
		return fmt.Errorf("%w: signal %q: min_interval %v is negative", ErrConfig, s.Name, s.MinInterval.Std())
	case s.Heartbeat < 0:
		return fmt.Errorf("%w: signal %q: heartbeat %v is negative", ErrConfig, s.Name, s.Heartbeat.Std())
	case s.Heartbeat > 0 && s.Heartbeat < s.MinInterval:
		return fmt.Errorf("%w: signal %q: heartbeat %v is shorter than min_interval %v",
			ErrConfig, s.Name, s.Heartbeat.Std(), s.MinInterval.Std())
	}
	return nil
}

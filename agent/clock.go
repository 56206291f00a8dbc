package agent

import "time"

// gnssTimeSignal is emitted by the GNSS driver with a valid fix time.
const gnssTimeSignal = "Vehicle.CurrentLocation.Timestamp"

// clockTrusted reports whether the wall clock can be trusted for command
// validity checks: the kernel says it is synchronised, or a GNSS receiver
// reported a valid fix time within the last 10 minutes that agrees with
// the system clock to within 2 s.
func (a *Agent) clockTrusted() bool {
	if kernelClockSynced() {
		return true
	}
	s, ok := a.signals.Latest(gnssTimeSignal)
	if !ok {
		return false
	}
	now := a.now()
	if now.Sub(s.Time) > 10*time.Minute {
		return false
	}
	gnss := time.UnixMilli(int64(s.Value))
	skew := s.Time.Sub(gnss)
	return skew < 2*time.Second && skew > -2*time.Second
}

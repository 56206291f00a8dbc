package agent

import (
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// gnssTimeSignal is emitted by the GNSS driver with a valid fix: the
// receiver's UTC time in Unix seconds.
const gnssTimeSignal = "Vehicle.CurrentLocation.Timestamp"

// clockTrusted reports whether the wall clock can be trusted for command
// validity checks: the kernel says it is synchronised (NTP, chrony,
// timesyncd, PTP), or a GNSS receiver recently reported a fix time that
// agrees with the system clock.
func (a *Agent) clockTrusted() bool {
	if kernelClockSynced() {
		return true
	}
	s, ok := a.signals.Latest(gnssTimeSignal)
	return ok && gnssAgrees(s, a.now())
}

// gnssAgrees reports whether GNSS time sample s is at most 10 minutes old
// and was within 2 s of the system clock when it was taken.
func gnssAgrees(s drivers.Sample, now time.Time) bool {
	if now.Sub(s.Time) > 10*time.Minute || s.Time.After(now.Add(time.Minute)) {
		return false
	}
	gnss := time.Unix(0, int64(s.Value*1e9))
	skew := s.Time.Sub(gnss)
	return skew < 2*time.Second && skew > -2*time.Second
}

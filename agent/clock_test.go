package agent

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

func TestGNSSAgrees(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sec := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	tests := []struct {
		name string
		s    drivers.Sample
		want bool
	}{
		{"fresh and agreeing", drivers.Sample{Time: now.Add(-time.Second), Value: sec(now.Add(-time.Second + 300*time.Millisecond))}, true},
		{"clock 1h behind GNSS", drivers.Sample{Time: now, Value: sec(now.Add(time.Hour))}, false},
		{"stale fix", drivers.Sample{Time: now.Add(-11 * time.Minute), Value: sec(now.Add(-11 * time.Minute))}, false},
		{"sample from the future", drivers.Sample{Time: now.Add(2 * time.Minute), Value: sec(now.Add(2 * time.Minute))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := gnssAgrees(tt.s, now); got != tt.want {
				t.Errorf("gnssAgrees = %v, want %v", got, tt.want)
			}
		})
	}
}

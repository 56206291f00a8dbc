package obd

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

// TestSampleConfig decodes sample.toml strictly, as the agent does.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	drivertest.DecodeSample(t, "sample.toml", Kind, d)
	if len(d.polls) != 4 || d.polls[3].pid != 0xA6 || d.polls[3].interval != time.Minute || d.P2.Std() != 50*time.Millisecond {
		t.Errorf("decoded polls %+v, p2 %v", d.polls, d.P2.Std())
	}
}

package can

import (
	"testing"

	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

// TestSampleConfig decodes sample.toml strictly into the driver, as the
// agent does, and Inits it.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	drivertest.DecodeSample(t, "sample.toml", Kind, d)
	if len(d.Signals) != 3 || d.Signals[0].MinInterval.Std() == 0 {
		t.Errorf("decoded signals %+v, want 3 with durations", d.Signals)
	}
}

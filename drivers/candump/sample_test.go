package candump

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
	if len(d.Signals) != 2 || d.Speed != 1 || !d.Loop {
		t.Errorf("decoded signals %+v, want the 2 of sample.toml", d.Signals)
	}
}

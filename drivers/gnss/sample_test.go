package gnss

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
)

// TestSampleConfig decodes sample.toml strictly into the driver, as the
// agent does, and Inits it.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	drivertest.DecodeSample(t, "sample.toml", "gnss", d)
	if d.Device != "/dev/ttyUSB0" || d.MaxHDOP != 5 || d.minMode != Mode2D {
		t.Errorf("decoded driver = %+v", d)
	}
}

// TestConformance runs the driver contract suite against a simulated
// receiver on a pseudo-terminal.
func TestConformance(t *testing.T) {
	factory := func(p drivers.Params) drivers.Driver { return New(p) }
	drivertest.Run(t, factory, func(t *testing.T, d drivers.Driver) {
		master, slave, err := nmeasim.OpenPTY()
		if err != nil {
			t.Skipf("no pty: %v", err)
		}
		d.(*Driver).Device = slave
		ctx, cancel := context.WithCancel(context.Background())
		g := nmeasim.Generator{V: nmeasim.Vehicle{Time: time.Now(), Lat: 48.1, Lon: 11.5, Alt: 520, Speed: 8, Sats: 8, HDOP: 0.9}}
		done := make(chan struct{})
		go func() { // stops on cancel or when the master is closed
			defer close(done)
			_ = g.Run(ctx, master, 50*time.Millisecond)
		}()
		t.Cleanup(func() {
			cancel()
			master.Close()
			<-done
		})
	})
}

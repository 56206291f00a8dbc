package gnss

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
)

// TestSampleConfig decodes sample.toml strictly into the driver, as the
// agent does, and Inits it.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Driver []map[string]any `toml:"driver"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Driver) != 1 || doc.Driver[0]["kind"] != "gnss" {
		t.Fatalf("sample.toml has %v, want one [[driver]] of kind gnss", doc.Driver)
	}
	delete(doc.Driver[0], "name")
	delete(doc.Driver[0], "kind")
	opts, err := toml.Marshal(doc.Driver[0])
	if err != nil {
		t.Fatal(err)
	}
	d := New(drivertest.Params(t))
	dec := toml.NewDecoder(bytes.NewReader(opts))
	dec.DisallowUnknownFields()
	if err := dec.Decode(d); err != nil {
		t.Fatalf("decode sample.toml: %v", err)
	}
	if err := d.Init(); err != nil {
		t.Fatalf("Init() with sample.toml = %v", err)
	}
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

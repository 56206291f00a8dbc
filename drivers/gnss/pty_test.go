package gnss

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
)

// TestPTYCapturesMatchDecoder sends every local gpsd capture through a
// pseudo-terminal to a running driver and checks that the positions it
// emits are exactly the decoder's fixes (which TestMatchesGpsd* compare
// with gpsd): the serial path loses and reorders nothing.
func TestPTYCapturesMatchDecoder(t *testing.T) {
	caps := gpsdCaptures(t, filepath.Join("testdata", "gpsd"))
	for _, c := range caps {
		t.Run(filepath.Base(c), func(t *testing.T) {
			data, err := os.ReadFile(c)
			if err != nil {
				t.Fatal(err)
			}
			var want [][2]float64
			var fixes []Fix
			if _, _, err := DecodeAll(bytes.NewReader(data), func(f Fix) { fixes = append(fixes, f) }); err != nil {
				t.Fatal(err)
			}
			// The driver emits an epoch when the next one starts: the last
			// fix of a capture stays pending.
			for _, f := range fixes[:len(fixes)-1] {
				if f.HasPos && f.Mode >= Mode2D {
					want = append(want, [2]float64{f.Lat, f.Lon})
				}
			}
			got := runCaptureOverPTY(t, data, len(want))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("positions over the pty differ from the decoder (-want +got):\n%s", diff)
			}
		})
	}
}

// runCaptureOverPTY runs the driver on a pty fed with data and returns
// the (lat, lon) pairs it emits, waiting until it has n of them.
func runCaptureOverPTY(t *testing.T, data []byte, n int) [][2]float64 {
	t.Helper()
	master, slave, err := nmeasim.OpenPTY()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	d := New(drivers.Params{Name: "gnss"})
	d.Device = slave
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, c) }()
	go func() { _, _ = master.Write(data) }() // ends when master closes
	var got [][2]float64
	var lat float64
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case s := <-c.ch:
			switch s.Name {
			case SignalLatitude:
				lat = s.Value
			case SignalLongitude:
				got = append(got, [2]float64{lat, s.Value})
			}
		case <-timeout:
			t.Errorf("got %d of %d positions within 30s", len(got), n)
			n = 0
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() = %v", err)
	}
	return got
}

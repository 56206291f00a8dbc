//go:build vcan && linux

// Real-kernel test: it needs vcan0 up, as in the qemu guest that
// scripts/vmtest.sh boots (docs/vmtest.md).

package can

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// TestVcanVehicleRoundTrip runs the simulated vehicle on one vcan0 socket
// and the can driver on another: the driver decodes the vehicle's frames
// and a lock request it transmits is answered by the body controller.
func TestVcanVehicleRoundTrip(t *testing.T) {
	peer, err := socketcan.Open("vcan0", socketcan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	db, _, err := dbc.Load(vehicleDBC)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sim.New(sim.Options{Bus: peer, DB: db, BodyDelay: 50 * time.Millisecond,
		Knobs: sim.Knobs{Hold: sim.HoldMoving, Speed: 50}})
	if err != nil {
		t.Fatal(err)
	}
	d := New(drivertest.Params(t))
	d.Interface, d.DBC, d.Signals = "vcan0", vehicleDBC, vehicleSignals()
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		if err := v.Run(ctx); err != nil {
			t.Errorf("vehicle Run() = %v", err)
		}
	})
	sink := &drivertest.Sink{}
	wg.Go(func() {
		if err := d.Run(ctx, sink); err != nil {
			t.Errorf("driver Run() = %v", err)
		}
	})
	speed, ok := sink.Wait(20*time.Second, func(s drivers.Sample) bool { return s.Name == "Vehicle.Speed" && s.Value == 50 })
	if !ok {
		t.Fatal("no Vehicle.Speed = 50 decoded from vcan0")
	}
	if age := time.Since(speed.Time); age < 0 || age > 10*time.Second {
		t.Errorf("sample time %v is not a kernel receive time near now", speed.Time)
	}
	if err := d.Transmit(ctx, "BODY_COMMAND", map[string]float64{"LockRequest": 1, "CommandCounter": 1}); err != nil {
		t.Fatal(err)
	}
	locked := func(s drivers.Sample) bool {
		return s.Name == "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked" && s.Label == "LOCKED"
	}
	if _, ok := sink.Wait(20*time.Second, locked); !ok {
		t.Fatalf("body controller never confirmed LOCKED over vcan0 (vehicle saw %d commands)", v.State().Commands)
	}
	if st := d.Stats(); st.Frames == 0 || st.TxFrames != 1 || st.Drops != 0 {
		t.Errorf("Stats() = %+v, want frames, 1 tx frame, no drops", st)
	}
}

package candump

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

func signals() []canmap.Signal {
	return []canmap.Signal{
		{Name: "Vehicle.Speed", Source: "POWERTRAIN.VehicleSpeed"},
		{Name: "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked", Source: "BODY_STATUS.DoorLockState"},
		{Name: "Vehicle.LowVoltageBattery.CurrentVoltage", Source: "BATTERY.BatteryVoltage"},
	}
}

func configure(t *testing.T, d drivers.Driver) {
	cd := d.(*Driver)
	cd.File = "testdata/drive.log"
	cd.DBC = "../../configs/vehicle.dbc"
	cd.Loop = true
	cd.Speed = 4
	cd.Signals = signals()
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(p drivers.Params) drivers.Driver { return New(p) }, configure)
}

func TestRegistered(t *testing.T) {
	if _, ok := drivers.Lookup(Kind); !ok {
		t.Fatal("kind candump is not registered")
	}
}

func TestReplayDecodes(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	configure(t, d)
	d.Loop, d.Speed, d.Timestamps, d.Interface = false, 0, TimeOriginal, "vcan0"
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	if _, ok := sink.Wait(10*time.Second, drivertest.Named("Vehicle.LowVoltageBattery.CurrentVoltage")); !ok {
		t.Fatal("replay never reached the battery frame")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() = %v", err)
	}
	type got struct {
		Name  string
		Value float64
		Label string
		MS    int64
	}
	var all []got
	for _, s := range sink.Samples() {
		all = append(all, got{s.Name, s.Value, s.Label, s.Time.Sub(time.Unix(1700000000, 0)).Milliseconds()})
	}
	want := []got{
		{"Vehicle.Speed", 0, "", 0},
		{"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked", 0, "UNLOCKED", 20},
		{"Vehicle.Speed", 10, "", 40},
		{"Vehicle.Speed", 50, "", 100}, // 655.35 km/h on can1 is filtered out
		{"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked", 1, "LOCKED", 120},
		{"Vehicle.LowVoltageBattery.CurrentVoltage", 12.6, "", 160},
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if st := d.Stats(); st.UnknownIDs != 1 || st.Frames != 7 {
		t.Errorf("Stats() = %+v, want 7 frames with 1 unknown id", st)
	}
}

func TestReplaySpeedFactor(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	configure(t, d)
	d.Loop, d.Speed = false, 0.5 // 160 ms of log take 320 ms
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go func() { _ = d.Run(ctx, sink) }()
	s, ok := sink.Wait(10*time.Second, drivertest.Named("Vehicle.LowVoltageBattery.CurrentVoltage"))
	if !ok {
		t.Fatal("replay never reached the battery frame")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("half-speed replay of 160ms took %v, want >= 320ms", took)
	}
	if s.Time.Before(start) {
		t.Errorf("replay timestamp %v is before the replay started", s.Time)
	}
}

func TestInitAndRunErrors(t *testing.T) {
	t.Parallel()
	for name, mod := range map[string]func(*Driver){
		"no file":        func(d *Driver) { d.File = "" },
		"negative speed": func(d *Driver) { d.Speed = -1 },
		"bad timestamps": func(d *Driver) { d.Timestamps = "wall" },
		"no dbc":         func(d *Driver) { d.DBC = "" },
		"unknown signal": func(d *Driver) { d.Signals = []canmap.Signal{{Name: "x", Source: "POWERTRAIN.Nope"}} },
	} {
		d := New(drivertest.Params(t))
		configure(t, d)
		mod(d)
		if err := d.Init(); err == nil {
			t.Errorf("%s: Init() = nil", name)
		}
	}
	d := New(drivertest.Params(t))
	configure(t, d)
	d.File = "testdata/missing.log"
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background(), &drivertest.Sink{}); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Run() on a missing file = %v, want ErrNotReady", err)
	}
}

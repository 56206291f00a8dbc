package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/obd"
)

// TestOBDEndToEnd runs tcu-sim with its OBD-II ECU (29-bit, with a VIN of
// our choosing) and the obd driver against it over the served virtual bus.
func TestOBDEndToEnd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vbus.sock")
	const vin = "1G1JC5444R7252367"
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--vbus", sock, "--scenario", "highway", "--hold", "moving", "--speed", "88",
			"--obd", "--obd-29bit", "--vin", vin}, &logs)
	}()
	defer func() {
		cancel()
		if c := <-code; c != 0 {
			t.Errorf("run() = %d\n%s", c, logs.String())
		}
	}()
	d := obd.New(drivers.Params{Name: "obd"})
	d.Transport, d.Address, d.Addressing = obd.TransportVBus, sock, obd.Addr29
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	dctx, dcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(dctx, sink) }()
	defer func() {
		dcancel()
		if err := <-errc; err != nil {
			t.Errorf("obd Run() = %v", err)
		}
	}()
	if s, ok := sink.Wait(30*time.Second, drivertest.Named(obd.SignalVIN)); !ok || s.Label != vin {
		t.Fatalf("VIN sample = %+v, %v; want %s\n%s", s, ok, vin, logs.String())
	}
	match := func(s drivers.Sample) bool { return s.Name == "Vehicle.OBD.Speed" && s.Value == 88 }
	if _, ok := sink.Wait(30*time.Second, match); !ok {
		t.Errorf("no Vehicle.OBD.Speed of 88 km/h; stats %+v", d.Stats())
	}
	if _, ok := sink.Wait(30*time.Second, drivertest.Named("Vehicle.OBD.EngineSpeed")); !ok {
		t.Errorf("no engine speed; stats %+v", d.Stats())
	}
}

func TestOBDFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--obd-silent"}, {"--obd", "--vin", "SHORT"}, {"--obd", "--obd-delay", "-1s"}} {
		var logs syncBuffer
		if c := run(context.Background(), args, &logs); c != 2 {
			t.Errorf("run(%v) = %d, want 2", args, c)
		}
	}
}

package can

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

const vehicleDBC = "testdata/vehicle.dbc"

// bench is a served virtual bus plus an in-process endpoint for the test.
type bench struct {
	v    *canbus.Virtual
	ep   *canbus.Endpoint
	path string
	db   *dbc.Database
}

func newBench(t *testing.T) *bench {
	t.Helper()
	b := &bench{v: canbus.NewVirtual(), path: filepath.Join(t.TempDir(), "vbus.sock")}
	db, _, err := dbc.Load(vehicleDBC)
	if err != nil {
		t.Fatal(err)
	}
	b.db = db
	l, err := net.Listen("unix", b.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := canbus.Serve(ctx, l, b.v); err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	b.ep = b.v.Attach()
	t.Cleanup(func() {
		cancel()
		b.ep.Close()
		wg.Wait()
	})
	return b
}

// frame encodes a message of the vehicle DBC.
func (b *bench) frame(t *testing.T, msg string, sigs map[string]float64) canbus.Frame {
	t.Helper()
	m, ok := b.db.Message(msg)
	if !ok {
		t.Fatalf("no message %s", msg)
	}
	data, err := m.Encode(sigs)
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: m.ID, Extended: m.Extended}
	f.Len = uint8(copy(f.Data[:], data))
	return f
}

// traffic sends f every 2 ms until the test ends.
func (b *bench) traffic(t *testing.T, f canbus.Frame) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = b.ep.Send(ctx, f)
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func vehicleSignals() []canmap.Signal {
	return []canmap.Signal{
		{Name: "Vehicle.Speed", Source: "POWERTRAIN.VehicleSpeed"},
		{Name: "Vehicle.Powertrain.Transmission.SelectedGear", Source: "POWERTRAIN.Gear"},
		{Name: "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked", Source: "BODY_STATUS.DoorLockState"},
		{Name: "Vehicle.LowVoltageBattery.CurrentVoltage", Source: "BATTERY.BatteryVoltage"},
	}
}

func configure(b *bench) drivertest.Configure {
	return func(t *testing.T, d drivers.Driver) {
		cd := d.(*Driver)
		cd.Transport = TransportVBus
		cd.Address = b.path
		cd.DBC = vehicleDBC
		cd.Signals = vehicleSignals()
	}
}

func TestConformance(t *testing.T) {
	b := newBench(t)
	b.traffic(t, b.frame(t, "POWERTRAIN", map[string]float64{"VehicleSpeed": 50, "Gear": 3}))
	drivertest.Run(t, func(p drivers.Params) drivers.Driver { return New(p) }, configure(b))
}

func TestRegistered(t *testing.T) {
	f, ok := drivers.Lookup(Kind)
	if !ok {
		t.Fatal("kind can is not registered")
	}
	if _, ok := f(drivertest.Params(t)).(drivers.Transmitter); !ok {
		t.Error("can driver does not implement drivers.Transmitter")
	}
}

func TestInitErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(d *Driver)
		want string
	}{
		{"no dbc", func(d *Driver) { d.DBC = "" }, "dbc is not set"},
		{"missing dbc", func(d *Driver) { d.DBC = "nope.dbc" }, "nope.dbc"},
		{"unknown source", func(d *Driver) {
			d.Signals = append(d.Signals, canmap.Signal{Name: "X", Source: "BODY_STATUS.Nope"})
		}, `"BODY_STATUS.Nope"`},
		{"bad transport", func(d *Driver) { d.Transport = "udp" }, `transport "udp"`},
		{"vbus without address", func(d *Driver) { d.Transport = TransportVBus; d.Address = "" }, "needs address"},
		{"socketcan without interface", func(d *Driver) { d.Interface = "" }, "needs interface"},
		{"bad unmapped", func(d *Driver) { d.Unmapped = "keep" }, `unmapped "keep"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := New(drivertest.Params(t))
			d.DBC = vehicleDBC
			d.Signals = vehicleSignals()
			tt.mod(d)
			err := d.Init()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Init() = %v, want error mentioning %s", err, tt.want)
			}
		})
	}
}

func TestTransmitNotReadyWithoutBus(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	d.Transport, d.Address, d.DBC = TransportVBus, filepath.Join(t.TempDir(), "none.sock"), vehicleDBC
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if err := d.Transmit(context.Background(), "BODY_COMMAND", nil); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Transmit() before Run = %v, want ErrNotReady", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, &drivertest.Sink{}) }()
	waitFor(t, func() bool { return d.bus.Load() != nil })
	start := time.Now()
	if err := d.Transmit(context.Background(), "BODY_COMMAND", nil); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Transmit() without a bus = %v, want ErrNotReady", err)
	}
	if took := time.Since(start); took > TransmitWait+5*time.Second {
		t.Errorf("Transmit() without a bus took %v, want about TransmitWait (%v)", took, TransmitWait)
	}
	if st := d.Stats(); st.Connected != 0 || st.TxErrors != 2 {
		t.Errorf("Stats() = %+v, want not connected, 2 tx errors", st)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() = %v, want nil after cancel (an absent bus is retried inside Run)", err)
	}
}

func TestDecodeTransmitAndStats(t *testing.T) {
	b := newBench(t)
	d := New(drivertest.Params(t))
	configure(b)(t, d)
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sink := &drivertest.Sink{}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	waitFor(t, func() bool { return b.v.Endpoints() == 2 })

	send := func(f canbus.Frame) {
		if err := b.ep.Send(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	send(b.frame(t, "BODY_STATUS", map[string]float64{"DoorLockState": 1}))
	send(b.frame(t, "BATTERY", map[string]float64{"BatteryVoltage": 12.6}))
	send(canbus.Frame{ID: 0x7AB, Len: 8})
	send(canbus.Frame{ID: 0x120, Len: 2})

	lock, ok := sink.Wait(10*time.Second, drivertest.Named("Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"))
	if !ok || lock.Value != 1 || lock.Label != "LOCKED" || lock.Source != "drivertest" || lock.Time.IsZero() {
		t.Errorf("lock sample = %+v, %v; want value 1 LOCKED from drivertest", lock, ok)
	}
	volt, ok := sink.Wait(10*time.Second, drivertest.Named("Vehicle.LowVoltageBattery.CurrentVoltage"))
	if !ok || volt.Value < 12.599 || volt.Value > 12.601 {
		t.Errorf("battery sample = %+v, %v; want 12.6 V", volt, ok)
	}
	// Frames is counted before a frame is classified: wait for the result.
	waitFor(t, func() bool { st := d.Stats(); return st.UnknownIDs == 1 && st.DecodeErrors == 1 })
	if st := d.Stats(); st.Frames != 4 {
		t.Errorf("Stats() = %+v, want 4 frames", st)
	}
	if at, ok := d.LastSeen("Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"); !ok || at.IsZero() {
		t.Error("LastSeen has no time for a received signal")
	}

	txAt := time.Now()
	if err := d.Transmit(ctx, "BODY_COMMAND", map[string]float64{"LockRequest": 2, "CommandCounter": 7}); err != nil {
		t.Fatal(err)
	}
	got, err := b.ep.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := b.frame(t, "BODY_COMMAND", map[string]float64{"LockRequest": 2, "CommandCounter": 7})
	if got.ID != want.ID || got.Len != want.Len || got.Data != want.Data {
		t.Errorf("transmitted frame %03X#%X, want %03X#%X", got.ID, got.Payload(), want.ID, want.Payload())
	}
	if err := d.Transmit(ctx, "NOPE", nil); !errors.Is(err, dbc.ErrNotFound) {
		t.Errorf("Transmit(NOPE) = %v, want dbc.ErrNotFound", err)
	}
	if err := d.Transmit(ctx, "BODY_COMMAND", map[string]float64{"Bogus": 1}); !errors.Is(err, dbc.ErrUnknownSignal) {
		t.Errorf("Transmit(Bogus) = %v, want dbc.ErrUnknownSignal", err)
	}
	if st := d.Stats(); st.TxFrames != 1 {
		t.Errorf("TxFrames = %d, want 1", st.TxFrames)
	}
	if until := canbus.QuietUntil(canbus.BusKey(TransportVBus, b.path)); until.Before(txAt.Add(ActuationQuiet)) {
		t.Errorf("no quiet window for pollers after Transmit (until %v)", until)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTestdataDBCMatchesConfigs(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(vehicleDBC)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from configs/vehicle.dbc; copy it over", vehicleDBC)
	}
}

func TestRunSocketCANAbsentKeepsTrying(t *testing.T) {
	t.Parallel()
	d := New(drivertest.Params(t))
	d.Interface, d.DBC = "nosuchcan7", vehicleDBC
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, &drivertest.Sink{}) }()
	waitFor(t, func() bool { return d.bus.Load() != nil })
	if err := d.Transmit(ctx, "BODY_COMMAND", nil); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Transmit() on a missing interface = %v, want ErrNotReady", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run() on a missing interface = %v, want nil after cancel", err)
	}
}

// serveAt serves v on a unix socket at path until the returned stop is
// called.
func serveAt(t *testing.T, path string, v *canbus.Virtual) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- canbus.Serve(ctx, l, v) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestBusReturns is issue 13 item 6: the bus (tcu-sim) restarts; Run keeps
// running, reconnects within its capped backoff and a command sent right
// after the bus is back is transmitted, and frames are decoded again.
func TestBusReturns(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vbus.sock")
	v1 := canbus.NewVirtual()
	stop1 := serveAt(t, path, v1)
	d := New(drivertest.Params(t))
	d.Transport, d.Address, d.DBC = TransportVBus, path, vehicleDBC
	d.Signals = vehicleSignals()
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sink := &drivertest.Sink{}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	waitFor(t, func() bool { return v1.Endpoints() == 1 && d.Stats().Connected == 1 })

	// The bus goes away for a while (long enough for several failed dials).
	stop1()
	waitFor(t, func() bool { return d.Stats().Connected == 0 })
	waitFor(t, func() bool { up, why := d.Link(); return !up && why != "" })
	time.Sleep(3 * canbus.RedialMax)
	select {
	case err := <-errc:
		t.Fatalf("Run() returned %v when the bus went away; want it to reconnect", err)
	default:
	}

	// The bus comes back: a command issued at once must go out.
	v2 := canbus.NewVirtual()
	ep := v2.Attach()
	defer ep.Close()
	serveAt(t, path, v2)
	back := time.Now()
	if err := d.Transmit(ctx, "BODY_COMMAND", map[string]float64{"LockRequest": 1}); err != nil {
		t.Fatalf("Transmit() right after the bus returned = %v", err)
	}
	ready := time.Since(back)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if f, err := ep.Receive(rctx); err != nil || f.ID != 0x121 {
		t.Fatalf("frame on the returned bus = %03X, %v; want BODY_COMMAND (0x121)", f.ID, err)
	}
	t.Logf("transmitter ready %v after the bus returned", ready)
	// Decoding resumes too.
	m, _ := d.db.Message("BATTERY")
	data, err := m.Encode(map[string]float64{"BatteryVoltage": 13.1})
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: m.ID, Len: uint8(len(data))}
	copy(f.Data[:], data)
	if err := ep.Send(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, ok := sink.Wait(10*time.Second, drivertest.Named("Vehicle.LowVoltageBattery.CurrentVoltage")); !ok {
		t.Error("no sample decoded after the bus returned")
	}
	if st := d.Stats(); st.Reconnects != 1 || st.Connected != 1 {
		t.Errorf("Stats() = %+v, want 1 reconnect, connected", st)
	}
	if up, why := d.Link(); !up {
		t.Errorf("Link() = down (%s) after the bus returned", why)
	}
}

// dropBus is a bus whose transport reports drops.
type dropBus struct {
	*canbus.Endpoint
	drops uint64
}

func (b *dropBus) Dropped() uint64 { return b.drops }

func TestStatsCountTransportDrops(t *testing.T) {
	t.Parallel()
	v := canbus.NewVirtual()
	d := New(drivertest.Params(t))
	d.Transport, d.DBC = TransportVBus, vehicleDBC
	d.Open = func(context.Context) (canbus.Bus, error) {
		return &dropBus{Endpoint: v.Attach(), drops: 5}, nil
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- d.Run(ctx, &drivertest.Sink{}) }()
		// The bus is attached inside Open, a moment before Run adopts it:
		// wait for its drops to show (they are never more than 5 per run).
		waitFor(t, func() bool { return v.Endpoints() == 1 && d.Stats().Drops >= uint64(5*run) })
		if got := d.Stats().Drops; got != uint64(5*run) {
			t.Errorf("Stats().Drops while running = %d, want %d", got, 5*run)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return v.Endpoints() == 0 })
	}
	if got := d.Stats().Drops; got != 10 {
		t.Errorf("Stats().Drops after two runs = %d, want 10 (kept across restarts)", got)
	}
}

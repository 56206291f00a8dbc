package obd

import (
	"context"
	"math"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a virtual bus served on a unix socket with a simulated ECU on it
// and a spy endpoint recording every frame.
type rig struct {
	v    *canbus.Virtual
	path string
	ecu  *sim.ECU
	spy  *canbus.Endpoint
	mu   sync.Mutex
	log  []canbus.Frame // guarded by mu
}

var parked = sim.State{Speed: 87, RPM: 2150, Ignition: sim.IgnitionOn, Fuel: 50, Battery: 14.1, Odometer: 12345.6, Ambient: 15}

func newRig(t *testing.T, extended bool, knobs sim.ECUKnobs) *rig {
	t.Helper()
	r := &rig{v: canbus.NewVirtual(), path: filepath.Join(t.TempDir(), "vbus.sock")}
	l, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = canbus.Serve(ctx, l, r.v) })
	ep := r.v.Attach()
	r.ecu, err = sim.NewECU(sim.ECUOptions{Bus: ep, State: func() sim.State { return parked }, Extended: extended, Knobs: knobs})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := r.ecu.Run(ctx); err != nil {
			t.Errorf("ECU Run() = %v", err)
		}
	})
	r.spy = r.v.Attach()
	wg.Go(func() {
		for {
			f, err := r.spy.Receive(ctx)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.log = append(r.log, f)
			r.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		cancel()
		ep.Close()
		r.spy.Close()
		wg.Wait()
	})
	return r
}

func (r *rig) frames() []canbus.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]canbus.Frame(nil), r.log...)
}

func (r *rig) driver(t *testing.T, mod func(d *Driver)) (*Driver, *drivertest.Sink, func()) {
	t.Helper()
	d := New(drivertest.Params(t))
	d.Transport, d.Address = TransportVBus, r.path
	if mod != nil {
		mod(d)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	return d, sink, func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
}

func TestPollsPIDsAndReadsVIN(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		extended bool
		bs       int
		stmin    time.Duration
	}{
		{"11-bit", false, 0, 0},
		{"29-bit", true, 0, 0},
		{"block size 1 stmin 2ms", false, 1, 2 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tt.extended, sim.ECUKnobs{})
			d, sink, stop := r.driver(t, func(d *Driver) {
				if tt.extended {
					d.Addressing = Addr29
				}
				d.BlockSize, d.STmin = tt.bs, canmap.Duration(tt.stmin)
				d.PIDs = append(append([]PIDConfig(nil), DefaultPIDs...), PIDConfig{PID: 0x5E}) // 0x5E: unsupported by the ECU
			})
			defer stop()
			vin, ok := sink.Wait(20*time.Second, drivertest.Named(SignalVIN))
			if !ok || vin.Label != sim.DefaultVIN {
				t.Fatalf("VIN sample = %+v, %v; want %s", vin, ok, sim.DefaultVIN)
			}
			if got := d.VIN(); got != sim.DefaultVIN {
				t.Errorf("VIN() = %q", got)
			}
			want := map[string]float64{
				"Vehicle.OBD.Speed":                87,
				"Vehicle.OBD.EngineSpeed":          2150,
				"Vehicle.OBD.CoolantTemperature":   90,
				"Vehicle.OBD.FuelLevel":            50.196,
				"Vehicle.OBD.ControlModuleVoltage": 14.1,
				"Vehicle.TraveledDistance":         12345.6,
			}
			for name, v := range want {
				s, ok := sink.Wait(20*time.Second, drivertest.Named(name))
				if !ok || math.Abs(s.Value-v) > 0.01 || s.Source != "drivertest" || s.Time.IsZero() {
					t.Errorf("%s = %+v, %v; want %v", name, s, ok, v)
				}
			}
			st := d.Stats()
			if st.Supported != 17 || st.Errors != 0 {
				t.Errorf("Stats() = %+v, want 17 supported PIDs (12 data PIDs and 5 range bitmaps), no errors", st)
			}
			for _, f := range r.frames() {
				if f.Extended != tt.extended || f.Len != 8 {
					t.Fatalf("frame %03X ext=%v len %d: want every frame 8 bytes, extended=%v", f.ID, f.Extended, f.Len, tt.extended)
				}
				if f.Data[0] == 0x01 && f.Data[1] == 0x01 && f.Data[2] == 0x5E {
					t.Error("polled PID 0x5E, which discovery said is unsupported")
				}
			}
		})
	}
}

// TestOneRequestInFlight checks on the wire that a request is never sent
// while the previous one is unanswered and younger than P2.
func TestOneRequestInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t, false, sim.ECUKnobs{})
	d, sink, stop := r.driver(t, func(d *Driver) {
		d.PIDs = []PIDConfig{{PID: 0x0D, Interval: canmap.Duration(time.Millisecond)}, {PID: 0x0C, Interval: canmap.Duration(time.Millisecond)}}
	})
	deadline := time.Now().Add(20 * time.Second)
	for d.Stats().Responses < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	_ = sink
	var pending *canbus.Frame
	requests := 0
	all := r.frames()
	// The spy's queue order is not send order (delivery to the ECU and
	// the spy races with the ECU's answer); the bus timestamps are.
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	defer func() {
		if t.Failed() {
			for _, f := range all {
				t.Logf("%v %03X %X", f.Time.Format("05.000000"), f.ID, f.Payload())
			}
		}
	}()
	for _, f := range all {
		switch {
		case f.ID == funcID11:
			requests++
			if pending != nil && f.Time.Sub(pending.Time) < DefaultP2 {
				t.Errorf("request %X at %v while %X from %v was unanswered (stats %+v)", f.Payload()[:3], f.Time, pending.Payload()[:3], pending.Time, d.Stats())
				break
			}
			pending = &f
		case f.ID >= 0x7E8 && f.ID <= 0x7EF && f.Data[0]>>4 != 1:
			pending = nil // a single or last frame answers it
		}
	}
	if requests < 50 {
		t.Errorf("%d requests, want >= 50", requests)
	}
}

func TestSilentECUBacksOff(t *testing.T) {
	t.Parallel()
	r := newRig(t, false, sim.ECUKnobs{Silent: true})
	d, sink, stop := r.driver(t, func(d *Driver) { d.BackoffMax = canmap.Duration(time.Second) })
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for d.Stats().Backoffs < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Stats()
	if st.Backoffs < 2 || st.Silent != 1 || st.Responses != 0 {
		t.Fatalf("Stats() = %+v, want backing off", st)
	}
	// silentLimit requests, then one probe per pause: a busy poller
	// would have sent hundreds.
	if st.Requests > uint64(silentLimit+int(st.Backoffs)+1) {
		t.Errorf("%d requests for %d back-offs: not backing off", st.Requests, st.Backoffs)
	}
	r.ecu.SetKnobs(sim.ECUKnobs{})
	if _, ok := sink.Wait(20*time.Second, drivertest.Named("Vehicle.OBD.Speed")); !ok {
		t.Fatal("no speed after the ECU came back")
	}
	if st := d.Stats(); st.Silent != 0 {
		t.Errorf("Stats().Silent = %d after answers resumed", st.Silent)
	}
}

func TestSlowECUTimesOut(t *testing.T) {
	t.Parallel()
	r := newRig(t, false, sim.ECUKnobs{Delay: 200 * time.Millisecond})
	d, _, stop := r.driver(t, func(d *Driver) { d.BackoffMax = canmap.Duration(time.Second) })
	deadline := time.Now().Add(20 * time.Second)
	for d.Stats().Timeouts < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	st := d.Stats()
	// (A late answer can still match a repeat of the same request, e.g.
	// the discovery request: its content is the same, so it is used.)
	if st.Timeouts < 3 || st.Responses >= st.Requests {
		t.Errorf("Stats() = %+v, want timeouts", st)
	}
	// Patient config: a P2 above the ECU's delay gets the answers.
	d2, sink, stop2 := r.driver(t, func(d *Driver) { d.P2 = canmap.Duration(time.Second) })
	defer stop2()
	if _, ok := sink.Wait(20*time.Second, drivertest.Named(SignalVIN)); !ok {
		t.Errorf("no VIN with p2_timeout 1s from an ECU answering after 200ms (stats %+v)", d2.Stats())
	}
}

func TestInitErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		mod  func(*Driver)
	}{
		{"bad transport", func(d *Driver) { d.Transport = "udp" }},
		{"vbus without address", func(d *Driver) { d.Transport, d.Address = TransportVBus, "" }},
		{"bad addressing", func(d *Driver) { d.Addressing = "12bit" }},
		{"zero p2", func(d *Driver) { d.P2 = 0 }},
		{"pid 0x20 is a bitmap", func(d *Driver) { d.PIDs = []PIDConfig{{PID: 0x20}} }},
		{"pid without scaling", func(d *Driver) { d.PIDs = []PIDConfig{{PID: 0x03}} }},
		{"duplicate pid", func(d *Driver) { d.PIDs = []PIDConfig{{PID: 0x0D}, {PID: 0x0D}} }},
		{"block size", func(d *Driver) { d.BlockSize = 300 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := New(drivertest.Params(t))
			tt.mod(d)
			if err := d.Init(); err == nil {
				t.Error("Init() = nil, want an error")
			}
		})
	}
	if _, ok := drivers.Lookup(Kind); !ok {
		t.Error("kind obd is not registered")
	}
}

// TestNoRequestsDuringActuation: while a driver actuating on the same bus
// has asked for quiet (the can driver does on every Transmit), no request
// goes out.
func TestNoRequestsDuringActuation(t *testing.T) {
	t.Parallel()
	r := newRig(t, false, sim.ECUKnobs{})
	d, sink, stop := r.driver(t, func(d *Driver) {
		d.PIDs = []PIDConfig{{PID: 0x0D, Interval: canmap.Duration(time.Millisecond)}}
	})
	defer stop()
	if _, ok := sink.Wait(20*time.Second, drivertest.Named("Vehicle.OBD.Speed")); !ok {
		t.Fatal("no polling before the actuation")
	}
	const hold = 500 * time.Millisecond
	start := time.Now()
	canbus.Quiet(canbus.BusKey(TransportVBus, r.path), hold)
	deadline := time.Now().Add(20 * time.Second)
	for d.Stats().Requests < 10 || time.Since(start) < hold+100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("polling did not resume after the quiet window")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A request already in flight may finish; none may start later in
	// the window (its P2 and gap give it 100 ms).
	from, to := start.Add(100*time.Millisecond), start.Add(hold)
	for _, f := range r.frames() {
		if f.ID == funcID11 && f.Time.After(from) && f.Time.Before(to) {
			t.Errorf("request %X at +%v, inside the quiet window", f.Payload()[:3], f.Time.Sub(start))
		}
	}
	if d.Stats().Holds == 0 {
		t.Error("Stats().Holds = 0")
	}
}

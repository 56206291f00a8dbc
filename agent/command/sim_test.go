package command_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/can"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// simRig wires the engine to the real CAN driver and tcu-sim's vehicle on an
// in-process virtual bus, with configs/vehicle.dbc; a spy endpoint records
// every BODY_COMMAND frame on the bus.
type simRig struct {
	veh   *sim.Vehicle
	eng   *command.Engine
	resp  *commandtest.Responder // records responses unless the rig was given another responder
	cache *command.SampleCache

	cmdMsg *dbc.Message

	mu     sync.Mutex
	frames []canbus.Frame // guarded by mu; BODY_COMMAND frames seen on the bus
	seen   []time.Time    // guarded by mu; when each of frames was seen
	newFr  chan struct{}  // guarded by mu; closed at the next frame
}

func newSimRig(t testing.TB, knobs sim.Knobs, mut func(*command.Config)) *simRig {
	t.Helper()
	return newSimRigWith(t, knobs, mut, nil)
}

// newSimRigWith is newSimRig with responder, when not nil, taking the
// responses.
func newSimRigWith(t testing.TB, knobs sim.Knobs, mut func(*command.Config), responder command.Responder) *simRig {
	t.Helper()
	db, _, err := dbc.Load("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	cmdMsg, _ := db.Message("BODY_COMMAND")
	vbus := canbus.NewVirtual()
	simEp, agentEp, spy := vbus.Attach(), vbus.Attach(), vbus.Attach()
	if knobs.Delay == 0 {
		knobs.Delay = 50 * time.Millisecond
	}
	veh, err := sim.New(sim.Options{Bus: simEp, DB: db, Knobs: knobs})
	if err != nil {
		t.Fatal(err)
	}
	drv := newBodyDriver(t, agentEp)
	cfg := testConfig()
	for i := range cfg.Commands {
		cfg.Commands[i].Counter = "CommandCounter"
		cfg.Commands[i].Timeout = dur(2 * time.Second)
	}
	cfg.Commands[0].FailValues = []float64{2}
	cfg.Interlocks[0].For = dur(300 * time.Millisecond)
	if mut != nil {
		mut(&cfg)
	}
	r := &simRig{veh: veh, resp: &commandtest.Responder{}, cache: command.NewSampleCache(), cmdMsg: cmdMsg, newFr: make(chan struct{})}
	if responder == nil {
		responder = r.resp
	}
	r.eng, err = command.New(command.Options{
		Config: cfg, Thing: thing, StateDir: t.TempDir(), Signals: r.cache,
		Transmitter: func(bus string) (drivers.Transmitter, bool) { return drv, bus == "body" },
		Responder:   responder, ClockTrusted: func() bool { return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = veh.Run(ctx) })
	wg.Go(func() { _ = drv.Run(ctx, r.cache) })
	wg.Go(func() { _ = r.eng.Run(ctx) })
	wg.Go(func() {
		defer spy.Close()
		for {
			f, err := spy.Receive(ctx)
			if err != nil {
				return
			}
			if f.ID == cmdMsg.ID {
				r.mu.Lock()
				r.frames = append(r.frames, f)
				r.seen = append(r.seen, time.Now())
				close(r.newFr)
				r.newFr = make(chan struct{})
				r.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	waitFor(t, func() bool {
		_, ok1 := r.cache.Latest(sigSpeed)
		_, ok2 := r.cache.Latest(sigLocked)
		return ok1 && ok2
	})
	return r
}

// newBodyDriver returns the "body" CAN driver on ep with the sim signals
// mapped as in configs/tcu-agent.toml (faster heartbeats).
func newBodyDriver(t testing.TB, ep canbus.Bus) *can.Driver {
	t.Helper()
	drv := can.New(drivers.Params{Name: "body", ConfigDir: "../../configs"})
	drv.Transport, drv.DBC = can.TransportVBus, "vehicle.dbc"
	drv.Open = func(context.Context) (canbus.Bus, error) { return ep, nil }
	hb := canmap.Duration(200 * time.Millisecond)
	drv.Signals = []canmap.Signal{
		{Name: sigSpeed, Source: "POWERTRAIN.VehicleSpeed", Heartbeat: hb},
		{Name: sigGear, Source: "POWERTRAIN.Gear", Heartbeat: hb},
		{Name: sigLocked, Source: "BODY_STATUS.DoorLockState", Heartbeat: hb},
		{Name: sigImmo, Source: "BODY_STATUS.ImmobilizerActive", Heartbeat: hb},
	}
	if err := drv.Init(); err != nil {
		t.Fatal(err)
	}
	return drv
}

func (r *simRig) commandFrames() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// run sends one command and waits for its final response.
func (r *simRig) run(t *testing.T, id, name string) command.Response {
	t.Helper()
	req := command.Request{ID: id, Device: thing, Name: name, IssuedAt: time.Now().UnixMilli(), ValidMS: 30_000}
	r.eng.Handle(context.Background(), requestTopic(id), mustJSON(t, req))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	resp, err := r.resp.WaitFinal(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestSimVehicle runs every command against tcu-sim's body controller over
// the bus: each SUCCEEDS with its frames on the bus and the sim's state
// changed.
func TestSimVehicle(t *testing.T) {
	t.Parallel()
	r := newSimRig(t, sim.Knobs{}, nil)
	time.Sleep(400 * time.Millisecond) // the standstill hold time
	steps := []struct {
		name string
		want func(sim.State) bool
	}{
		{"door.lock", func(s sim.State) bool { return s.Lock == sim.Locked }},
		{"door.unlock", func(s sim.State) bool { return s.Lock == sim.Unlocked }},
		{"ignition.disable", func(s sim.State) bool { return s.Immobilized }},
		{"ignition.enable", func(s sim.State) bool { return !s.Immobilized }},
	}
	for i, st := range steps {
		before := r.commandFrames()
		resp := r.run(t, idN("sim", i), st.name)
		checkFinal(t, resp, command.StatusSucceeded, command.ReasonOK)
		if n := r.commandFrames() - before; n < 1 {
			t.Errorf("%s: no BODY_COMMAND frame on the bus", st.name)
		}
		if !st.want(r.veh.State()) {
			t.Errorf("%s: sim state %+v", st.name, r.veh.State())
		}
	}
}

// TestSimRefusalsAndFaults: moving vehicle, ignoring and failing body
// controller, and arm-then-cut once the vehicle stops.
func TestSimRefusalsAndFaults(t *testing.T) {
	t.Parallel()
	r := newSimRig(t, sim.Knobs{Hold: sim.HoldMoving, Speed: 50}, nil)
	waitFor(t, func() bool { s, _ := r.cache.Latest(sigSpeed); return s.Value > 10 })

	checkFinal(t, r.run(t, "moving-1", "door.unlock"), command.StatusRejected, command.ReasonInterlock)
	if n := r.commandFrames(); n != 0 {
		t.Fatalf("%d BODY_COMMAND frames for a refused command, want 0", n)
	}

	// Armed while moving, cut once stopped for the hold time.
	req := command.Request{ID: "arm-1", Device: thing, Name: "ignition.disable", IssuedAt: time.Now().UnixMilli(), ValidMS: 30_000}
	r.eng.Handle(context.Background(), requestTopic("arm-1"), mustJSON(t, req))
	waitFor(t, func() bool { return len(r.resp.For("arm-1")) == 1 })
	if n := r.commandFrames(); n != 0 {
		t.Fatalf("%d frames while armed and moving, want 0", n)
	}
	r.veh.SetKnobs(sim.Knobs{Hold: sim.HoldParked})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	resp, err := r.resp.WaitFinal(ctx, "arm-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkFinal(t, resp, command.StatusSucceeded, command.ReasonOK)
	if !r.veh.State().Immobilized || resp.State[sigSpeed] != 0 {
		t.Errorf("after the cut: sim %+v, response state %v", r.veh.State(), resp.State)
	}

	r.veh.SetKnobs(sim.Knobs{Hold: sim.HoldParked, Ignore: true})
	checkFinal(t, r.run(t, "ignored-1", "door.lock"), command.StatusTimedOut, command.ReasonNoConfirmation)
	r.veh.SetKnobs(sim.Knobs{Hold: sim.HoldParked, Fail: true})
	checkFinal(t, r.run(t, "fault-1", "door.lock"), command.StatusFailed, command.ReasonActuatorFault)
}

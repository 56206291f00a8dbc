package sim

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

func loadDB(t testing.TB) *dbc.Database {
	t.Helper()
	db, _, err := dbc.Load("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// rig runs a vehicle on a virtual bus and watches the bus as the TCU.
type rig struct {
	v   *Vehicle
	tcu *canbus.Endpoint
	db  *dbc.Database
}

func startRig(t *testing.T, opts Options) *rig {
	t.Helper()
	bus := canbus.NewVirtual()
	r := &rig{tcu: bus.Attach(), db: loadDB(t)}
	ep := bus.Attach()
	opts.Bus, opts.DB = ep, r.db
	v, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.v = v
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := v.Run(ctx); err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		ep.Close()
		r.tcu.Close()
	})
	return r
}

// command sends a BODY_COMMAND as the TCU would.
func (r *rig) command(t *testing.T, sigs map[string]float64) time.Time {
	t.Helper()
	m, _ := r.db.Message("BODY_COMMAND")
	data, err := m.Encode(sigs)
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: m.ID}
	f.Len = uint8(copy(f.Data[:], data))
	sent := time.Now()
	if err := r.tcu.Send(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	return sent
}

// await reads the bus until msg.sig has the wanted raw value and returns
// when the frame arrived.
func (r *rig) await(t *testing.T, msg, sig string, want int64, within time.Duration) (time.Time, bool) {
	t.Helper()
	m, _ := r.db.Message(msg)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		f, err := r.tcu.Receive(ctx)
		if err != nil {
			return time.Time{}, false
		}
		if f.ID != m.ID || f.Extended != m.Extended {
			continue
		}
		vals, err := m.Decode(f.Payload())
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if v.Signal.Name == sig && v.Raw == want {
				return f.Time, true
			}
		}
	}
}

func TestBodyControllerLockUnlock(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{BodyDelay: 100 * time.Millisecond})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Unlocked, 10*time.Second); !ok {
		t.Fatal("no BODY_STATUS with the initial UNLOCKED state")
	}
	sent := r.command(t, map[string]float64{"LockRequest": 1, "CommandCounter": 1})
	at, ok := r.await(t, "BODY_STATUS", "DoorLockState", Locked, 10*time.Second)
	if !ok {
		t.Fatal("doors never reported LOCKED")
	}
	if d := at.Sub(sent); d < 100*time.Millisecond {
		t.Errorf("LOCKED after %v, want at least the 100ms body delay", d)
	}
	r.command(t, map[string]float64{"LockRequest": 2, "CommandCounter": 2})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Unlocked, 10*time.Second); !ok {
		t.Fatal("doors never reported UNLOCKED")
	}
	if got := r.v.State().Commands; got != 2 {
		t.Errorf("State().Commands = %d, want 2", got)
	}
}

func TestBodyControllerKnobs(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{BodyDelay: 20 * time.Millisecond, Knobs: Knobs{Fail: true}})
	r.command(t, map[string]float64{"LockRequest": 1})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Fault, 10*time.Second); !ok {
		t.Fatal("Fail knob: lock state never reported FAULT")
	}
	r.v.SetKnobs(Knobs{Ignore: true})
	r.command(t, map[string]float64{"LockRequest": 2})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Unlocked, 500*time.Millisecond); ok {
		t.Error("Ignore knob: the body controller answered")
	}
	if got := r.v.State().Lock; got != Fault {
		t.Errorf("lock state = %d, want FAULT (unchanged)", got)
	}
	r.v.SetKnobs(Knobs{})
	if k := r.v.Knobs(); k.Delay != 20*time.Millisecond {
		t.Errorf("SetKnobs with zero Delay changed it to %v", k.Delay)
	}
	r.command(t, map[string]float64{"ImmobilizerRequest": 2})
	if _, ok := r.await(t, "BODY_STATUS", "ImmobilizerActive", 1, 10*time.Second); !ok {
		t.Fatal("immobiliser never engaged")
	}
	r.command(t, map[string]float64{"ImmobilizerRequest": 1})
	if _, ok := r.await(t, "BODY_STATUS", "ImmobilizerActive", 0, 10*time.Second); !ok {
		t.Fatal("immobiliser never released")
	}
}

func TestHoldMovingAndParked(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{Knobs: Knobs{Hold: HoldMoving, Speed: 50}})
	if _, ok := r.await(t, "POWERTRAIN", "VehicleSpeed", 5000, 10*time.Second); !ok {
		t.Fatal("held moving: never saw 50 km/h")
	}
	if s := r.v.State(); s.Gear != GearD || s.Ignition != IgnitionOn || s.RPM == 0 {
		t.Errorf("held moving: state %+v, want gear D, ignition ON, engine running", s)
	}
	r.v.SetKnobs(Knobs{Hold: HoldParked})
	if _, ok := r.await(t, "POWERTRAIN", "VehicleSpeed", 0, 10*time.Second); !ok {
		t.Fatal("held parked: never saw 0 km/h")
	}
	if _, ok := r.await(t, "POWERTRAIN", "Gear", GearP, 10*time.Second); !ok {
		t.Fatal("held parked: never saw gear P")
	}
}

func TestCyclicFramesFollowDBC(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{})
	counts := map[uint32]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		f, err := r.tcu.Receive(ctx)
		if err != nil {
			break
		}
		counts[f.ID]++
	}
	// 2 s at 20 ms, 100 ms and 1000 ms; generous bounds for a loaded machine.
	for _, c := range []struct {
		id     uint32
		lo, hi int
	}{{0x0C0, 20, 110}, {0x120, 5, 25}, {0x3E0, 1, 4}, {0x3E1, 1, 4}, {0x18FF1021, 1, 4}} {
		if n := counts[c.id]; n < c.lo || n > c.hi {
			t.Errorf("id %#x sent %d times in 2s, want %d..%d", c.id, n, c.lo, c.hi)
		}
	}
	if n := counts[0x121]; n != 0 {
		t.Errorf("the vehicle sent %d BODY_COMMAND frames; that is the TCU's message", n)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	db := loadDB(t)
	bus := canbus.NewVirtual().Attach()
	defer bus.Close()
	for name, opts := range map[string]Options{
		"no bus":       {DB: db},
		"no dbc":       {Bus: bus},
		"bad scenario": {Bus: bus, DB: db, Scenario: "rally"},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New() = nil error", name)
		}
	}
}

func TestLoadSendsAtPlannedRate(t *testing.T) {
	t.Parallel()
	bus := canbus.NewVirtual()
	tx, rx := bus.Attach(), bus.Attach()
	defer tx.Close()
	defer rx.Close()
	l, err := NewLoad(LoadOptions{Bus: tx, Percent: 10, Bitrate: 500_000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	n := 0
	for {
		if _, err := rx.Receive(ctx); err != nil {
			break
		}
		n++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// ~435 frames/s planned; generous bounds for a loaded machine.
	if want := l.Rate(); float64(n) < want*0.5 || float64(n) > want*1.3 {
		t.Errorf("sent %d frames in 1s, planned %.0f/s", n, want)
	}
}

func TestMuteSilencesAMessage(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{Knobs: Knobs{Mute: []string{"POWERTRAIN"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	counts := map[uint32]int{}
	for {
		f, err := r.tcu.Receive(ctx)
		if err != nil {
			break
		}
		counts[f.ID]++
	}
	if counts[0x0C0] != 0 || counts[0x120] == 0 {
		t.Errorf("muted POWERTRAIN: frames per id %v, want no 0xC0 and some 0x120", counts)
	}
	r.v.SetKnobs(Knobs{})
	if _, ok := r.await(t, "POWERTRAIN", "Gear", GearP, 10*time.Second); !ok {
		t.Error("POWERTRAIN did not resume after unmuting")
	}
}

func TestFrameRate(t *testing.T) {
	t.Parallel()
	bus := canbus.NewVirtual().Attach()
	defer bus.Close()
	v, err := New(Options{Bus: bus, DB: loadDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	// POWERTRAIN 50/s, BODY_STATUS 10/s, ODOMETER, BATTERY, CLIMATE 1/s each.
	if got := v.FrameRate(); got != 63 {
		t.Errorf("FrameRate() = %v, want 63", got)
	}
}

// TestPowertrainLayout checks the POWERTRAIN bytes against the layout the
// DBC promises, computed by hand: at 50 km/h in D with ignition ON the
// engine turns 50 * 42 = 2100 rpm.
func TestPowertrainLayout(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{Knobs: Knobs{Hold: HoldMoving, Speed: 50}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// VehicleSpeed 5000 little-endian; Gear 3 | IgnitionState 2<<4;
	// EngineRPM 8400 = 0x20D0 big-endian in bytes 3-4.
	want := [8]byte{0x88, 0x13, 0x23, 0x20, 0xD0, 0, 0, 0}
	var last [8]byte
	for {
		f, err := r.tcu.Receive(ctx)
		if err != nil {
			t.Fatalf("no POWERTRAIN frame %X within 10s; last %X", want, last)
		}
		if f.ID != 0x0C0 {
			continue
		}
		copy(last[:], f.Payload())
		if f.Len == 8 && last == want {
			return
		}
	}
}

// TestBodyStatusLayout checks BODY_STATUS bytes by hand: LOCKED (1) in
// bits 0-1, driver door bit 2, trunk bit 6, immobiliser bit 8, rolling
// counter in bits 56-59.
func TestBodyStatusLayout(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{})
	r.v.Update(func(s *State) {
		s.Lock, s.Doors[0], s.Trunk, s.Immobilized = Locked, true, true, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counters := map[byte]bool{}
	for len(counters) < 3 {
		f, err := r.tcu.Receive(ctx)
		if err != nil {
			t.Fatalf("saw counters %v only", counters)
		}
		if f.ID != 0x120 || f.Data[0] != 0x45 {
			continue
		}
		if f.Data[1] != 0x01 || f.Data[7]&0xF0 != 0 {
			t.Fatalf("BODY_STATUS % X: want byte 1 = 01 and only the counter nibble in byte 7", f.Payload())
		}
		counters[f.Data[7]] = true
	}
}

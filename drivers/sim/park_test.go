package sim

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestDriveParkSleepsAndDrains steps the drive-park scenario through
// simulated time: one trip, then parked for good; the bus falls asleep
// after SleepAfter and sends nothing; the battery discharges at Drain.
func TestDriveParkSleepsAndDrains(t *testing.T) {
	bus := canbus.NewVirtual().Attach()
	t.Cleanup(func() { bus.Close() })
	v, err := New(Options{Bus: bus, DB: loadDB(t), Scenario: ScenarioDrivePark,
		Knobs: Knobs{SleepAfter: time.Minute, Drain: 360}}) // 0.1 V per second
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	var maxSpeed float64
	var parkedAt, asleepAt time.Time
	var framesAsleep int
	for end := now.Add(3 * time.Minute); now.Before(end); now = now.Add(tick) {
		frames := v.step(now, tick)
		s := v.State()
		maxSpeed = max(maxSpeed, s.Speed)
		if maxSpeed > 0 && s.Speed == 0 && s.Ignition == IgnitionOff && parkedAt.IsZero() {
			parkedAt = now
		}
		if v.Knobs().Asleep {
			if asleepAt.IsZero() {
				asleepAt = now
			}
			framesAsleep += len(frames)
		}
		if !parkedAt.IsZero() && s.Ignition != IgnitionOff {
			t.Fatalf("drive-park started a second trip at %v", now.Sub(parkedAt))
		}
	}
	if maxSpeed < 45 || parkedAt.IsZero() {
		t.Fatalf("no trip: max speed %.1f, parked at %v", maxSpeed, parkedAt)
	}
	if asleepAt.IsZero() || asleepAt.Sub(parkedAt) < time.Minute-time.Second || asleepAt.Sub(parkedAt) > time.Minute+time.Second {
		t.Errorf("bus asleep %v after parking, want 1m", asleepAt.Sub(parkedAt))
	}
	if framesAsleep != 0 {
		t.Errorf("%d frames sent while asleep", framesAsleep)
	}
	if b := v.State().Battery; b > 9.1 { // drained to the floor by now
		t.Errorf("battery %.2f V after minutes at 0.1 V/s", b)
	}
}

// TestWakeOnCommand: a frame from the TCU wakes a sleeping bus, the body
// controller acts on the command, and the bus talks again.
func TestWakeOnCommand(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{Scenario: ScenarioParked, Knobs: Knobs{Asleep: true}, BodyDelay: 20 * time.Millisecond})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Unlocked, 300*time.Millisecond); ok {
		t.Fatal("a sleeping bus sent BODY_STATUS")
	}
	r.command(t, map[string]float64{"LockRequest": lockLock})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Locked, 5*time.Second); !ok {
		t.Fatal("no LOCKED status after the command woke the bus")
	}
	if s, k := r.v.State(), r.v.Knobs(); s.Wakeups != 1 || k.Asleep {
		t.Errorf("wakeups %d asleep %v, want 1 false", s.Wakeups, k.Asleep)
	}
}

// TestNoWake: with NoWake a sleeping bus ignores the TCU's frames: it
// stays asleep, the body controller does not act; clearing the knob lets
// the next frame wake it.
func TestNoWake(t *testing.T) {
	t.Parallel()
	r := startRig(t, Options{Scenario: ScenarioParked, Knobs: Knobs{Asleep: true, NoWake: true}, BodyDelay: 20 * time.Millisecond})
	r.command(t, map[string]float64{"LockRequest": lockLock})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Locked, 500*time.Millisecond); ok {
		t.Fatal("a bus that does not wake sent BODY_STATUS")
	}
	if s, k := r.v.State(), r.v.Knobs(); s.Wakeups != 0 || !k.Asleep || s.Lock == Locked || s.Commands != 0 {
		t.Fatalf("wakeups %d asleep %v lock %d commands %d, want 0 true unlocked 0", s.Wakeups, k.Asleep, s.Lock, s.Commands)
	}
	k := r.v.Knobs()
	k.NoWake = false
	r.v.SetKnobs(k)
	r.command(t, map[string]float64{"LockRequest": lockLock})
	if _, ok := r.await(t, "BODY_STATUS", "DoorLockState", Locked, 5*time.Second); !ok {
		t.Fatal("no LOCKED status once the bus could wake")
	}
}

package sim

import (
	"math"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// drive steps a vehicle through simulated time without a running loop.
func drive(t *testing.T, scenario string, d time.Duration, each func(now time.Time, s State)) *Vehicle {
	t.Helper()
	bus := canbus.NewVirtual().Attach()
	t.Cleanup(func() { bus.Close() })
	v, err := New(Options{Bus: bus, DB: loadDB(t), Scenario: scenario})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	for end := now.Add(d); now.Before(end); now = now.Add(tick) {
		v.step(now, tick)
		if each != nil {
			each(now, v.State())
		}
	}
	return v
}

func TestCityDriveCycle(t *testing.T) {
	t.Parallel()
	phases := map[string]bool{}
	maxSpeed, stops := 0.0, 0
	last := ""
	v := drive(t, ScenarioCity, 3*time.Minute, func(_ time.Time, s State) {
		phases[s.Phase] = true
		maxSpeed = max(maxSpeed, s.Speed)
		if s.Phase == "stop" && last != "stop" {
			stops++
		}
		if s.Speed > 0 && (s.Gear != GearD || s.Ignition != IgnitionOn) {
			t.Fatalf("moving at %.1f km/h in gear %d ignition %d", s.Speed, s.Gear, s.Ignition)
		}
		last = s.Phase
	})
	for _, p := range phaseNames {
		if !phases[p] {
			t.Errorf("city cycle never reached phase %q", p)
		}
	}
	if maxSpeed < 49 || maxSpeed > 53 {
		t.Errorf("city top speed %.1f km/h, want about 50", maxSpeed)
	}
	if stops < 3 {
		t.Errorf("city cycle stopped %d times in 3 min, want >= 3", stops)
	}
	if s := v.State(); s.Odometer <= 12345.6 || s.Fuel >= 68 {
		t.Errorf("odometer %.2f / fuel %.2f did not advance", s.Odometer, s.Fuel)
	}
}

func TestImmobilizerStopsTheCycle(t *testing.T) {
	t.Parallel()
	bus := canbus.NewVirtual().Attach()
	defer bus.Close()
	v, err := New(Options{Bus: bus, DB: loadDB(t), Scenario: ScenarioHighway})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	step := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(tick) {
			v.step(now, tick)
		}
	}
	step(30 * time.Second)
	if s := v.State(); s.Speed < 100 {
		t.Fatalf("highway speed after 30s = %.1f, want cruising", s.Speed)
	}
	v.command(now, lockNone, immoDisable)
	step(2 * time.Minute)
	if s := v.State(); s.Speed != 0 || s.Gear != GearP || !s.Immobilized {
		t.Errorf("after immobilising at speed: %+v, want stopped in P", s)
	}
	step(30 * time.Second)
	if s := v.State(); s.Ignition == IgnitionOn {
		t.Errorf("immobilised engine started: %+v", s)
	}
}

func TestLoadPlansRealisticMix(t *testing.T) {
	t.Parallel()
	bus := canbus.NewVirtual().Attach()
	defer bus.Close()
	tests := []struct {
		pct     float64
		bitrate int
	}{{30, 500_000}, {100, 500_000}, {100, 1_000_000}}
	for _, tt := range tests {
		l, err := NewLoad(LoadOptions{Bus: bus, Percent: tt.pct, Bitrate: tt.bitrate, Exclude: []uint32{0x0C0, 0x120}})
		if err != nil {
			t.Fatal(err)
		}
		want := tt.pct / 100 * float64(tt.bitrate) / BitsPerFrame
		if d := l.Rate() - want; d < -0.5 || d > 0.5 {
			t.Errorf("%v%% of %d: rate %.1f frames/s, want %.1f", tt.pct, tt.bitrate, l.Rate(), want)
		}
		if l.Messages() < 10 {
			t.Errorf("%v%% of %d: only %d identifiers", tt.pct, tt.bitrate, l.Messages())
		}
		for _, m := range l.msgs {
			if m.id == 0x0C0 || m.id == 0x120 || m.id > canbus.MaxStandardID {
				t.Errorf("filler uses id %#x", m.id)
			}
		}
	}
	l, err := NewLoad(LoadOptions{Bus: bus, Percent: 50, Bitrate: 1_000_000, Existing: 63})
	if err != nil {
		t.Fatal(err)
	}
	if want := 0.5*1_000_000/BitsPerFrame - 63; math.Abs(l.Rate()-want) > 0.5 {
		t.Errorf("with 63 frames/s existing: rate %.1f, want %.1f", l.Rate(), want)
	}
	if _, err := NewLoad(LoadOptions{Bus: bus, Percent: 120, Bitrate: 500_000}); err == nil {
		t.Error("NewLoad accepted 120%")
	}
}

package profile

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/drivers"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestRuleHolds(t *testing.T) {
	in := Inputs{Now: at(100), Ignition: IgnitionOff, OffSince: at(40), Speed: 0, SpeedOK: true, Battery: 12.5, BatteryOK: true, LastBus: at(90)}
	tests := []struct {
		name string
		rule Rule
		in   func(Inputs) Inputs
		want bool
		next time.Time
	}{
		{"ignition off", Rule{Ignition: "off"}, nil, true, time.Time{}},
		{"ignition on", Rule{Ignition: "on"}, nil, false, time.Time{}},
		{"unknown ignition matches neither", Rule{Ignition: "off"}, func(i Inputs) Inputs { i.Ignition = IgnitionUnknown; return i }, false, time.Time{}},
		{"off for reached", Rule{OffFor: Duration(time.Minute)}, nil, true, time.Time{}},
		{"off for not yet: deadline", Rule{OffFor: Duration(2 * time.Minute)}, nil, false, at(160)},
		{"off for while on", Rule{OffFor: Duration(time.Second)}, func(i Inputs) Inputs { i.Ignition = IgnitionOn; return i }, false, time.Time{}},
		{"bus silent not yet", Rule{BusSilentFor: Duration(15 * time.Second)}, nil, false, at(105)},
		{"bus silent", Rule{BusSilentFor: Duration(10 * time.Second)}, nil, true, time.Time{}},
		{"speed above", Rule{SpeedAbove: f64(5)}, func(i Inputs) Inputs { i.Speed = 30; return i }, true, time.Time{}},
		{"speed above, no speed yet", Rule{SpeedAbove: f64(5)}, func(i Inputs) Inputs { i.SpeedOK = false; return i }, false, time.Time{}},
		{"speed below", Rule{SpeedBelow: f64(5)}, nil, true, time.Time{}},
		{"battery below", Rule{BatteryBelow: f64(12.6)}, nil, true, time.Time{}},
		{"battery above", Rule{BatteryAbove: f64(12.6)}, nil, false, time.Time{}},
		{"all conditions", Rule{Ignition: "off", SpeedBelow: f64(1), OffFor: Duration(time.Minute)}, nil, true, time.Time{}},
		{"one fails", Rule{Ignition: "off", SpeedAbove: f64(1)}, nil, false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := in
			if tt.in != nil {
				i = tt.in(i)
			}
			got, next := tt.rule.holds(i)
			if got != tt.want || !next.Equal(tt.next) {
				t.Errorf("holds = %v, next %v; want %v, %v", got, next, tt.want, tt.next)
			}
		})
	}
}

// step is one input of a selector scenario and the profile expected after.
type step struct {
	at       float64
	ign      Ignition
	speed    float64
	lastBus  float64
	want     string
	wantNext float64 // 0: none expected
}

func TestSelectorHysteresis(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{
		{Profile: Driving, Ignition: "on"},
		{Profile: Driving, SpeedAbove: f64(5)},
		{Profile: DeepSleep, BusSilentFor: Duration(60 * time.Second)},
		{Profile: DeepSleep, Ignition: "off", OffFor: Duration(300 * time.Second)},
		{Profile: Parked, Ignition: "off", For: Duration(30 * time.Second)},
	}
	cfg.MinDwell = Duration(10 * time.Second)
	tests := []struct {
		name  string
		steps []step
	}{
		{"drive, park after the entry delay, deep sleep after off_for", []step{
			{at: 0, ign: IgnitionOn, speed: 50, lastBus: 0, want: Driving, wantNext: 60},
			{at: 20, ign: IgnitionOff, speed: 0, lastBus: 20, want: Driving, wantNext: 50},   // parked rule must hold 30 s
			{at: 49, ign: IgnitionOff, speed: 0, lastBus: 49, want: Driving, wantNext: 50},   // not yet
			{at: 50, ign: IgnitionOff, speed: 0, lastBus: 50, want: Parked, wantNext: 110},   // held 30 s
			{at: 319, ign: IgnitionOff, speed: 0, lastBus: 300, want: Parked, wantNext: 320}, // off since 20 → 320
			{at: 320, ign: IgnitionOff, speed: 0, lastBus: 319, want: DeepSleep, wantNext: 379},
		}},
		{"a short stop does not park", []step{
			{at: 0, ign: IgnitionOn, speed: 0, lastBus: 0, want: Driving, wantNext: 60},
			{at: 5, ign: IgnitionOff, speed: 0, lastBus: 5, want: Driving, wantNext: 35},
			{at: 20, ign: IgnitionOn, speed: 0, lastBus: 20, want: Driving, wantNext: 80},
			{at: 40, ign: IgnitionOff, speed: 0, lastBus: 40, want: Driving, wantNext: 70}, // the hold restarted
		}},
		{"min dwell delays leaving a profile", []step{
			{at: 0, ign: IgnitionOff, speed: 0, lastBus: 0, want: Driving, wantNext: 30},
			{at: 30, ign: IgnitionOff, speed: 0, lastBus: 30, want: Parked, wantNext: 90},
			{at: 33, ign: IgnitionOn, speed: 0, lastBus: 33, want: Parked, wantNext: 40}, // entered at 30: stays until 40
			{at: 40, ign: IgnitionOn, speed: 0, lastBus: 40, want: Driving, wantNext: 100},
		}},
		{"bus silence sends to deep sleep from driving with unknown ignition", []step{
			{at: 0, ign: IgnitionUnknown, speed: 0, lastBus: 0, want: Driving, wantNext: 60},
			{at: 60, ign: IgnitionUnknown, speed: 0, lastBus: 0, want: DeepSleep, wantNext: 0},
			{at: 61, ign: IgnitionUnknown, speed: 20, lastBus: 61, want: DeepSleep, wantNext: 70}, // dwell: since 60 → 70
			{at: 70, ign: IgnitionUnknown, speed: 20, lastBus: 70, want: Driving, wantNext: 130},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSelector(&cfg, at(0))
			var offSince time.Time
			prev := IgnitionUnknown
			for _, st := range tt.steps {
				if st.ign == IgnitionOff && prev != IgnitionOff {
					offSince = at(st.at)
				}
				prev = st.ign
				in := Inputs{Now: at(st.at), Ignition: st.ign, OffSince: offSince, Speed: st.speed, SpeedOK: true, LastBus: at(st.lastBus)}
				_, next := s.step(in)
				if s.current != st.want {
					t.Fatalf("at %vs: profile %q (%s), want %q", st.at, s.current, s.reason, st.want)
				}
				var want time.Time
				if st.wantNext != 0 {
					want = at(st.wantNext)
				}
				if !next.Equal(want) {
					t.Errorf("at %vs: next deadline %v, want %v", st.at, next.Sub(t0), want.Sub(t0))
				}
			}
		})
	}
}

func TestBatteryGuard(t *testing.T) {
	b := DefaultConfig().Battery // low < 12.0 for 10m, critical < 11.6 for 2m, recover ≥ 12.4 for 1m
	type v struct {
		at    float64 // seconds
		volt  float64
		want  Level
		event bool
	}
	tests := []struct {
		name  string
		steps []v
	}{
		{"a dip shorter than the filter is ignored", []v{
			{0, 12.5, LevelNormal, false}, {10, 11.9, LevelNormal, false}, {500, 11.95, LevelNormal, false},
			{590, 12.1, LevelNormal, false}, {700, 11.9, LevelNormal, false}, // the timer restarted at 700
			{1299, 11.9, LevelNormal, false}, {1300, 11.9, LevelLow, true},
		}},
		{"low then critical then recovery with hysteresis", []v{
			{0, 11.9, LevelNormal, false}, {600, 11.9, LevelLow, true},
			{610, 11.5, LevelLow, false}, {729, 11.5, LevelLow, false}, {730, 11.5, LevelCritical, true},
			{800, 12.2, LevelCritical, false}, // above low but below recover: stays
			{900, 12.5, LevelCritical, false}, {959, 12.5, LevelCritical, false}, {960, 12.5, LevelNormal, true},
		}},
		{"cranking dip does not trip critical", []v{
			{0, 12.6, LevelNormal, false}, {1, 10.8, LevelNormal, false}, {3, 14.1, LevelNormal, false}, {200, 14.1, LevelNormal, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := guard{cfg: b}
			for _, s := range tt.steps {
				changed, _ := g.step(at(s.at), s.volt, true)
				if g.level != s.want || changed != s.event {
					t.Fatalf("at %vs %.2f V: level %v changed %v, want %v %v", s.at, s.volt, g.level, changed, s.want, s.event)
				}
			}
		})
	}
	g := guard{cfg: b}
	if _, next := g.step(at(0), 11.5, true); !next.Equal(at(120)) {
		t.Errorf("next deadline below critical = %v, want +120s", next.Sub(t0))
	}
}

func TestValidate(t *testing.T) {
	if err := func() error { c := DefaultConfig(); return c.Validate() }(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown force", func(c *Config) { c.Force = "parkd" }, "profile.force: unknown profile \"parkd\""},
		{"rule to unknown profile", func(c *Config) { c.Rules[1].Profile = "x" }, "profile.rule[1].profile"},
		{"bad ignition", func(c *Config) { c.Rules[0].Ignition = "maybe" }, "profile.rule[0].ignition"},
		{"keepalive out of AWS range", func(c *Config) { c.Settings[1].KeepAlive = Duration(time.Hour) }, "profile.settings[1].keep_alive"},
		{"bad class", func(c *Config) { c.Settings[2].Publish = []string{"alarms"} }, "profile.settings[2].publish"},
		{"thresholds out of order", func(c *Config) { c.Battery.Recover = 11.8 }, "profile.battery.recover"},
		{"gnss half set", func(c *Config) { c.Settings[0].GNSSPeriod = Duration(time.Minute) }, "gnss_window"},
		{"duplicate profile", func(c *Config) { c.Settings[1].Name = Driving }, "defined twice"},
		{"bad glob", func(c *Config) { c.Settings[1].Signals[0].Match = "[" }, "signal[0].match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(s float64)  { c.mu.Lock(); c.t = at(s); c.mu.Unlock() }

type recorder struct {
	mu      sync.Mutex
	applied []Applied
	changes []Change
}

func (r *recorder) apply(a Applied) { r.mu.Lock(); r.applied = append(r.applied, a); r.mu.Unlock() }
func (r *recorder) change(c Change) { r.mu.Lock(); r.changes = append(r.changes, c); r.mu.Unlock() }

func testEngine(t *testing.T, cfg Config) (*Engine, *signals.Store, *clock, *recorder) {
	t.Helper()
	st := signals.New()
	clk := &clock{t: t0}
	rec := &recorder{}
	e, err := New(Options{Config: cfg, Signals: st, Now: clk.Now, Apply: rec.apply, OnChange: rec.change, BusSources: []string{"body"}})
	if err != nil {
		t.Fatal(err)
	}
	return e, st, clk, rec
}

func set(st *signals.Store, name string, v, s float64) {
	st.Set(drivers.Sample{Name: name, Value: v, Time: at(s), Source: "body"})
}

func TestEngineTransitionsAndGuard(t *testing.T) {
	cfg := DefaultConfig()
	e, st, clk, rec := testEngine(t, cfg)
	ign, volt := cfg.IgnitionSignal, cfg.BatterySignal
	set(st, ign, 2, 0)
	set(st, volt, 14.1, 0)
	e.Evaluate(clk.Now())
	if n, _ := e.Current(); n != Driving || len(rec.changes) != 0 {
		t.Fatalf("start: %s, %d changes", n, len(rec.changes))
	}
	clk.Set(100)
	set(st, ign, 0, 100)
	set(st, volt, 12.3, 100)
	if next := e.Evaluate(clk.Now()); !next.Equal(at(130)) {
		t.Errorf("next = %v, want the parked rule's hold at +130s", next.Sub(t0))
	}
	clk.Set(130)
	e.Evaluate(clk.Now())
	if n, why := e.Current(); n != Parked || !strings.Contains(why, "ignition off") {
		t.Fatalf("after 30 s off: %s (%s)", n, why)
	}
	// The bus goes silent: deep sleep 15 min after the last sample.
	clk.Set(100 + 15*60)
	e.Evaluate(clk.Now())
	if n, why := e.Current(); n != DeepSleep || !strings.Contains(why, "bus silent") {
		t.Fatalf("after 15 min of silence: %s (%s)", n, why)
	}
	// The battery falls below critical for 2 min (its frames wake the
	// bus: the rules say parked), the guard's minimal profile wins and
	// only critical records are published.
	clk.Set(2000)
	set(st, volt, 11.5, 2000)
	e.Evaluate(clk.Now())
	clk.Set(2120)
	e.Evaluate(clk.Now())
	s := e.Status()
	if s.Battery != LevelCritical || s.Name != DeepSleep || len(s.Publish) != 1 || s.Publish[0] != "critical" {
		t.Fatalf("critical: %+v", s)
	}
	rec.mu.Lock()
	last := rec.applied[len(rec.applied)-1]
	ch := rec.changes[len(rec.changes)-1]
	rec.mu.Unlock()
	if last.Publish == nil || !last.Publish(ClassCritical) || last.Publish(ClassEvent) || last.Publish(ClassTelemetry) {
		t.Error("critical: publish filter does not allow only the critical class")
	}
	if ch.Level != LevelCritical || ch.PrevLevel != LevelNormal || ch.From != Parked || ch.To != DeepSleep {
		t.Errorf("critical change = %+v", ch)
	}
	// Recovery (the engine is running, charger connected).
	clk.Set(3000)
	set(st, ign, 2, 3000)
	set(st, volt, 14.0, 3000)
	e.Evaluate(clk.Now())
	if n, _ := e.Current(); n != DeepSleep {
		t.Errorf("right after recovery starts: %s, want deep_sleep (guard holds for recover_for)", n)
	}
	clk.Set(3060)
	e.Evaluate(clk.Now())
	if s := e.Status(); s.Name != Driving || s.Battery != LevelNormal || s.Publish != nil {
		t.Errorf("recovered: %+v", s)
	}
}

func TestEngineForce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Force = Parked
	e, st, clk, rec := testEngine(t, cfg)
	set(st, cfg.IgnitionSignal, 2, 0)
	e.Evaluate(clk.Now())
	if n, why := e.Current(); n != Parked || why != "forced by [profile] force" {
		t.Errorf("forced: %s (%s)", n, why)
	}
	e.Reapply()
	if len(rec.applied) != 1 || rec.applied[0].Name != Parked || rec.applied[0].Settings.KeepAlive != Duration(10*time.Minute) {
		t.Errorf("reapply: %+v", rec.applied)
	}
}

func TestBatteryHook(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Battery.Hook = []string{"echo", "cut modem"}
	cfg.Battery.CriticalFor = Duration(time.Second)
	var logs bytes.Buffer
	var mu sync.Mutex
	st := signals.New()
	clk := &clock{t: t0}
	e, err := New(Options{Config: cfg, Signals: st, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	set(st, cfg.BatterySignal, 11.0, 0)
	e.Evaluate(clk.Now())
	clk.Set(1)
	e.Evaluate(clk.Now())
	e.hooks.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "battery hook ran") || !strings.Contains(logs.String(), "cut modem") {
		t.Errorf("hook not run or not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRunEventDriven: Run applies the initial profile, follows signal
// changes, and switches at a rule deadline with no further input.
func TestRunEventDriven(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{{Profile: Driving, Ignition: "on"}, {Profile: Parked, Ignition: "off", For: Duration(200 * time.Millisecond)}}
	cfg.MinDwell = 0
	st := signals.New()
	rec := &recorder{}
	e, err := New(Options{Config: cfg, Signals: st, Apply: rec.apply, OnChange: rec.change, Coalesce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	st.Set(drivers.Sample{Name: cfg.IgnitionSignal, Value: 0, Time: time.Now(), Source: "body"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _ := e.Current(); n == Parked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not switch to parked at the rule's deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.applied) < 2 || rec.applied[0].Name != Driving || len(rec.changes) != 1 || rec.changes[0].To != Parked {
		t.Errorf("applied %d (first %+v), changes %+v", len(rec.applied), rec.applied, rec.changes)
	}
}

// TestBusFramesKeepTheBusAwake: frames that the sampling policy turned
// into no sample (deadbands, long heartbeats) still count as bus activity.
func TestBusFramesKeepTheBusAwake(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{{Profile: DeepSleep, BusSilentFor: Duration(time.Minute)}}
	st := signals.New()
	clk := &clock{t: t0}
	var frames uint64
	e, err := New(Options{Config: cfg, Signals: st, Now: clk.Now, BusFrames: func() uint64 { return frames }})
	if err != nil {
		t.Fatal(err)
	}
	for s := 30.0; s <= 300; s += 30 { // frames flow, no samples
		frames += 100
		clk.Set(s)
		e.Evaluate(clk.Now())
	}
	if n, _ := e.Current(); n != Driving {
		t.Fatalf("with frames flowing: %s", n)
	}
	clk.Set(359)
	if next := e.Evaluate(clk.Now()); !next.Equal(at(360)) {
		t.Errorf("next = %v, want the silence deadline at +360s", next.Sub(t0))
	}
	clk.Set(360)
	e.Evaluate(clk.Now())
	if n, why := e.Current(); n != DeepSleep || !strings.Contains(why, "bus silent for 1m0s") {
		t.Errorf("a minute without frames: %s (%s)", n, why)
	}
}

// TestBusSilenceCountsFromTheLastFrame: frames (no samples) flow until
// +100 s and stop; the engine, evaluated only at the deadlines it returns,
// applies an 80 s bus_silent_for rule at most 1/8 of it late (+180..190 s),
// not up to twice as late (the counter has no time stamp: the silence
// used to count from whichever evaluation first saw it unchanged).
func TestBusSilenceCountsFromTheLastFrame(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{{Profile: DeepSleep, BusSilentFor: Duration(80 * time.Second)}}
	st := signals.New()
	clk := &clock{t: t0}
	var frames uint64
	e, err := New(Options{Config: cfg, Signals: st, Now: clk.Now, BusFrames: func() uint64 { return frames }})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := 0; i < 100; i++ {
		next := e.Evaluate(now)
		if n, _ := e.Current(); n == DeepSleep {
			if s := now.Sub(t0).Seconds(); s < 180 || s > 190 {
				t.Fatalf("deep sleep at +%.0fs, want +180..190s (frames stopped at +100s, rule 80s)", s)
			}
			return
		}
		if next.IsZero() {
			t.Fatalf("no deadline at +%v with the rule pending", now.Sub(t0))
		}
		// Frames flowed between now and next, until +100 s.
		if now.Before(at(100)) {
			end := next
			if end.After(at(100)) {
				end = at(100)
			}
			frames += uint64(end.Sub(now) / time.Millisecond)
		}
		now = next
		clk.t = now
	}
	t.Fatal("never went to deep sleep")
}

func TestPublishFunc(t *testing.T) {
	if PublishFunc(nil) != nil {
		t.Error("no classes must mean nil (publish all)")
	}
	f := PublishFunc([]string{"critical", "event"})
	if !f(ClassCritical) || !f(ClassEvent) || f(ClassTelemetry) || f(200) {
		t.Error("filter wrong")
	}
}

// TestRunIdleDoesNotWake: parked on a silent bus, with the next rule
// deadlines hours away, Run evaluates nothing more: no ticking, a timer
// for the real deadline only (≤ 1 evaluation in 100 coalesce intervals).
func TestRunIdleDoesNotWake(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{
		{Profile: Driving, Ignition: "on"},
		{Profile: DeepSleep, BusSilentFor: Duration(time.Hour)},
		{Profile: DeepSleep, Ignition: "off", OffFor: Duration(4 * time.Hour)},
		{Profile: Parked, Ignition: "off", For: Duration(50 * time.Millisecond)},
	}
	cfg.MinDwell = 0
	st := signals.New()
	rec := &recorder{}
	var evals atomic.Int64 // BusFrames is read once per evaluation
	e, err := New(Options{Config: cfg, Signals: st, Apply: rec.apply, OnChange: rec.change, Coalesce: 10 * time.Millisecond,
		BusFrames: func() uint64 { evals.Add(1); return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	st.Set(drivers.Sample{Name: cfg.IgnitionSignal, Value: 0, Time: time.Now(), Source: "body"})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, _ := e.Current(); n == Parked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not parked 10 s after the ignition went off")
		}
	}
	time.Sleep(50 * time.Millisecond) // the evaluation that switched may still be returning
	before := evals.Load()
	time.Sleep(time.Second) // 100 coalesce intervals, nothing changes
	if n := evals.Load() - before; n > 1 {
		t.Errorf("%d evaluations in 1 s parked on a silent bus, want ≤ 1", n)
	}
}

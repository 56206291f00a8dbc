// Package profile selects the vehicle-state profile (driving, parked,
// deep_sleep, ... as configured) from declarative rules on live signals —
// ignition, speed, time since ignition off, bus silence, battery voltage —
// with entry hysteresis and a minimum dwell, and guards the 12 V battery
// (low and critical levels with time filters and a recovery threshold).
//
// The engine does not own the subsystems: it hands the effective profile
// to an Apply function (the agent turns it into setter calls on telemetry,
// the CAN drivers' sampling, GNSS duty cycle and the MQTT session) and each
// transition to an OnChange function (event record, log, shadow).
//
// It is event-driven: it wakes on a change of the signal table (coalesced
// to at most one evaluation per Coalesce) and on a timer set to the next
// time-based rule deadline only; a silent bus costs no wake-ups.
package profile

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// Options configure an Engine.
type Options struct {
	Config  Config
	Signals *signals.Store
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// BusSources are the driver names whose samples are bus activity;
	// empty means every source.
	BusSources []string
	// BusFrames, if set, returns a counter of bus frames: when it moved
	// since the last evaluation the bus is active even if the sampling
	// policy reported no sample (deadbands).
	BusFrames func() uint64
	// Apply applies the effective profile. It is called with the engine's
	// lock released, from one goroutine at a time.
	Apply func(Applied)
	// OnChange is called once per transition (after Apply).
	OnChange func(Change)
	// Coalesce is the shortest time between two evaluations triggered by
	// signal changes (default 1s).
	Coalesce time.Duration
}

// Applied is the effective profile: the chosen profile's settings, with
// the battery guard applied.
type Applied struct {
	Name     string
	Settings Settings
	Level    Level
	// Publish filters the classes the uplink publishes; nil = all.
	Publish func(class uint8) bool
	// PublishClasses names them (empty = all), for status.
	PublishClasses []string
}

// Change is one transition of the effective profile or battery level.
type Change struct {
	At        time.Time
	From, To  string
	Reason    string
	Level     Level
	PrevLevel Level
	Voltage   float64
}

// Status is the engine's state for `tcu-agent status`.
type Status struct {
	Name    string
	Reason  string
	Since   time.Time
	Rule    string // profile chosen by the rules (or forced)
	Forced  bool
	Battery Level
	// BatteryReason says why the guard is at its level.
	BatteryReason string
	Voltage       float64
	VoltageOK     bool
	Publish       []string
}

// Engine selects and applies profiles.
type Engine struct {
	opts Options
	log  *slog.Logger
	kick chan struct{}

	applyMu sync.Mutex // serialises Apply calls

	mu       sync.Mutex
	sel      *selector // guarded by mu
	guard    guard     // guarded by mu
	name     string    // guarded by mu; effective profile
	reason   string    // guarded by mu
	since    time.Time // guarded by mu
	ign      Ignition  // guarded by mu
	offSince time.Time // guarded by mu
	lastBus  time.Time // guarded by mu
	frames   uint64    // guarded by mu
	// moved: the frame counter moved at the last evaluation (guarded by
	// mu); probe is how soon to look again then (busProbe).
	moved  bool
	probe  time.Duration
	volt   float64 // guarded by mu
	voltOK bool    // guarded by mu
	hooks  sync.WaitGroup
}

// New validates opts and returns an engine in its initial (or forced)
// profile; nothing is applied until Run or Evaluate.
func New(opts Options) (*Engine, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if opts.Signals == nil {
		return nil, fmt.Errorf("profile: Signals is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = time.Second
	}
	now := opts.Now()
	e := &Engine{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1),
		sel: newSelector(&opts.Config, now), guard: guard{cfg: opts.Config.Battery, since: now}, since: now, lastBus: now}
	if opts.BusFrames != nil {
		e.frames = opts.BusFrames()
		e.probe = busProbe(opts.Config.Rules)
	}
	e.name, e.reason = e.effectiveLocked()
	return e, nil
}

// Current returns the effective profile and why it is in effect.
func (e *Engine) Current() (name, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.name, e.reason
}

// Status returns the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.appliedLocked()
	return Status{Name: e.name, Reason: e.reason, Since: e.since, Rule: e.ruleProfileLocked(), Forced: e.opts.Config.Force != "",
		Battery: e.guard.level, BatteryReason: e.guard.reason, Voltage: e.volt, VoltageOK: e.voltOK, Publish: a.PublishClasses}
}

// Reapply applies the current profile's overrides again (after the
// capture pipeline was rebuilt).
func (e *Engine) Reapply() {
	e.mu.Lock()
	a := e.appliedLocked()
	e.mu.Unlock()
	e.apply(a)
}

func (e *Engine) apply(a Applied) {
	if e.opts.Apply == nil {
		return
	}
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.opts.Apply(a)
}

// ruleProfileLocked is the profile the rules (or force) chose.
func (e *Engine) ruleProfileLocked() string {
	if f := e.opts.Config.Force; f != "" {
		return f
	}
	return e.sel.current
}

// effectiveLocked applies the battery guard to the rules' choice.
func (e *Engine) effectiveLocked() (name, reason string) {
	name = e.ruleProfileLocked()
	reason = e.sel.reason
	if e.opts.Config.Force != "" {
		reason = "forced by [profile] force"
	}
	if e.guard.level >= LevelLow {
		return e.opts.Config.Battery.LowProfile, fmt.Sprintf("battery guard %s: %s", e.guard.level, e.guard.reason)
	}
	return name, reason
}

func (e *Engine) appliedLocked() Applied {
	s := e.opts.Config.settings(e.name)
	a := Applied{Name: e.name, Settings: s, Level: e.guard.level, PublishClasses: s.Publish}
	if e.guard.level == LevelCritical {
		a.PublishClasses = []string{"critical"}
	}
	a.Publish = PublishFunc(a.PublishClasses)
	return a
}

// inputsLocked reads the live signals at now.
func (e *Engine) inputsLocked(now time.Time) Inputs {
	c := &e.opts.Config
	in := Inputs{Now: now}
	if s, ok := e.opts.Signals.Latest(c.IgnitionSignal); ok && c.IgnitionSignal != "" {
		on := slices.Contains(c.IgnitionOn, s.Value)
		switch {
		case on:
			e.ign = IgnitionOn
		case e.ign != IgnitionOff:
			e.ign = IgnitionOff
			e.offSince = sampleTime(s, now)
		}
	}
	in.Ignition, in.OffSince = e.ign, e.offSince
	if s, ok := e.opts.Signals.Latest(c.SpeedSignal); ok && c.SpeedSignal != "" {
		in.Speed, in.SpeedOK = s.Value, true
	}
	if s, ok := e.opts.Signals.Latest(c.BatterySignal); ok && c.BatterySignal != "" {
		in.Battery, in.BatteryOK = s.Value, true
		e.volt, e.voltOK = s.Value, true
	}
	for _, s := range e.opts.Signals.Snapshot() {
		if len(e.opts.BusSources) > 0 && !slices.Contains(e.opts.BusSources, s.Source) {
			continue
		}
		if t := sampleTime(s, now); t.After(e.lastBus) {
			e.lastBus = t
		}
	}
	if e.opts.BusFrames != nil {
		n := e.opts.BusFrames()
		e.moved = n != e.frames
		if e.moved {
			e.frames, e.lastBus = n, now
		}
	}
	in.LastBus = e.lastBus
	return in
}

// busProbe is how soon the engine looks at the frame counter again after
// it moved: an eighth of the shortest bus_silent_for among rules (0: no
// rule uses bus silence), so a bus_silent_for rule applies at most 1/8
// late; at the shipped 15 min, one look every 112 s while frames flow.
func busProbe(rules []Rule) time.Duration {
	var shortest time.Duration
	for _, r := range rules {
		if d := r.BusSilentFor.Std(); d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	return shortest / 8
}

// sampleTime is when s was taken, bounded by now (a sample stamped in the
// future does not extend activity).
func sampleTime(s drivers.Sample, now time.Time) time.Time {
	if s.Time.IsZero() || s.Time.After(now) {
		return now
	}
	return s.Time
}

// Evaluate reads the signals and applies the rules and the battery guard
// at now. It applies the profile and reports the transition when the
// effective profile or the battery level changed, and returns the next
// time a rule or the guard may change without a new signal (zero: none).
func (e *Engine) Evaluate(now time.Time) time.Time {
	e.mu.Lock()
	in := e.inputsLocked(now)
	_, next := e.sel.step(in)
	prevLevel := e.guard.level
	levelChanged, gnext := e.guard.step(now, in.Battery, in.BatteryOK)
	if !gnext.IsZero() && (next.IsZero() || gnext.Before(next)) {
		next = gnext
	}
	if e.moved && e.probe > 0 {
		// The frame counter has no time stamp: frames seen now came at
		// some point since the last evaluation. Look again soon, so that
		// the silence counts from at most probe after the last frame
		// rather than from whenever the next evaluation happens.
		if p := now.Add(e.probe); next.IsZero() || p.Before(next) {
			next = p
		}
	}
	from := e.name
	name, reason := e.effectiveLocked()
	if name == from && !levelChanged {
		e.reason = reason // a forced or guarded profile keeps its name, but the rules may have moved underneath
		e.mu.Unlock()
		return next
	}
	e.name, e.reason, e.since = name, reason, now
	ch := Change{At: now, From: from, To: name, Reason: reason, Level: e.guard.level, PrevLevel: prevLevel, Voltage: in.Battery}
	a := e.appliedLocked()
	e.mu.Unlock()
	e.log.Info("profile changed", "from", from, "to", name, "reason", reason, "battery", ch.Level.String())
	e.apply(a)
	if ch.Level == LevelCritical && ch.PrevLevel != LevelCritical {
		e.runHook()
	}
	if e.opts.OnChange != nil {
		e.opts.OnChange(ch)
	}
	return next
}

// Run applies the initial profile, then evaluates on every signal change
// (coalesced) and at rule deadlines until ctx ends. It waits for a
// running battery hook before it returns.
func (e *Engine) Run(ctx context.Context) error {
	defer e.hooks.Wait()
	e.Reapply()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	for {
		changed := e.opts.Signals.Changed()
		now := e.opts.Now()
		last = time.Now()
		next := e.Evaluate(now)
		if !next.IsZero() {
			timer.Reset(max(next.Sub(now), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
		case <-timer.C:
		case <-changed:
			// Coalesce: at most one evaluation per Coalesce while the
			// signals keep changing.
			if wait := e.opts.Coalesce - time.Since(last); wait > 0 {
				timer.Stop()
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				case <-e.kick:
				}
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// runHook starts the configured battery hook (argv, no shell) with its
// timeout and logs the result; it does not block the engine.
func (e *Engine) runHook() {
	b := e.opts.Config.Battery
	if len(b.Hook) == 0 {
		return
	}
	e.hooks.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.HookTimeout.Std())
		defer cancel()
		start := time.Now()
		out, err := exec.CommandContext(ctx, b.Hook[0], b.Hook[1:]...).CombinedOutput()
		text := strings.TrimSpace(string(out))
		if len(text) > 1024 {
			text = text[:1024] + "…"
		}
		if err != nil {
			e.log.Error("battery hook failed", "argv", b.Hook, "err", err, "output", text, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		e.log.Info("battery hook ran", "argv", b.Hook, "output", text, "took", time.Since(start).Round(time.Millisecond))
	})
}

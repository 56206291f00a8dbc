package agent

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/profile"
	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
)

// profileState wires the vehicle-state profile engine (agent/profile) to
// the subsystems it tunes. The engine runs only when the config has a
// [profile] section.
type profileState struct {
	mu      sync.Mutex
	engine  *profile.Engine
	applied *profile.Applied // guarded by mu; last applied
	sess    *uplink.Session  // guarded by mu; the running MQTT session
	shadow  *uplink.Shadow   // guarded by mu
	procs   procs            // the profile's gomaxprocs
}

// ProfileEngine returns the profile engine, nil when profiles are off
// (for hot apply: call Reapply after rebuilding the capture side).
func (a *Agent) ProfileEngine() *profile.Engine {
	a.profile.mu.Lock()
	defer a.profile.mu.Unlock()
	return a.profile.engine
}

// startProfile starts the profile engine (if configured) on the running
// pipeline and drivers; it stops with ctx.
func (a *Agent) startProfile(ctx context.Context, wg *sync.WaitGroup, st *store) {
	if !a.cfg.Present["profile"] {
		return
	}
	pc := a.sec.Profile
	sources := pc.BusSources
	if len(sources) == 0 {
		for _, d := range a.cfg.Drivers {
			if d.Kind != "gnss" {
				sources = append(sources, d.Name)
			}
		}
	}
	e, err := profile.New(profile.Options{
		Config: pc, Signals: a.signals, Logger: a.log.With("component", "profile"), Now: a.now,
		BusSources: sources, BusFrames: func() uint64 { return a.busFrames(sources) },
		Apply:    a.applyProfile,
		OnChange: func(c profile.Change) { a.profileChanged(ctx, st, c) },
	})
	if err != nil { // validated at load: a bug, not a reason to stop capture
		a.log.Error("profile engine not started", "err", err)
		return
	}
	a.profile.mu.Lock()
	a.profile.engine = e
	a.profile.mu.Unlock()
	// A live configuration change rebuilds drivers or the pipeline: the
	// profile in effect applies to the new ones at once.
	a.OnCaptureSwap(e.Reapply)
	wg.Go(func() { // stops with ctx
		_ = e.Run(ctx)
		a.profile.procs.apply(0) // the runtime's own GOMAXPROCS again
	})
}

// busFrames sums the frame counters of the bus drivers.
func (a *Agent) busFrames(sources []string) uint64 {
	var n uint64
	for _, s := range a.supervisors() {
		for _, src := range sources {
			if s.name == src {
				n += driverCounters(s.drv)["frames"]
			}
		}
	}
	return n
}

// dutyCycler is a driver whose reading can be duty-cycled (gnss).
type dutyCycler interface {
	SetDutyCycle(window, period time.Duration)
}

// sampler is a driver whose signals' sampling can be overridden (can,
// candump).
type sampler interface{ SetSampling([]canmap.Override) }

// applyProfile turns the effective profile into setter calls. Zero
// settings restore the configured values.
func (a *Agent) applyProfile(p profile.Applied) {
	set := p.Settings
	a.profile.procs.apply(set.GOMAXPROCS)
	a.mu.Lock()
	pipe := a.pipe
	a.mu.Unlock()
	if pipe != nil {
		pipe.SetInterval(set.TelemetryInterval.Std())
	}
	ov := make([]canmap.Override, 0, len(set.Signals))
	for _, s := range set.Signals {
		o := canmap.Override{Match: s.Match, Deadband: s.Deadband, DeadbandPct: s.DeadbandPct}
		if s.MinInterval != nil {
			d := s.MinInterval.Std()
			o.MinInterval = &d
		}
		if s.Heartbeat != nil {
			d := s.Heartbeat.Std()
			o.Heartbeat = &d
		}
		ov = append(ov, o)
	}
	if len(ov) > 0 {
		// The inputs of command interlocks and feedback keep their
		// configured sampling: a profile must never make a command that
		// the interlocks would allow fail on a stale input.
		for _, name := range a.commandInputs() {
			ov = append(ov, canmap.Override{Match: name, Keep: true})
		}
	}
	for _, sup := range a.supervisors() {
		if s, ok := sup.drv.(sampler); ok {
			s.SetSampling(ov)
		}
		if g, ok := sup.drv.(dutyCycler); ok {
			g.SetDutyCycle(set.GNSSWindow.Std(), set.GNSSPeriod.Std())
		}
	}
	a.profile.mu.Lock()
	defer a.profile.mu.Unlock()
	a.profile.applied = &p
	if a.profile.sess != nil {
		a.applySession(a.profile.sess, p)
	}
	if a.profile.shadow != nil {
		a.shadowProfile(a.profile.shadow)
	}
}

// commandInputs are the signals the command engine reads: interlock
// inputs and feedback.
func (a *Agent) commandInputs() []string {
	var out []string
	for _, il := range a.sec.Commands.Interlocks {
		out = append(out, il.Signal)
	}
	for _, c := range a.sec.Commands.Commands {
		if c.Feedback != "" {
			out = append(out, c.Feedback)
		}
	}
	return out
}

// applySession applies the uplink part of p. Called with profile.mu held.
func (a *Agent) applySession(sess *uplink.Session, p profile.Applied) {
	ka, bl := p.Settings.KeepAlive.Std(), p.Settings.BatchLatency.Std()
	if ka == 0 {
		ka = a.sec.MQTT.KeepAlive.Std()
	}
	if bl == 0 {
		bl = a.sec.MQTT.BatchLatency.Std()
	}
	sess.SetKeepAlive(ka)
	sess.SetBatchLatency(bl)
	sess.SetPublishClasses(uplinkClasses(p.Publish))
}

// uplinkClasses adapts a profile's class filter, which numbers classes as
// the buffer does, to the uplink's numbering (telemetry 0, event 1,
// critical 2). Nil stays nil: every class.
func uplinkClasses(allow func(class uint8) bool) func(class uint8) bool {
	if allow == nil {
		return nil
	}
	return func(c uint8) bool {
		switch uplink.Class(c) {
		case uplink.ClassCritical:
			return allow(profile.ClassCritical)
		case uplink.ClassEvent:
			return allow(profile.ClassEvent)
		case uplink.ClassTelemetry:
			return allow(profile.ClassTelemetry)
		}
		return false
	}
}

// profileSession hands a new MQTT session and its shadow to the profile
// wiring: the profile in effect applies to it at once, and transitions
// are reported in the shadow. Nil (at the session's end) detaches them.
func (a *Agent) profileSession(sess *uplink.Session, sh *uplink.Shadow) {
	a.profile.mu.Lock()
	defer a.profile.mu.Unlock()
	a.profile.sess, a.profile.shadow = sess, sh
	if sess != nil && a.profile.applied != nil {
		a.applySession(sess, *a.profile.applied)
	}
	if sh != nil {
		a.shadowProfile(sh)
	}
}

// shadowProfile reports the profile in the shadow. Called with
// profile.mu held.
func (a *Agent) shadowProfile(sh *uplink.Shadow) {
	e := a.profile.engine
	if e == nil {
		return
	}
	s := e.Status()
	sh.Update("profile", s.Name)
	sh.Update("profile_reason", s.Reason)
	sh.Update("battery_guard", s.Battery.String())
}

// profileEvent is the body of a profile transition (event class) or a
// battery alarm (critical class) record.
type profileEvent struct {
	Type    string   `json:"type"` // "profile_change" or "alarm"
	Alarm   string   `json:"alarm,omitempty"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	Reason  string   `json:"reason"`
	Battery string   `json:"battery"`
	Voltage *float64 `json:"voltage,omitempty"`
}

// profileChanged records a transition: an event record, and on entering
// battery critical an alarm in the critical class, which the uplink keeps
// publishing while everything else stays buffered.
func (a *Agent) profileChanged(ctx context.Context, st *store, c profile.Change) {
	ev := profileEvent{Type: "profile_change", From: c.From, To: c.To, Reason: c.Reason, Battery: c.Level.String()}
	if c.Voltage > 0 {
		v := c.Voltage
		ev.Voltage = &v
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if b, err := a.profileRecord(c.At, ev); err == nil {
		if err := st.append(actx, telemetry.ClassEvent, [][]byte{b}); err != nil {
			a.log.Warn("profile change event not buffered", "err", err)
		}
	}
	if c.Level == profile.LevelCritical && c.PrevLevel != profile.LevelCritical {
		ev.Type, ev.Alarm = "alarm", "battery_critical"
		b, err := a.profileRecord(c.At, ev)
		if err != nil {
			return
		}
		if q := st.queue(); q != nil {
			_, err = q.Append(actx, buffer.ClassCritical, b)
		} else { // the buffer is not open: held with the events
			err = st.append(actx, telemetry.ClassEvent, [][]byte{b})
		}
		if err != nil {
			a.log.Error("battery alarm not buffered", "err", err)
		}
	}
}

func (a *Agent) profileRecord(at time.Time, ev profileEvent) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return record.Record{Kind: record.KindEvent, Time: at, Body: body}.Marshal()
}

// profileStatus is the status document's profile part.
func (a *Agent) profileStatus() *ctl.Profile {
	e := a.ProfileEngine()
	if e == nil {
		return nil
	}
	s := e.Status()
	p := &ctl.Profile{Name: s.Name, Reason: s.Reason, Since: s.Since, Forced: s.Forced,
		Battery: s.Battery.String(), BatteryReason: s.BatteryReason, Publish: s.Publish}
	if s.VoltageOK {
		v := s.Voltage
		p.Voltage = &v
	}
	a.mu.Lock()
	pipe := a.pipe
	a.mu.Unlock()
	if pipe != nil {
		p.TelemetryIntervalSeconds = pipe.Interval().Seconds()
	}
	return p
}

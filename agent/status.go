package agent

import (
	"sort"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/metrics"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// identityInfo is what the status shows about the identity in use.
type identityInfo struct {
	thing    string
	source   string // fleet, est, static, development, provisioning
	notAfter time.Time
}

// commandLog remembers the last command outcome and counts outcomes.
type commandLog struct {
	mu       sync.Mutex
	last     *ctl.Command      // guarded by mu
	outcomes map[string]uint64 // guarded by mu; by status
}

// wakeCount sums the vehicle network wake-ups sent for commands over the
// agent's life: an engine lives as long as one run of the cloud side, its
// Stats count from zero. Its own mutex: the engine's locks are taken
// under it, never the other way round.
type wakeCount struct {
	mu      sync.Mutex
	engine  *command.Engine // guarded by mu; the running engine, if any
	retired uint64          // guarded by mu; wake-ups of the engines that ended
}

// set makes e (nil: none) the running engine, keeping the previous one's
// wake-ups.
func (w *wakeCount) set(e *command.Engine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.engine != nil {
		w.retired += w.engine.Stats().Wakes
	}
	w.engine = e
}

// total returns the wake-ups since the agent started.
func (w *wakeCount) total() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.retired
	if w.engine != nil {
		n += w.engine.Stats().Wakes
	}
	return n
}

func (l *commandLog) record(r command.Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = &ctl.Command{ID: r.ID, Status: string(r.Status), Reason: r.ReasonCode, At: r.Time()}
	if r.Final() {
		if l.outcomes == nil {
			l.outcomes = map[string]uint64{}
		}
		l.outcomes[string(r.Status)]++
	}
}

// rates turns cumulative frame counters into frames per second.
type rates struct {
	mu   sync.Mutex
	prev map[string]rateSample // guarded by mu
}

type rateSample struct {
	n    uint64
	at   time.Time
	rate float64
}

// rate returns the last computed rate of name.
func (r *rates) rate(name string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prev[name].rate
}

func (r *rates) update(name string, n uint64, now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		r.prev = map[string]rateSample{}
	}
	p, ok := r.prev[name]
	if !ok {
		r.prev[name] = rateSample{n: n, at: now}
		return 0
	}
	if n < p.n { // a new driver instance (config applied): count from here
		r.prev[name] = rateSample{n: n, at: now, rate: p.rate}
		return p.rate
	}
	if dt := now.Sub(p.at).Seconds(); dt >= 0.5 && n >= p.n {
		p = rateSample{n: n, at: now, rate: float64(n-p.n) / dt}
		r.prev[name] = p
	}
	return p.rate
}

// status builds the control socket's status document.
func (a *Agent) status() ctl.Status {
	now := a.now()
	a.mu.Lock()
	id, sess := a.ident, a.session
	a.mu.Unlock()
	st := ctl.Status{Version: a.version, Time: now, StartedAt: a.started}
	st.Identity = ctl.Identity{Thing: id.thing, Source: id.source, CertExpiry: id.notAfter, VIN: vehicleVIN(a.runningConfig())}
	st.Connection = ctl.Connection{State: "connecting", Endpoint: a.sec.MQTT.Broker}
	if id.thing == "" {
		st.Connection.State = "offline"
	}
	if sess != nil {
		ss := sess.Stats()
		if ss.Connected {
			st.Connection.State = "connected"
		}
		st.Connection.Reconnects, st.Connection.Published, st.Connection.Acked = ss.Reconnects, ss.Published, ss.Acked
		st.Connection.LastError = ss.LastError
	}
	qs := a.queueStats()
	for c := buffer.Class(0); c < buffer.NumClasses; c++ {
		cs := qs.Classes[c]
		st.Queues = append(st.Queues, ctl.Queue{Class: c.String(), Records: cs.Records, Bytes: cs.Bytes,
			OldestUnsentSeconds: cs.OldestAge.Seconds(), Evicted: cs.Evicted, Shed: cs.Shed, Expired: cs.Expired})
		st.OldestUnsentSeconds = max(st.OldestUnsentSeconds, cs.OldestAge.Seconds())
	}
	st.Store = ctl.Store{Leased: qs.Leased, Appends: qs.Appends, Syncs: qs.Syncs, Corrupt: qs.Corrupt, Torn: qs.Torn, DiskBytes: qs.DiskBytes,
		Closed: qs.StoreClosed, Reopens: qs.StoreOpens}
	if s := a.currentStore(); s != nil {
		st.Store.Held, st.Store.HeldDropped = s.heldN.Load(), s.drops.Load()
	}
	a.sampleRates() // the probe samples only once per watchdog period; a query refreshes the rate
	for _, s := range a.supervisors() {
		state, _, lastErr := s.status()
		if lr, ok := s.drv.(drivers.LinkReporter); ok && state == driverRunning {
			if up, why := lr.Link(); !up { // reconnecting inside Run
				state, lastErr = driverRetrying, why
			}
		}
		c := driverCounters(s.drv)
		st.Buses = append(st.Buses, ctl.Bus{
			Name: s.name, Driver: s.name, State: state.String(),
			Frames: c["frames"], FramesPerSec: a.rates.rate(s.name),
			DecodeErrors: c["decode_errors"], KernelDrops: c["drops"], Errors: c["tx_errors"], LastError: lastErr,
		})
	}
	a.cmds.mu.Lock()
	if a.cmds.last != nil {
		c := *a.cmds.last
		st.LastCommand = &c
	}
	st.Commands = ctl.Commands{Succeeded: a.cmds.outcomes[string(command.StatusSucceeded)], Failed: a.cmds.outcomes[string(command.StatusFailed)],
		Rejected: a.cmds.outcomes[string(command.StatusRejected)], TimedOut: a.cmds.outcomes[string(command.StatusTimedOut)]}
	a.cmds.mu.Unlock()
	st.Commands.Wakes = a.wakes.total()
	st.Profile = a.profileStatus()
	st.Config = a.bundleStatus()
	h := a.health.Snapshot()
	ok, why := a.health.Healthy(healthMaxAge)
	st.Health = ctl.Health{OK: ok, Why: why}
	for _, l := range h.Loops {
		st.Health.Loops = append(st.Health.Loops, ctl.Loop{Name: l.Name, Critical: l.Critical, AgeSeconds: l.Age.Seconds()})
	}
	for _, d := range h.Degraded {
		st.Health.Degraded = append(st.Health.Degraded, ctl.Degraded{Component: d.Component, Reason: d.Reason, Since: d.Since})
	}
	return st
}

// metrics builds the Prometheus registry; every value is read at scrape time.
func (a *Agent) metrics() *metrics.Registry {
	r := metrics.New()
	r.RegisterRuntime() // go_* and process_*: what stock dashboards expect
	r.CollectFunc("tcu_queue_records", "Records in the store-and-forward queue.", metrics.TypeGauge, []string{"class"}, func(emit metrics.EmitFunc) {
		qs := a.queueStats()
		for c := buffer.Class(0); c < buffer.NumClasses; c++ {
			emit(float64(qs.Classes[c].Records), c.String())
		}
	})
	r.CollectFunc("tcu_queue_bytes", "Bytes in the store-and-forward queue.", metrics.TypeGauge, []string{"class"}, func(emit metrics.EmitFunc) {
		qs := a.queueStats()
		for c := buffer.Class(0); c < buffer.NumClasses; c++ {
			emit(float64(qs.Classes[c].Bytes), c.String())
		}
	})
	r.CollectFunc("tcu_queue_evictions_total", "Records evicted because the queue was full.", metrics.TypeCounter, []string{"class"}, func(emit metrics.EmitFunc) {
		qs := a.queueStats()
		for c := buffer.Class(0); c < buffer.NumClasses; c++ {
			emit(float64(qs.Classes[c].Evicted), c.String())
		}
	})
	r.CollectFunc("tcu_queue_dropped_total", "Records refused (shed) or dropped by TTL.", metrics.TypeCounter, []string{"class", "reason"}, func(emit metrics.EmitFunc) {
		qs := a.queueStats()
		for c := buffer.Class(0); c < buffer.NumClasses; c++ {
			emit(float64(qs.Classes[c].Shed), c.String(), "shed")
			emit(float64(qs.Classes[c].Expired), c.String(), "expired")
		}
	})
	r.GaugeFunc("tcu_records_held", "Records held in memory because the store refuses them (storage fault).", func() float64 {
		if s := a.currentStore(); s != nil {
			return float64(s.heldN.Load())
		}
		return 0
	})
	r.CounterFunc("tcu_records_held_dropped_total", "Records held in memory and lost (over the bound, or never taken by the store).", func() float64 {
		if s := a.currentStore(); s != nil {
			return float64(s.drops.Load())
		}
		return 0
	})
	r.CollectFunc("tcu_degraded", "1 for each component working in a degraded mode (see tcu-agent status).", metrics.TypeGauge, []string{"component"}, func(emit metrics.EmitFunc) {
		for _, d := range a.health.Snapshot().Degraded {
			emit(1, d.Component)
		}
	})
	r.CounterFunc("tcu_queue_appends_total", "Records appended to the queue.", func() float64 { return float64(a.queueStats().Appends) })
	r.CounterFunc("tcu_queue_syncs_total", "Store syncs (flash flushes) of the queue.", func() float64 { return float64(a.queueStats().Syncs) })
	r.CounterFunc("tcu_queue_corrupt_total", "Records dropped because their stored chunk did not decode.", func() float64 { return float64(a.queueStats().Corrupt) })
	r.GaugeFunc("tcu_queue_store_closed", "1 while the queue's store is closed for idleness ([buffer] idle_close).", func() float64 {
		if a.queueStats().StoreClosed {
			return 1
		}
		return 0
	})
	r.CounterFunc("tcu_queue_store_reopens_total", "Reopens of the queue's store after an idle close.", func() float64 { return float64(a.queueStats().StoreOpens) })
	r.GaugeFunc("tcu_queue_disk_bytes", "Size of the queue's store directory at the last GC pass.", func() float64 { return float64(a.queueStats().DiskBytes) })
	r.GaugeFunc("tcu_queue_oldest_unsent_seconds", "Age of the oldest unacknowledged record.", func() float64 { return a.status().OldestUnsentSeconds })
	r.CollectFunc("tcu_driver_counter_total", "Driver counters (frames, decode_errors, drops, ...) per bus.", metrics.TypeCounter, []string{"bus", "counter"}, func(emit metrics.EmitFunc) {
		for _, s := range a.supervisors() {
			c := driverCounters(s.drv)
			keys := make([]string, 0, len(c))
			for k := range c {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				emit(float64(c[k]), s.name, k)
			}
		}
	})
	r.CollectFunc("tcu_bus_frames_per_second", "Frames received per second per bus.", metrics.TypeGauge, []string{"bus"}, func(emit metrics.EmitFunc) {
		for _, b := range a.status().Buses {
			emit(b.FramesPerSec, b.Name)
		}
	})
	r.CollectFunc("tcu_mqtt_total", "MQTT session counters.", metrics.TypeCounter, []string{"counter"}, func(emit metrics.EmitFunc) {
		a.mu.Lock()
		sess := a.session
		a.mu.Unlock()
		if sess == nil {
			return
		}
		ss := sess.Stats()
		emit(float64(ss.Published), "published")
		emit(float64(ss.Acked), "acked")
		emit(float64(ss.Reconnects), "reconnects")
		emit(float64(ss.ConnectFailures), "connect_failures")
		emit(float64(ss.DroppedRecords), "dropped_records")
	})
	r.CollectFunc("tcu_commands_total", "Remote command outcomes by final status.", metrics.TypeCounter, []string{"status"}, func(emit metrics.EmitFunc) {
		a.cmds.mu.Lock()
		defer a.cmds.mu.Unlock()
		for _, s := range []string{"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"} {
			emit(float64(a.cmds.outcomes[s]), s)
		}
	})
	r.CounterFunc("tcu_command_wakes_total", "Wake-ups of the vehicle network sent for remote commands whose interlock inputs were stale (coalesced wake-ups count once).", func() float64 {
		return float64(a.wakes.total())
	})
	r.CollectFunc("tcu_profile", "1 for the vehicle-state profile in effect, with the battery guard's level.", metrics.TypeGauge, []string{"profile", "battery"}, func(emit metrics.EmitFunc) {
		if p := a.profileStatus(); p != nil {
			emit(1, p.Name, p.Battery)
		}
	})
	r.CounterFunc("tcu_samples_dropped_total", "Samples dropped because the telemetry pipeline fell behind.", func() float64 {
		return float64(a.samplesDropped())
	})
	a.applyMetrics(r)
	return r
}

func (a *Agent) currentStore() *store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store
}

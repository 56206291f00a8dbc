package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/agent/metrics"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// ApplyResult says what ApplyConfig did.
type ApplyResult struct {
	// Live is true when the configuration now runs (applied in process,
	// or nothing to change); false when RestartSections need a restart
	// and nothing was changed.
	Live bool
	// RestartSections are the sections that differ and cannot be applied
	// in process (sorted), when Live is false.
	RestartSections []string
	// Gap is the longest capture gap of one bus during the apply: the time
	// from the switch (or, for a serial device closed first, from its old
	// driver's stop) to its new driver's first delivered sample. Zero when
	// every changed driver was already sending samples at the switch.
	Gap time.Duration
}

// Apply timing. readyWait bounds how long ApplyConfig waits for new
// drivers to come up (a driver that does not fails the apply); flowWait how
// long it waits for a new driver's first sample after the switch when it
// had not sent one before (for measuring the gap); readySettle is how long
// a driver without a link report must run without error to count as up.
const (
	readyWait = 5 * time.Second
	// breakWait replaces readyWait when a device was closed for its
	// successor: the gap lasts as long as the wait.
	breakWait   = 1500 * time.Millisecond
	flowWait    = 2 * time.Second
	readySettle = 300 * time.Millisecond
	readyPoll   = 20 * time.Millisecond
)

// ErrNotRunning is returned by ApplyConfig when capture is not running
// (before Run started it, or once Run is stopping).
var ErrNotRunning = errors.New("capture is not running")

// epoch is the monotonic origin of the gates' timestamps.
var epoch = time.Now()

func mono() time.Duration { return time.Since(epoch) }

// router is the agent's emit path: every driver emits into its own gate,
// and the router forwards the samples of the gates that are live to the
// current telemetry pipeline. ApplyConfig switches pipeline and live gates
// in one step under mu, so no sample goes to a pipeline that is stopping
// and no bus is delivered twice.
type router struct {
	mu   sync.RWMutex
	pipe *telemetry.Pipeline // guarded by mu
	live map[*gate]bool      // guarded by mu; replaced whole, never mutated
}

func (r *router) set(p *telemetry.Pipeline, live map[*gate]bool) {
	r.mu.Lock()
	r.pipe, r.live = p, live
	r.mu.Unlock()
}

// gate is one driver instance's sink.
type gate struct {
	r *router
	// emitted is closed by the driver's first sample, delivered or not.
	emitted chan struct{}
	once    sync.Once
	// first is when the first delivered sample went through (mono); 0 = none.
	first atomic.Int64
}

func newGate(r *router) *gate { return &gate{r: r, emitted: make(chan struct{})} }

// Emit implements drivers.Sink; it never blocks on more than the router's
// switch (a few assignments).
func (g *gate) Emit(s drivers.Sample) {
	g.once.Do(func() { close(g.emitted) })
	g.r.mu.RLock()
	if g.r.live[g] {
		g.r.pipe.Emit(s)
		if g.first.Load() == 0 {
			g.first.CompareAndSwap(0, int64(mono()))
		}
	}
	g.r.mu.RUnlock()
}

func (g *gate) hasEmitted() bool {
	select {
	case <-g.emitted:
		return true
	default:
		return false
	}
}

// capDriver is one running driver instance.
type capDriver struct {
	cfg    config.Driver
	fp     string // fingerprint: the table and the content of the files it names
	sup    *supervisor
	gate   *gate
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Duration // mono
}

func (d *capDriver) stop() {
	d.cancel()
	<-d.done
}

// capPipe is one running telemetry pipeline.
type capPipe struct {
	p      *telemetry.Pipeline
	tel    config.Telemetry
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *capPipe) stop() {
	p.cancel()
	<-p.done
}

// capture is the running capture side: drivers → router → pipeline. Its
// mutex serialises start, ApplyConfig and stop.
type capture struct {
	mu      sync.Mutex
	base    context.Context // guarded by mu; parent of every driver's and pipeline's context
	running bool            // guarded by mu
	drivers []*capDriver    // guarded by mu
	pipe    *capPipe        // guarded by mu
	loop    *health.Loop    // guarded by mu
	store   *store          // guarded by mu
	router  router
	// quit is closed when Run starts stopping: an apply in progress gives up.
	quit     chan struct{}
	quitOnce sync.Once

	// afterSwap run after every swap, in order, under mu.
	afterSwap []func() // guarded by mu

	// Counters for metrics.
	applies   sync.Map // result string → *atomic.Uint64
	lastGap   atomic.Int64
	gapTotal  atomic.Int64
	pipeDrops atomic.Uint64 // samples dropped by pipelines since replaced
}

func (c *capture) count(result string) {
	v, _ := c.applies.LoadOrStore(result, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// OnCaptureSwap registers f to run after every ApplyConfig that rebuilt the
// capture side (new drivers or pipeline), before ApplyConfig returns.
//
// The profile wiring (profile_wire.go) registers the profile engine's
// Reapply here, so that the current profile's overrides (sampling,
// interval) apply to the new drivers and pipeline.
func (a *Agent) OnCaptureSwap(f func()) {
	a.capt.mu.Lock()
	defer a.capt.mu.Unlock()
	a.capt.afterSwap = append(a.capt.afterSwap, f)
}

// captureSwapped runs the OnCaptureSwap hooks. Called with capt.mu held.
func (a *Agent) captureSwapped() {
	for _, f := range a.capt.afterSwap {
		f()
	}
}

// startCapture starts the pipeline and every configured driver. The
// drivers and pipeline run until stopCapture, independently of ctx.
func (a *Agent) startCapture(ctx context.Context, st *store) error {
	c := &a.capt
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.store = context.WithoutCancel(ctx), st
	c.loop = a.health.Loop("telemetry", true)
	p, err := a.newPipe(a.cfg.Telemetry, nil)
	if err != nil {
		c.loop.Close()
		return err
	}
	live := map[*gate]bool{}
	for _, d := range a.cfg.Drivers {
		cd := a.startDriver(d, fingerprint(d, a.cfg))
		c.drivers = append(c.drivers, cd)
		live[cd.gate] = true
	}
	c.router.set(p.p, live)
	a.runPipe(p)
	c.pipe = p
	c.running = true
	a.publishCapture()
	return nil
}

// stopCapture stops the drivers, then the pipeline, which writes every
// sample the drivers emitted (within stopGrace). An apply in progress is
// abandoned first.
func (a *Agent) stopCapture() {
	c := &a.capt
	c.quitOnce.Do(func() { close(c.quit) })
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	c.running = false
	var wg sync.WaitGroup
	for _, d := range c.drivers {
		wg.Go(d.stop)
	}
	wg.Wait()
	c.pipe.stop()
	c.loop.Close()
}

// newPipe builds (does not start) a pipeline for tel.
func (a *Agent) newPipe(tel config.Telemetry, seed []drivers.Sample) (*capPipe, error) {
	c := &a.capt
	p, err := telemetry.New(telemetry.Options{
		Interval:   tel.Interval.Std(),
		Events:     tel.Events,
		MaxPending: tel.MaxPending,
		Append:     c.store.append,
		Observe:    a.signals.Set,
		Logger:     a.log.With("component", "telemetry"),
		Now:        a.now,
		StopGrace:  stopGrace,
		Seed:       seed,
	})
	if err != nil {
		return nil, err
	}
	p.SetHeartbeat(c.loop.Beat)
	p.SetIdle(c.loop.Idle)
	return &capPipe{p: p, tel: tel, done: make(chan struct{})}, nil
}

func (a *Agent) runPipe(p *capPipe) {
	ctx, cancel := context.WithCancel(a.capt.base)
	p.cancel = cancel
	go func() { // ends with p.stop
		defer close(p.done)
		_ = p.p.Run(ctx)
	}()
}

// startDriver starts d under a supervisor of its own, emitting into a new
// gate (not yet live unless the caller makes it so).
func (a *Agent) startDriver(d config.Driver, fp string) *capDriver {
	g := newGate(&a.capt.router)
	s := newSupervisor(d.Name, d.Driver, g, a.log)
	ctx, cancel := context.WithCancel(a.capt.base)
	cd := &capDriver{cfg: d, fp: fp, sup: s, gate: g, cancel: cancel, done: make(chan struct{}), start: mono()}
	go func() { // ends with cd.stop
		defer close(cd.done)
		s.run(ctx)
	}()
	return cd
}

// publishCapture makes the current drivers and pipeline visible to status,
// metrics and the command engine's transmitter lookup. Called with
// capt.mu held.
func (a *Agent) publishCapture() {
	sups := make([]*supervisor, len(a.capt.drivers))
	for i, d := range a.capt.drivers {
		sups[i] = d.sup
	}
	a.mu.Lock()
	a.sups, a.pipe = sups, a.capt.pipe.p
	a.mu.Unlock()
}

// currentTransmitter returns the running driver named bus if it transmits.
func (a *Agent) currentTransmitter(bus string) (drivers.Transmitter, bool) {
	for _, s := range a.supervisors() {
		if s.name == bus {
			t, ok := s.drv.(drivers.Transmitter)
			return t, ok
		}
	}
	return nil, false
}

// busTransmitter transmits on whichever driver instance runs bus now.
type busTransmitter struct {
	a   *Agent
	bus string
}

// Transmit implements drivers.Transmitter.
func (b busTransmitter) Transmit(ctx context.Context, message string, signals map[string]float64) error {
	t, ok := b.a.currentTransmitter(b.bus)
	if !ok {
		return fmt.Errorf("bus %s: no transmitting driver since the configuration changed", b.bus)
	}
	return t.Transmit(ctx, message, signals)
}

// runningConfig is the start configuration with the drivers running now
// (for the VIN a driver read).
func (a *Agent) runningConfig() *config.Config {
	c := *a.cfg
	c.Drivers = nil
	for _, s := range a.supervisors() {
		c.Drivers = append(c.Drivers, config.Driver{Name: s.name, Driver: s.drv})
	}
	return &c
}

// supervisors returns the running drivers' supervisors.
func (a *Agent) supervisors() []*supervisor {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sups
}

// samplesDropped counts the samples every pipeline (current and replaced)
// dropped.
func (a *Agent) samplesDropped() uint64 {
	a.mu.Lock()
	p := a.pipe
	a.mu.Unlock()
	n := a.capt.pipeDrops.Load()
	if p != nil {
		n += p.Stats().Dropped
	}
	return n
}

// fingerprint identifies a driver's configuration: its table, with every
// string that names a regular file (a DBC, a signal map) followed by that
// file's SHA-256, so that an edited DBC under the same name is a change. A
// driver without a table (built in code) never equals another.
func fingerprint(d config.Driver, cfg *config.Config) string {
	if d.Table == nil {
		return fmt.Sprintf("%s/%p", d.Name, d.Driver)
	}
	b, err := json.Marshal(withFileHashes(d.Table, cfg))
	if err != nil {
		return fmt.Sprintf("%s/%p", d.Name, d.Driver)
	}
	return d.Kind + ":" + string(b)
}

func withFileHashes(v any, cfg *config.Config) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = withFileHashes(e, cfg)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = withFileHashes(e, cfg)
		}
		return l
	case string:
		p := cfg.ResolvePath(x)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				h := sha256.Sum256(b)
				return "file:" + hex.EncodeToString(h[:])
			}
		}
		return x
	}
	return v
}

// exclusive reports whether d's device can be opened only once (a serial
// port), so that its replacement must wait until it is closed
// (break-before-make). SocketCAN and the virtual bus take a second socket
// on the same bus (make-before-break).
func exclusive(d config.Driver) bool {
	if e, ok := d.Driver.(interface{ ExclusiveDevice() bool }); ok {
		return e.ExclusiveDevice()
	}
	return d.Kind == "gnss"
}

// ApplyConfig makes cfg (loaded by LoadConfig from path, the file its
// [mqtt], [provisioning] and [commands] sections are read from again) the
// running configuration where that needs no restart.
//
// It compares cfg with the running configuration section by section. If
// only capture-side sections differ (the [[driver]] list with its signals
// and DBC files, [telemetry] interval and events) and [agent] log_level,
// it swaps them in process: drivers whose configuration changed are
// started next to the old ones (a serial device is closed first), and once
// they are up the emit path switches to them and to a new telemetry
// pipeline in one step; then the old ones are stopped. Unchanged drivers
// keep running. The buffer, the uplink session, the command engine and the
// identity are not touched. If a new driver does not come up, the old ones
// keep (or are restored to) running and an error is returned: nothing
// changed.
//
// Otherwise it returns Live=false with the sections that need a restart
// and changes nothing.
func (a *Agent) ApplyConfig(ctx context.Context, cfg *config.Config, path string) (ApplyResult, error) {
	if cfg == nil {
		return ApplyResult{}, errors.New("apply config: no config")
	}
	if path == "" {
		path = cfg.File
	}
	_, sec, err := LoadConfig(path)
	if err != nil {
		a.capt.count("failed")
		return ApplyResult{}, fmt.Errorf("apply config: %w", err)
	}
	c := &a.capt
	c.mu.Lock()
	defer c.mu.Unlock()
	if restart := RestartSections(a.cfg, a.sec, cfg, sec); len(restart) > 0 {
		c.count("restart")
		a.log.Info("config apply: needs a restart", "path", path, "sections", strings.Join(restart, ","))
		return ApplyResult{RestartSections: restart}, nil
	}
	if !c.running {
		return ApplyResult{}, fmt.Errorf("apply config: %w", ErrNotRunning)
	}
	res, err := a.swapCapture(ctx, cfg)
	if err != nil {
		c.count("failed")
		a.log.Error("config apply failed: the running capture is unchanged", "path", path, "err", err, "gap", res.Gap)
		return res, fmt.Errorf("apply config: %w", err)
	}
	c.count("live")
	if a.level != nil {
		if lv := parseLevel(cfg.Agent.LogLevel); lv != a.level.Level() {
			a.level.Set(lv)
			a.log.Info("config apply: log level changed", "log_level", cfg.Agent.LogLevel)
		}
	}
	return res, nil
}

func parseLevel(s string) (lv slog.Level) {
	_ = lv.UnmarshalText([]byte(s)) // validated by the config loader
	return lv
}

// swapPlan is what differs between the running capture and cfg.
type swapPlan struct {
	keep    []*capDriver    // unchanged: keep running
	retire  []*capDriver    // removed or changed: stop
	start   []config.Driver // added or changed: start
	fps     map[string]string
	newPipe bool
}

func (a *Agent) plan(cfg *config.Config) swapPlan {
	c := &a.capt
	p := swapPlan{fps: map[string]string{}}
	want := map[string]config.Driver{}
	for _, d := range cfg.Drivers {
		want[d.Name] = d
		p.fps[d.Name] = fingerprint(d, cfg)
	}
	have := map[string]bool{}
	for _, d := range c.drivers {
		if w, ok := want[d.cfg.Name]; ok && w.Kind == d.cfg.Kind && p.fps[d.cfg.Name] == d.fp {
			p.keep = append(p.keep, d)
			have[d.cfg.Name] = true
		} else {
			p.retire = append(p.retire, d)
		}
	}
	for _, d := range cfg.Drivers {
		if !have[d.Name] {
			p.start = append(p.start, d)
		}
	}
	old := c.pipe.tel
	p.newPipe = old.Interval != cfg.Telemetry.Interval || !slices.Equal(old.Events, cfg.Telemetry.Events)
	return p
}

// swapCapture applies the capture side of cfg. Called with capt.mu held.
func (a *Agent) swapCapture(ctx context.Context, cfg *config.Config) (ApplyResult, error) {
	c := &a.capt
	p := a.plan(cfg)
	if len(p.retire) == 0 && len(p.start) == 0 && !p.newPipe {
		a.log.Info("config apply: capture unchanged")
		return ApplyResult{Live: true}, nil
	}
	for _, d := range p.start {
		if l, ok := d.Driver.(interface{ SetLogger(*slog.Logger) }); ok {
			l.SetLogger(a.log.With("driver", d.Name))
		}
	}
	// A device that opens only once is closed before its successor starts.
	breakAt := map[string]time.Duration{} // name → when its old instance stopped
	retired := map[string]bool{}
	oldUp := map[string]bool{} // before anything is stopped
	for _, d := range p.retire {
		oldUp[d.cfg.Name] = driverUp(d)
	}
	var broken []*capDriver
	for _, d := range p.retire {
		retired[d.cfg.Name] = true
		if exclusive(d.cfg) {
			d.stop()
			breakAt[d.cfg.Name] = mono()
			broken = append(broken, d)
		}
	}
	started := make([]*capDriver, 0, len(p.start))
	for _, d := range p.start {
		started = append(started, a.startDriver(d, p.fps[d.Name]))
	}
	wait := readyWait
	if len(broken) > 0 {
		wait = breakWait
	}
	if err := a.awaitReady(ctx, started, oldUp, wait); err != nil {
		// Undo: stop the new drivers, restart the old ones closed above.
		for _, d := range started {
			d.stop()
		}
		restored := map[*capDriver]*capDriver{}
		for _, d := range broken {
			restored[d] = a.startDriver(d.cfg, d.fp)
		}
		if len(restored) > 0 {
			live := map[*gate]bool{}
			for i, d := range c.drivers {
				if r, ok := restored[d]; ok {
					c.drivers[i] = r
				}
				live[c.drivers[i].gate] = true
			}
			c.router.set(c.pipe.p, live)
			a.publishCapture()
		}
		var gap time.Duration
		for _, at := range breakAt {
			gap = max(gap, mono()-at)
		}
		c.lastGap.Store(int64(gap))
		c.gapTotal.Add(int64(gap))
		return ApplyResult{Gap: gap}, err
	}

	// Switch: one step for the pipeline and every bus.
	newPipe := c.pipe
	if p.newPipe {
		np, err := a.newPipe(cfg.Telemetry, a.signals.Snapshot())
		if err != nil { // validated by the loader; stop what was started
			for _, d := range started {
				d.stop()
			}
			return ApplyResult{}, fmt.Errorf("telemetry: %w", err)
		}
		newPipe = np
	}
	live := map[*gate]bool{}
	var next []*capDriver
	for _, d := range p.keep {
		live[d.gate] = true
		next = append(next, d)
	}
	for _, d := range started {
		live[d.gate] = true
		next = append(next, d)
	}
	emittedBefore := map[*capDriver]bool{}
	for _, d := range started {
		emittedBefore[d] = d.gate.hasEmitted()
	}
	c.router.set(newPipe.p, live)
	cutAt := mono()
	oldPipe := c.pipe
	if p.newPipe {
		a.runPipe(newPipe)
	}
	c.drivers, c.pipe = next, newPipe
	a.publishCapture()

	// Retire the old drivers, then the old pipeline (it writes what it
	// holds: nothing is lost).
	var wg sync.WaitGroup
	for _, d := range p.retire {
		if !slices.Contains(broken, d) {
			wg.Go(d.stop)
		}
	}
	wg.Wait()
	if p.newPipe {
		oldPipe.stop()
		c.pipeDrops.Add(oldPipe.p.Stats().Dropped)
	}

	gap := a.measureGap(ctx, started, emittedBefore, retired, breakAt, cutAt)
	c.lastGap.Store(int64(gap))
	c.gapTotal.Add(int64(gap))
	a.captureSwapped()
	names := func(ds []*capDriver) string {
		var n []string
		for _, d := range ds {
			n = append(n, d.cfg.Name)
		}
		sort.Strings(n)
		return strings.Join(n, ",")
	}
	a.log.Info("config applied live", "started", names(started), "stopped", names(p.retire), "kept", names(p.keep),
		"telemetry_rebuilt", p.newPipe, "interval", cfg.Telemetry.Interval.Std(), "gap", gap)
	return ApplyResult{Live: true, Gap: gap}, nil
}

// awaitReady waits until every driver in started is up: it has emitted a
// sample, or its link is up, or (without a link report) it has run for
// readySettle without an error. A driver that failed for good, or is not
// up within wait while the driver it replaces was up (oldUp, taken
// before the apply stopped anything; or it replaces none), fails the apply.
func (a *Agent) awaitReady(ctx context.Context, started []*capDriver, oldUp map[string]bool, wait time.Duration) error {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		pending := ""
		for _, d := range started {
			state, _, lastErr := d.sup.status()
			if state == driverFailed {
				return fmt.Errorf("driver %q failed to start: %s", d.cfg.Name, lastErr)
			}
			if !driverUp(d) && pending == "" {
				pending = d.cfg.Name
			}
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.capt.quit:
			return ErrNotRunning
		case <-tick.C:
		case <-deadline.C:
			for _, d := range started {
				if driverUp(d) {
					continue
				}
				if up, had := oldUp[d.cfg.Name]; had && !up {
					continue // its bus was down before too: not the new config's fault
				}
				_, _, lastErr := d.sup.status()
				if lr, ok := d.sup.drv.(drivers.LinkReporter); ok {
					if _, why := lr.Link(); why != "" {
						lastErr = why
					}
				}
				return fmt.Errorf("driver %q did not come up within %v: %s", d.cfg.Name, wait, lastErr)
			}
			return nil
		}
	}
}

// driverUp reports whether d delivers or can deliver samples now.
func driverUp(d *capDriver) bool {
	state, restarts, _ := d.sup.status()
	if state != driverRunning {
		return false
	}
	if d.gate.hasEmitted() {
		return true
	}
	if lr, ok := d.sup.drv.(drivers.LinkReporter); ok {
		up, _ := lr.Link()
		return up
	}
	return restarts == 0 && mono()-d.start >= readySettle
}

// measureGap returns the longest time a bus had no driver delivering:
// from the switch (or, for a device closed first, the old driver's stop)
// to the new driver's first delivered sample. A new driver that had
// already sent samples before the switch delivers from the switch on; one
// that had not is waited for up to flowWait (a silent bus counts from the
// switch). A bus that is new has no gap.
func (a *Agent) measureGap(ctx context.Context, started []*capDriver, emittedBefore map[*capDriver]bool,
	retired map[string]bool, breakAt map[string]time.Duration, cutAt time.Duration) time.Duration {
	var gap time.Duration
	for _, d := range started {
		name := d.cfg.Name
		if !retired[name] {
			continue
		}
		from := cutAt
		if at, ok := breakAt[name]; ok {
			from = at
		}
		to := cutAt
		if !emittedBefore[d] {
			deadline := time.Now().Add(flowWait)
			for d.gate.first.Load() == 0 && time.Now().Before(deadline) && ctx.Err() == nil && !a.capt.stopping() {
				time.Sleep(readyPoll)
			}
			if f := time.Duration(d.gate.first.Load()); f > 0 {
				to = f
			}
		}
		gap = max(gap, to-from)
	}
	return max(gap, 0)
}

func (c *capture) stopping() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// applyMetrics registers the live-apply metrics.
func (a *Agent) applyMetrics(r *metrics.Registry) {
	c := &a.capt
	r.CollectFunc("tcu_config_applies_total", "Configuration applies (SIGHUP, jobs) by result: live (applied in process, or nothing to change), restart (needs a restart, nothing changed), failed (nothing changed).",
		metrics.TypeCounter, []string{"result"}, func(emit metrics.EmitFunc) {
			for _, res := range []string{"live", "restart", "failed"} {
				var n uint64
				if v, ok := c.applies.Load(res); ok {
					n = v.(*atomic.Uint64).Load()
				}
				emit(float64(n), res)
			}
		})
	r.GaugeFunc("tcu_config_apply_gap_seconds", "Capture gap of the last configuration apply that replaced drivers (longest time one bus had no driver delivering).", func() float64 {
		return time.Duration(c.lastGap.Load()).Seconds()
	})
	r.CounterFunc("tcu_config_apply_gap_seconds_total", "Capture gaps of every configuration apply (failed ones too), summed.", func() float64 {
		return time.Duration(c.gapTotal.Load()).Seconds()
	})
}

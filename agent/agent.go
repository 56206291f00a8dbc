package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Options configure an Agent.
type Options struct {
	Config   *config.Config
	Sections *Sections
	Logger   *slog.Logger
	// Version is reported in the shadow and status.
	Version string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// LogLevel, if set, is the level of Logger's handler: the control
	// socket serves it (ctl.WithLogLevel) so it can change at run time.
	LogLevel *slog.LevelVar
	// BaseFile is the operator's --config file when Config was loaded
	// from a configuration bundle (the jobs rollback target); empty:
	// Config.File.
	BaseFile string
}

// Agent is one running tcu-agent.
type Agent struct {
	cfg     *config.Config
	sec     *Sections
	log     *slog.Logger
	version string
	now     func() time.Time
	level   *slog.LevelVar // may be nil

	signals *signals.Store
	capt    capture // the capture side: drivers → router → pipeline (apply.go)
	health  *health.Tracker
	started time.Time
	cmds    commandLog
	rates   rates

	baseFile  string                           // Options.BaseFile
	restart   restarter                        // jobs: restart requests
	bundle    atomic.Pointer[ctl.ConfigBundle] // jobs: the active configuration bundle
	bundleSet chan struct{}                    // a buffered wake-up: bundle changed
	lastJob   atomic.Pointer[jobs.Outcome]     // jobs: the last configuration job's end

	reloadMu sync.Mutex
	reloadCh chan struct{} // guarded by reloadMu; closed by Reload

	mu      sync.Mutex
	store   *store              // guarded by mu; set by Run
	queue   *buffer.Queue       // guarded by mu; set once the buffer is open
	session *uplink.Session     // guarded by mu; nil until an identity exists
	engine  *command.Engine     // guarded by mu
	pipe    *telemetry.Pipeline // guarded by mu
	ident   identityInfo        // guarded by mu
	sups    []*supervisor       // guarded by mu; the running drivers (see publishCapture)

	profile profileState // vehicle-state profiles (profile_wire.go)

	wakes wakeCount // command wake-ups over the agent's life (status.go)
}

// New validates the wiring; it does no I/O.
func New(opts Options) (*Agent, error) {
	if opts.Config == nil || opts.Sections == nil {
		return nil, errors.New("agent: Config and Sections are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Drivers were built by the config loader before a logger existed.
	for _, d := range opts.Config.Drivers {
		if l, ok := d.Driver.(interface{ SetLogger(*slog.Logger) }); ok {
			l.SetLogger(opts.Logger.With("driver", d.Name))
		}
	}
	return &Agent{cfg: opts.Config, sec: opts.Sections, log: opts.Logger, version: opts.Version, now: opts.Now, level: opts.LogLevel,
		signals: signals.New(), health: health.New(opts.Now), started: opts.Now(), reloadCh: make(chan struct{}),
		capt: capture{quit: make(chan struct{})}, bundleSet: make(chan struct{}, 1),
		baseFile: opts.BaseFile, restart: restarter{ch: make(chan string, 1)}}, nil
}

// ErrConfig marks a configuration error Run found at start (such as a
// state_dir that is not a directory): the process should exit with 78
// (EX_CONFIG) rather than be restarted.
var ErrConfig = errors.New("configuration error")

// stopGrace bounds how long a clean stop keeps writing the samples the
// drivers already emitted.
const stopGrace = 5 * time.Second

// Run starts everything and blocks until ctx is done, then shuts down in
// stages (drivers → telemetry → commands and uplink → buffer). Cancellation
// is not an error.
//
// Capture (drivers → telemetry → buffer) is the core: nothing else ends
// it. The cloud side (identity, provisioning, commands, MQTT) runs under a
// supervisor that restarts it with backoff and reports why in health and
// status; a buffer that cannot be opened at start is retried with backoff
// while records are held in memory. The only errors Run returns are
// configuration errors found at start (wrapping ErrConfig).
func (a *Agent) Run(ctx context.Context) error {
	stateDir := a.cfg.Agent.StateDir
	if err := checkStateDir(stateDir); err != nil {
		return err
	}
	st := newStore(a.cfg.Telemetry.MaxPending, a.log.With("component", "buffer"))
	a.mu.Lock()
	a.store = st
	a.mu.Unlock()
	// Stage contexts are independent of ctx so that shutdown can run them
	// down one after the other.
	cloudCtx, stopCloud := context.WithCancel(context.WithoutCancel(ctx))
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	obsCtx, stopObs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCloud()
	defer stopStore()
	defer stopObs()

	var cloudWG, storeWG, obsWG sync.WaitGroup
	// Drivers and the telemetry pipeline, replaced at run time by
	// ApplyConfig; stopped by stopCapture.
	if err := a.startCapture(ctx, st); err != nil {
		return fmt.Errorf("%w: telemetry: %w", ErrConfig, err)
	}
	defer a.stopCapture()
	// Capture runs (into memory) while the buffer opens. The first open is
	// waited for (up to openWait) so that a healthy start is ready at
	// once; a failed one is retried in the background, and one that hangs
	// is left to finish while capture goes on.
	opened := a.openAsync()
	select {
	case r := <-opened:
		if r.err == nil {
			a.adoptQueue(st, r.q)
		} else {
			a.storeFault(st, r.err)
			storeWG.Go(func() { a.reopenQueue(storeCtx, st) }) // stopped by stopStore
		}
	case <-time.After(openWait):
		st.setFault(errors.New("buffer open did not finish"))
		a.health.SetDegraded("storage", fmt.Sprintf("opening the buffer takes more than %v (records held in memory)", openWait))
		a.log.Error("buffer open is taking too long: capturing into memory meanwhile", "waited", openWait)
		storeWG.Go(func() { a.awaitOpen(storeCtx, st, opened) }) // stopped by stopStore
	case <-ctx.Done(): // stopped while the buffer opens
		storeWG.Go(func() { a.awaitOpen(storeCtx, st, opened) }) // stopped by stopStore
	}
	cloudWG.Go(func() { a.superviseCloud(cloudCtx, st) }) // stopped by stopCloud
	a.startObservability(obsCtx, &obsWG)
	a.startProfile(obsCtx, &obsWG, st)
	// Drivers run, the store is open (or being retried) and identity
	// resolution has started.
	if err := sdnotify.Ready(); err != nil {
		a.log.Warn("sd_notify READY failed", "err", err)
	}
	a.log.Info("agent started", "version", a.version, "drivers", len(a.cfg.Drivers), "state_dir", stateDir)

	<-ctx.Done()
	a.log.Info("agent stopping")
	if !a.restart.requested.Load() {
		// A restart in place (re-exec, same PID) is not a stop for
		// systemd: STOPPING=1 would start its stop timeout.
		_ = sdnotify.Stopping()
	}
	// Drivers first: every sample they emitted is in the pipeline then,
	// and it writes them (within stopGrace) before it returns.
	a.stopCapture()
	stopStore()
	storeWG.Wait()
	stopCloud()
	cloudWG.Wait()
	stopObs()
	obsWG.Wait()
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
	st.close(flushCtx)
	cancelFlush()
	a.mu.Lock()
	q := a.queue
	a.queue, a.session = nil, nil
	a.mu.Unlock()
	if q != nil {
		if err := q.Close(); err != nil {
			a.log.Error("close buffer", "err", err)
		}
	}
	a.log.Info("agent stopped")
	return nil
}

// checkStateDir creates the state directory. A path that is (or is under)
// a regular file, or that cannot be created at all, is a configuration
// error; an existing directory the agent cannot write is a storage fault
// the buffer retries (reported, not fatal).
func checkStateDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%w: [agent] state_dir %s is not a directory", ErrConfig, dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: [agent] state_dir %s cannot be created: %w", ErrConfig, dir, err)
	}
	return nil
}

// adoptQueue makes q the agent's buffer.
func (a *Agent) adoptQueue(st *store, q *buffer.Queue) {
	if s := q.Stats(); s.Degraded != "" {
		a.log.Error("buffer degraded", "reason", s.Degraded)
	}
	st.setQueue(q)
	a.mu.Lock()
	a.queue = q
	a.mu.Unlock()
	a.health.Clear("storage")
}

// storeFault reports that the buffer could not be opened.
func (a *Agent) storeFault(st *store, err error) {
	kind := "cannot open the buffer"
	if isStorageFault(err) {
		kind = "storage fault"
	}
	st.setFault(err)
	a.health.SetDegraded("storage", fmt.Sprintf("%s (records held in memory, retrying): %v", kind, err))
	a.log.Error("buffer unavailable: capturing into memory and retrying", "kind", kind, "err", err,
		"held_max", a.cfg.Telemetry.MaxPending)
}

// openWait bounds how long Run waits for the buffer to open before it
// starts capture into memory.
const openWait = 10 * time.Second

type openResult struct {
	q   *buffer.Queue
	err error
}

// openAsync opens the buffer in a goroutine of its own, which ends when
// buffer.Open returns: a store that hangs (a spinning or blocked open)
// never holds capture or shutdown up. The result channel is buffered, so
// an abandoned open does not block.
func (a *Agent) openAsync() <-chan openResult {
	res := make(chan openResult, 1)
	go func() { // ends when buffer.Open returns
		q, err := a.openQueue()
		res <- openResult{q, err}
	}()
	return res
}

// awaitOpen adopts the buffer once a slow first open finishes, or retries
// if it failed. If ctx ends first the open is abandoned: its goroutine
// ends when buffer.Open returns (the process is exiting by then).
func (a *Agent) awaitOpen(ctx context.Context, st *store, opened <-chan openResult) {
	select {
	case <-ctx.Done():
		select {
		case r := <-opened: // finished just now: adopt it so that Run closes it
			if r.err == nil {
				a.adoptQueue(st, r.q)
			}
		default:
		}
		return
	case r := <-opened:
		if r.err == nil {
			a.log.Info("buffer opened after a slow start")
			a.adoptQueue(st, r.q)
			return
		}
		a.storeFault(st, r.err)
	}
	a.reopenQueue(ctx, st)
}

// reopenQueue retries opening the buffer with backoff (and at once on
// Reload) until it opens or ctx ends.
func (a *Agent) reopenQueue(ctx context.Context, st *store) {
	bo := backoff.New(time.Second, 30*time.Second)
	last := ""
	for {
		wake := a.reloaded()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(bo.Next()):
		}
		var r openResult
		select {
		case <-ctx.Done():
			return // an open in progress is abandoned: the process is stopping
		case r = <-a.openAsync():
		}
		q, err := r.q, r.err
		if err == nil {
			a.log.Info("buffer opened after a storage fault", "attempts", bo.Attempt())
			a.adoptQueue(st, q)
			return
		}
		if err.Error() != last {
			a.storeFault(st, err)
			last = err.Error()
		}
	}
}

// openQueue opens the buffer. A panic inside buffer.Open (a store damaged
// in a way the buffer does not recover from itself) is turned into an
// error: capture then goes on into memory and the open is retried, rather
// than the process dying into a restart loop.
func (a *Agent) openQueue() (q *buffer.Queue, err error) {
	defer func() {
		if r := recover(); r != nil {
			q, err = nil, fmt.Errorf("open buffer: panicked: %v", r)
			a.log.Error("buffer open panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	b := a.cfg.Buffer
	opts := buffer.DefaultOptions(filepath.Join(a.cfg.Agent.StateDir, "queue"))
	opts.MaxBytes = int64(b.MaxBytes)
	opts.MaxRecords = b.MaxRecords
	opts.Sync = buffer.SyncPolicy(b.Sync)
	opts.GroupWindow = b.GroupWindow.Std()
	opts.GroupMaxWindow = b.GroupMaxWindow.Std()
	opts.GroupFill = int64(b.GroupFill)
	opts.LiveWindow = b.LiveWindow.Std()
	if b.TelemetryTTL > 0 {
		opts.TTL = map[buffer.Class]time.Duration{buffer.ClassTelemetry: b.TelemetryTTL.Std()}
	}
	opts.MinFree = int64(b.MinFree) // 0: the buffer's automatic floor
	opts.IdleClose = b.IdleClose.Std()
	if opts.IdleClose == 0 {
		opts.IdleClose = -1 // never
	}
	opts.Logger = a.log.With("component", "buffer")
	q, err = buffer.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	return q, nil
}

// reloaded returns a channel closed by the next Reload.
func (a *Agent) reloaded() <-chan struct{} {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.reloadCh
}

// Reload re-checks now what the agent is waiting for (identity and claim
// files, a provisioning hold, a buffer that would not open); the caller
// (SIGHUP) reloads the settings that are safe to change at run time.
func (a *Agent) Reload() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	close(a.reloadCh)
	a.reloadCh = make(chan struct{})
	a.log.Info("reload: re-checking identity, claim and storage now")
}

// transmitter returns the transmitter of the driver instance named bus.
// Each Transmit goes to the instance running then: a command whose frames
// straddle an ApplyConfig sends the later ones on the new driver.
func (a *Agent) transmitter(bus string) (drivers.Transmitter, bool) {
	if _, ok := a.currentTransmitter(bus); !ok {
		return nil, false
	}
	return busTransmitter{a: a, bus: bus}, true
}

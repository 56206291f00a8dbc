package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/drivers"
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
	sups    []*supervisor
	health  *health.Tracker
	started time.Time
	cmds    commandLog
	rates   rates

	mu      sync.Mutex
	queue   *buffer.Queue       // guarded by mu; set while Run opens it
	session *uplink.Session     // guarded by mu; nil until an identity exists
	engine  *command.Engine     // guarded by mu
	pipe    *telemetry.Pipeline // guarded by mu
	ident   identityInfo        // guarded by mu
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
		signals: signals.New(), health: health.New(opts.Now), started: opts.Now()}, nil
}

// Run starts everything and blocks until ctx is done, then shuts down in
// stages (drivers → telemetry → commands and uplink → buffer). Cancellation
// is not an error.
func (a *Agent) Run(ctx context.Context) error {
	stateDir := a.cfg.Agent.StateDir
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	q, err := a.openQueue(ctx)
	if err != nil {
		return err
	}
	pipe, err := telemetry.New(telemetry.Options{
		Interval:   a.cfg.Telemetry.Interval.Std(),
		Events:     a.cfg.Telemetry.Events,
		MaxPending: a.cfg.Telemetry.MaxPending,
		Append:     queueAppender(q),
		Observe:    a.signals.Set,
		Logger:     a.log.With("component", "telemetry"),
		Now:        a.now,
	})
	if err != nil {
		_ = q.Close()
		return err
	}
	a.mu.Lock()
	a.queue, a.pipe = q, pipe
	a.mu.Unlock()

	// Stage contexts are independent of ctx so that shutdown can run them
	// down one after the other.
	drvCtx, stopDrivers := context.WithCancel(context.WithoutCancel(ctx))
	pipeCtx, stopPipe := context.WithCancel(context.WithoutCancel(ctx))
	cloudCtx, stopCloud := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrivers()
	defer stopPipe()
	defer stopCloud()

	obsCtx, stopObs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopObs()

	var pipeWG, drvWG, cloudWG, obsWG sync.WaitGroup
	pipeLoop := a.health.Loop("telemetry", true)
	pipe.SetHeartbeat(pipeLoop.Beat)
	pipeWG.Go(func() { _ = pipe.Run(pipeCtx) }) // stopped by stopPipe
	for _, d := range a.cfg.Drivers {
		s := newSupervisor(d.Name, d.Driver, pipe, a.log)
		a.sups = append(a.sups, s)
		drvWG.Go(func() { s.run(drvCtx) }) // stopped by stopDrivers
	}
	cloudErr := make(chan error, 1)
	cloudWG.Go(func() { cloudErr <- a.runCloud(cloudCtx, q) }) // stopped by stopCloud
	a.startObservability(obsCtx, &obsWG)
	// The store is open, drivers run and identity resolution has started.
	if err := sdnotify.Ready(); err != nil {
		a.log.Warn("sd_notify READY failed", "err", err)
	}
	a.log.Info("agent started", "version", a.version, "drivers", len(a.cfg.Drivers), "state_dir", stateDir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-cloudErr:
		if runErr != nil {
			a.log.Error("cloud side failed", "err", runErr)
		}
	}
	a.log.Info("agent stopping")
	_ = sdnotify.Stopping()
	stopDrivers()
	drvWG.Wait()
	stopPipe()
	pipeWG.Wait()
	pipeLoop.Close()
	stopCloud()
	cloudWG.Wait()
	stopObs()
	obsWG.Wait()
	a.mu.Lock()
	a.queue, a.session = nil, nil
	a.mu.Unlock()
	if err := q.Close(); err != nil {
		a.log.Error("close buffer", "err", err)
	}
	a.log.Info("agent stopped")
	return runErr
}

func (a *Agent) openQueue(ctx context.Context) (*buffer.Queue, error) {
	b := a.cfg.Buffer
	opts := buffer.DefaultOptions(filepath.Join(a.cfg.Agent.StateDir, "queue"))
	opts.MaxBytes = int64(b.MaxBytes)
	opts.MaxRecords = b.MaxRecords
	opts.Sync = buffer.SyncPolicy(b.Sync)
	opts.GroupWindow = b.GroupWindow.Std()
	opts.LiveWindow = b.LiveWindow.Std()
	if b.TelemetryTTL > 0 {
		opts.TTL = map[buffer.Class]time.Duration{buffer.ClassTelemetry: b.TelemetryTTL.Std()}
	}
	opts.Logger = a.log.With("component", "buffer")
	q, err := buffer.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	if st := q.Stats(); st.Degraded != "" {
		a.log.Error("buffer degraded", "reason", st.Degraded)
	}
	return q, nil
}

// queueAppender maps telemetry classes onto buffer classes.
func queueAppender(q *buffer.Queue) telemetry.AppendFunc {
	return func(ctx context.Context, c telemetry.Class, data [][]byte) error {
		class := buffer.ClassTelemetry
		if c == telemetry.ClassEvent {
			class = buffer.ClassEvent
		}
		_, err := q.AppendBatch(ctx, class, data)
		return err
	}
}

// transmitter finds the driver instance named bus that can transmit.
func (a *Agent) transmitter(bus string) (drivers.Transmitter, bool) {
	for _, d := range a.cfg.Drivers {
		if d.Name == bus {
			t, ok := d.Driver.(drivers.Transmitter)
			return t, ok
		}
	}
	return nil, false
}

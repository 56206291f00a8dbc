package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// driverState is what the supervisor knows about one driver.
type driverState int32

const (
	driverStarting driverState = iota
	driverRunning
	driverRetrying
	driverFailed // *drivers.FatalError: not restarted
	driverStopped
)

func (s driverState) String() string {
	return [...]string{"starting", "running", "retrying", "failed", "stopped"}[s]
}

// supervisor runs one driver and restarts it with backoff when Run returns
// an error. It logs once per state change, not once per retry.
type supervisor struct {
	name     string
	drv      drivers.Driver
	sink     drivers.Sink
	log      *slog.Logger
	state    atomic.Int32
	restarts atomic.Uint64
	lastErr  atomic.Pointer[string]
	// stableAfter is how long a run must last before the backoff resets.
	stableAfter time.Duration
	backoff     *backoff.Backoff
}

func newSupervisor(name string, drv drivers.Driver, sink drivers.Sink, log *slog.Logger) *supervisor {
	return &supervisor{
		name: name, drv: drv, sink: sink, log: log.With("driver", name),
		stableAfter: 30 * time.Second, backoff: backoff.New(500*time.Millisecond, 30*time.Second),
	}
}

// run returns when ctx is done or the driver failed fatally.
func (s *supervisor) run(ctx context.Context) {
	defer s.state.Store(int32(driverStopped))
	var lastLogged string
	for ctx.Err() == nil {
		s.state.Store(int32(driverRunning))
		start := time.Now()
		err := s.drv.Run(ctx, s.sink)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("driver returned without error before shutdown")
		}
		msg := err.Error()
		s.lastErr.Store(&msg)
		var fatal *drivers.FatalError
		if errors.As(err, &fatal) {
			s.state.Store(int32(driverFailed))
			s.log.Error("driver failed permanently", "err", err)
			return
		}
		if time.Since(start) > s.stableAfter {
			s.backoff.Reset()
		}
		if msg != lastLogged {
			s.log.Warn("driver stopped, restarting with backoff", "err", err, "not_ready", errors.Is(err, drivers.ErrNotReady))
			lastLogged = msg
		}
		s.state.Store(int32(driverRetrying))
		s.restarts.Add(1)
		if !backoff.Wait(ctx, s.backoff.Next()) {
			return
		}
	}
}

// status is a point-in-time view for health and status output.
func (s *supervisor) status() (state driverState, restarts uint64, lastErr string) {
	if p := s.lastErr.Load(); p != nil {
		lastErr = *p
	}
	return driverState(s.state.Load()), s.restarts.Load(), lastErr
}

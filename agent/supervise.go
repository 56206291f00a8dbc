package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
	"github.com/tcu-agent/tcu-agent/provisioning"
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
		err := runDriver(ctx, s.drv, s.sink)
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

// Fault classification. These helpers are the one place that knows how the
// buffer and provisioning packages report the faults the agent treats
// specially; they switch to sentinels (buffer.ErrStorage,
// provisioning.ErrNoClaim, *provisioning.HoldError) once those exist.

// isStorageFault reports whether err is caused by the environment of a
// store (permissions, read-only or full file system, I/O error, a path
// component that is not a directory) rather than by its content: the data
// on disk is intact and the operation is worth retrying later.
func isStorageFault(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, fs.ErrPermission) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EROFS, syscall.EIO, syscall.ENOSPC, syscall.EDQUOT,
		syscall.ENOTDIR, syscall.EACCES, syscall.EPERM, syscall.ENXIO, syscall.ENODEV, syscall.EMFILE, syscall.ENFILE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isNoClaim reports whether provisioning failed because the claim
// certificate or key is missing or unreadable (a waiting state).
func isNoClaim(err error) bool {
	return errors.Is(err, provisioning.ErrNoClaim)
}

// holdUntil reports whether provisioning is on hold (after repeated
// authenticated refusals, or by its certificate loop breaker) and until
// when.
func holdUntil(err error) (time.Time, bool) {
	var h *provisioning.HoldError
	if errors.As(err, &h) {
		return h.Until, true
	}
	return time.Time{}, false
}

// runDriver runs drv, turning a panic in its goroutine into an error: a
// faulty driver is restarted with backoff, it does not end the process.
func runDriver(ctx context.Context, drv drivers.Driver, sink drivers.Sink) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("driver panicked: %v", r)
		}
	}()
	return drv.Run(ctx, sink)
}

package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// flakyDriver fails its first failures runs with err, then runs until cancelled.
type flakyDriver struct {
	failures int32
	err      error
	runs     atomic.Int32
}

func (f *flakyDriver) Init() error { return nil }

func (f *flakyDriver) Run(ctx context.Context, _ drivers.Sink) error {
	if f.runs.Add(1) <= f.failures {
		return f.err
	}
	<-ctx.Done()
	return nil
}

func TestSupervisorRestartsAndStopsOnFatal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		drv       *flakyDriver
		wantState driverState
		wantRuns  int32
	}{
		{"not ready then ok", &flakyDriver{failures: 3, err: drivers.ErrNotReady}, driverRunning, 4},
		{"fatal", &flakyDriver{failures: 5, err: &drivers.FatalError{Err: errors.New("bad dbc")}}, driverStopped, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSupervisor("test", tt.drv, drivers.SinkFunc(func(drivers.Sample) {}), slog.New(slog.DiscardHandler))
			s.backoff.Base, s.backoff.Max = time.Millisecond, 5*time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.run(ctx); close(done) }()
			deadline := time.Now().Add(5 * time.Second)
			for tt.drv.runs.Load() < tt.wantRuns && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			if got := tt.drv.runs.Load(); got != tt.wantRuns {
				t.Errorf("runs = %d, want %d", got, tt.wantRuns)
			}
			if tt.wantState == driverRunning {
				if st, restarts, _ := s.status(); st != driverRunning || restarts != 3 {
					t.Errorf("state %v restarts %d", st, restarts)
				}
			}
			cancel()
			<-done
			if st, _, _ := s.status(); st != driverStopped {
				t.Errorf("final state %v", st)
			}
		})
	}
}

// panicDriver panics on its first runs, then runs until cancelled.
type panicDriver struct{ runs atomic.Int32 }

func (p *panicDriver) Init() error { return nil }

func (p *panicDriver) Run(ctx context.Context, _ drivers.Sink) error {
	if p.runs.Add(1) <= 2 {
		panic("driver bug")
	}
	<-ctx.Done()
	return nil
}

// TestSupervisorSurvivesADriverPanic: a panicking driver is restarted
// like a failing one; the process does not die.
func TestSupervisorSurvivesADriverPanic(t *testing.T) {
	t.Parallel()
	drv := &panicDriver{}
	s := newSupervisor("test", drv, drivers.SinkFunc(func(drivers.Sample) {}), slog.New(slog.DiscardHandler))
	s.backoff.Base, s.backoff.Max = time.Millisecond, 5*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for drv.runs.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st, restarts, lastErr := s.status()
	if drv.runs.Load() < 3 || restarts != 2 || !strings.Contains(lastErr, "driver panicked") {
		t.Errorf("runs %d, state %v, restarts %d, last error %q", drv.runs.Load(), st, restarts, lastErr)
	}
	cancel()
	<-done
}

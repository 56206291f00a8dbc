// Package drivertest is the conformance suite every tcu-agent driver
// passes, plus a recording Sink for driver tests. It is imported only by
// _test.go files.
package drivertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// CancelDeadline is how soon Run must return after its context is
// cancelled.
const CancelDeadline = time.Second

// Configure turns a driver fresh from its factory into one that Inits and,
// when run, emits at least one sample: it sets config fields (by type
// assertion) and starts whatever the driver reads from (a virtual bus with
// traffic, a replay file), registering cleanups with t.
type Configure func(t *testing.T, d drivers.Driver)

// Params returns the Params the suite hands to factories: ConfigDir is the
// test's working directory (the package directory), so relative paths such
// as "testdata/x.dbc" resolve.
func Params(t *testing.T) drivers.Params {
	return drivers.Params{
		Name:      "drivertest",
		Logger:    slog.New(slog.DiscardHandler),
		ConfigDir: ".",
	}
}

// Run checks the driver contract of drivers.Driver for the drivers f makes:
//   - Init rejects the factory's defaults (an empty config);
//   - a configured driver Inits, runs and emits;
//   - Run returns nil within CancelDeadline of cancellation;
//   - Emit is never called after Run returns;
//   - no goroutine started by the driver outlives Run.
//
// Run does not call t.Parallel: the leak check compares goroutine sets.
func Run(t *testing.T, f drivers.Factory, configure Configure) {
	t.Run("InitRejectsEmptyConfig", func(t *testing.T) {
		if err := f(Params(t)).Init(); err == nil {
			t.Error("Init() of an unconfigured driver = nil, want a configuration error")
		}
	})
	t.Run("RunEmitsAndStopsOnCancel", func(t *testing.T) {
		d := f(Params(t))
		configure(t, d)
		if err := d.Init(); err != nil {
			t.Fatalf("Init() = %v", err)
		}
		before := goleak.IgnoreCurrent()
		runUntilCancel(t, d)
		goleak.VerifyNone(t, before)
	})
}

func runUntilCancel(t *testing.T, d drivers.Driver) {
	t.Helper()
	sink := &Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	// Closing the sink the moment Run returns makes any later Emit late.
	go func() {
		err := d.Run(ctx, sink)
		sink.Close()
		errc <- err
	}()

	if _, ok := sink.Wait(20*time.Second, func(drivers.Sample) bool { return true }); !ok {
		select {
		case err := <-errc:
			t.Fatalf("Run() returned %v before emitting any sample", err)
		default:
		}
		cancel()
		t.Fatalf("driver emitted no sample within 20s (Run returned %v after cancel)", <-errc)
	}
	cancel()
	cancelled := time.Now()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
		if took := time.Since(cancelled); took > CancelDeadline {
			t.Errorf("Run() returned %v after cancel, want <= %v", took, CancelDeadline)
		}
	case <-time.After(10 * CancelDeadline):
		t.Fatalf("Run() did not return within %v of cancel", 10*CancelDeadline)
	}
	time.Sleep(50 * time.Millisecond)
	if n := sink.Late(); n > 0 {
		t.Errorf("driver called Emit %d times after Run returned", n)
	}
}

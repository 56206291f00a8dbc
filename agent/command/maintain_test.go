package command_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// quiet asserts that the dispatcher does not wake during d (an absence can
// only be observed over a span of time) and that it arms no timer.
func quiet(t *testing.T, eng *command.Engine, d time.Duration) {
	t.Helper()
	before := command.Loops(eng)
	time.Sleep(d)
	if n := command.Loops(eng) - before; n != 0 {
		t.Errorf("idle dispatcher woke %d times in %v, want 0", n, d)
	}
	if wait, armed := command.NextMaintenance(eng); armed {
		t.Errorf("maintenance timer armed (in %v) with nothing to prune", wait)
	}
}

// TestIdleEngineNotWokenNotHung: an engine with an empty ledger arms no
// maintenance timer and never wakes, even with the backstop retry period
// shortened to 20 ms (the old fixed prune ticker would have woken it ~25
// times here), and the real health tracker does not take the silent,
// waiting dispatcher for a hung one.
func TestIdleEngineNotWokenNotHung(t *testing.T) {
	t.Parallel()
	tr := health.New(nil)
	loop := tr.Loop("command", true)
	eng, err := command.New(command.Options{
		Config: testConfig(), Thing: thing, StateDir: t.TempDir(), Signals: command.NewSampleCache(),
		Transmitter:  func(string) (drivers.Transmitter, bool) { return nil, false },
		Responder:    &commandtest.Responder{},
		ClockTrusted: func() bool { return true },
		Heartbeat:    loop.Beat, Idle: loop.Idle,
	})
	if err != nil {
		t.Fatal(err)
	}
	command.SetMaintainEvery(eng, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, func() bool { s := tr.Snapshot(); return len(s.Loops) == 1 && s.Loops[0].Idle })
	quiet(t, eng, 500*time.Millisecond)
	if ok, why := tr.Healthy(100 * time.Millisecond); !ok {
		t.Errorf("idle engine reported unhealthy after 500 ms without a beat (max age 100 ms): %s", why)
	}
}

// TestPruneWhenDue: an answered command's ledger entry is pruned when it
// expires (validity 300 ms, no clock skew, no retention), by the timer
// armed for that moment, not by a periodic tick; afterwards the empty
// ledger arms nothing and the dispatcher sleeps.
func TestPruneWhenDue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.MaxValidity = dur(300 * time.Millisecond)
		c.ClockSkew = 0
		c.LedgerRetention = 0
	})
	quiet(t, h.eng, 200*time.Millisecond)
	req := h.req("prune-1", "door.lock")
	req.ValidMS = 300
	h.send(req)
	checkFinal(t, h.final("prune-1", 1), command.StatusSucceeded, command.ReasonOK)
	// Responded → the dispatcher is kicked and arms the timer for the expiry.
	waitFor(t, func() bool {
		wait, armed := command.NextMaintenance(h.eng)
		return armed && wait <= 300*time.Millisecond+time.Millisecond && h.eng.Stats().InFlight == 0
	})
	if n := h.eng.Stats().LedgerEntries; n != 1 {
		t.Fatalf("%d ledger entries after the command, want 1", n)
	}
	before := command.Loops(h.eng)
	h.clock.Advance(time.Second) // expired at the engine's clock
	waitFor(t, func() bool { return h.eng.Stats().LedgerEntries == 0 })
	// Waking to prune: a few wake-ups (the kick, the timer), not a spin.
	if n := command.Loops(h.eng) - before; n > 5 {
		t.Errorf("dispatcher woke %d times to prune one entry", n)
	}
	quiet(t, h.eng, 300*time.Millisecond)
}

// TestUnansweredResultBackstop: while a recorded result cannot be handed
// over, the maintenance timer stays armed within the backstop period (the
// resend retry has its own timer too); once it is delivered only the
// prune of its entry is due, at its expiry.
func TestUnansweredResultBackstop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.stop()
	h.preRun = func(e *command.Engine) { command.SetMaintainEvery(e, 200*time.Millisecond) }
	h.start()
	h.resp.SetFail(errBus)
	h.send(h.req("backstop-1", "door.lock"))
	waitFor(t, func() bool { return h.tx.Count() == 1 && h.eng.Stats().InFlight == 0 })
	if wait, armed := command.NextMaintenance(h.eng); !armed || wait > 200*time.Millisecond {
		t.Errorf("result not handed over: maintenance armed %v in %v, want within 200ms", armed, wait)
	}
	h.resp.SetFail(nil)
	checkFinal(t, h.final("backstop-1", 1), command.StatusSucceeded, command.ReasonOK)
	// Validity 30 s + clock_skew 5 s + ledger_retention 24 h from the
	// request, by the engine's (fake, stopped) clock.
	want := 30*time.Second + 5*time.Second + 24*time.Hour + time.Millisecond
	waitFor(t, func() bool {
		wait, armed := command.NextMaintenance(h.eng)
		return armed && wait == want
	})
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

package command_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// testMaxAge is the interlocks' max_age in the wake tests: five driver
// heartbeats (200 ms), so an awake bus never looks stale, and short enough
// that a sleeping one does soon.
const testMaxAge = time.Second

// newWakeRig is the sim rig with the wake frame configured: an empty
// BODY_COMMAND (no request), which wakes tcu-sim's bus like any frame.
func newWakeRig(t testing.TB, knobs sim.Knobs, wakeTimeout time.Duration, responder command.Responder) *simRig {
	t.Helper()
	return newSimRigWith(t, knobs, func(c *command.Config) {
		c.Wake = []command.WakeFrame{{Bus: "body", Message: "BODY_COMMAND"}}
		c.WakeTimeout = dur(wakeTimeout)
		for i := range c.Interlocks {
			c.Interlocks[i].MaxAge = dur(testMaxAge)
		}
	}, responder)
}

// frameKinds splits the BODY_COMMAND frames seen on the bus into wake-ups
// (no request) and requests, and returns when each was seen.
func (r *simRig) frameKinds(t testing.TB) (wakes, requests []time.Time, lockReqs []int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var vals []dbc.Value
	for i, f := range r.frames {
		var err error
		if vals, err = r.cmdMsg.DecodeInto(f.Payload(), vals); err != nil {
			t.Fatalf("BODY_COMMAND on the bus does not decode: %v", err)
		}
		var lock, immo int64
		for _, v := range vals {
			switch v.Signal.Name {
			case "LockRequest":
				lock = v.Raw
			case "ImmobilizerRequest":
				immo = v.Raw
			}
		}
		if lock == 0 && immo == 0 {
			wakes = append(wakes, r.seen[i])
			continue
		}
		requests = append(requests, r.seen[i])
		lockReqs = append(lockReqs, lock)
	}
	return wakes, requests, lockReqs
}

// awaitFrames waits until the spy endpoint has seen at least minWakes
// wake-ups and minReqs requests (it may see them a little after the sim
// and the engine), then returns frameKinds.
func (r *simRig) awaitFrames(t testing.TB, minWakes, minReqs int) (wakes, requests []time.Time, lockReqs []int64) {
	t.Helper()
	waitFor(t, func() bool {
		wakes, requests, lockReqs = r.frameKinds(t)
		return len(wakes) >= minWakes && len(requests) >= minReqs
	})
	return wakes, requests, lockReqs
}

// sleep puts the sim's bus to sleep and waits until door.unlock's
// interlock inputs are stale at the engine.
func (r *simRig) sleep(t testing.TB, k sim.Knobs) {
	t.Helper()
	k.Asleep = true
	r.veh.SetKnobs(k)
	waitFor(t, func() bool {
		return strings.Contains(command.InterlockRefusal(r.eng, "door.unlock"), "stale")
	})
}

// send hands one request to the engine and returns when it was sent.
func (r *simRig) send(t testing.TB, id, name string, validMS int64) time.Time {
	t.Helper()
	req := command.Request{ID: id, Device: thing, Name: name, IssuedAt: time.Now().UnixMilli(), ValidMS: validMS}
	at := time.Now()
	r.eng.Handle(context.Background(), requestTopic(id), mustJSON(t, req))
	return at
}

func (r *simRig) final(t testing.TB, id string) command.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	resp, err := r.resp.WaitFinal(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestWakeSleepingBus: parked, bus asleep, interlock inputs stale: an
// interlocked door.unlock sends one wake-up frame, waits for fresh inputs
// and unlocks, well within the 2 s answer goal.
func TestWakeSleepingBus(t *testing.T) {
	t.Parallel()
	r := newWakeRig(t, sim.Knobs{}, 1500*time.Millisecond, nil)
	r.veh.Update(func(s *sim.State) { s.Lock = sim.Locked })
	r.sleep(t, sim.Knobs{})
	start := r.send(t, "wake-1", "door.unlock", 30_000)
	resp := r.final(t, "wake-1")
	took := time.Since(start)
	checkFinal(t, resp, command.StatusSucceeded, command.ReasonOK)
	wakes, reqs, locks := r.awaitFrames(t, 1, 1)
	if len(wakes) != 1 || len(reqs) == 0 || locks[0] != 2 {
		t.Fatalf("frames on the bus: %d wake-ups, requests %v, want 1 wake-up then unlock (2)", len(wakes), locks)
	}
	if !wakes[0].Before(reqs[0]) {
		t.Errorf("the unlock frame went out before the wake-up")
	}
	if s := r.veh.State(); s.Wakeups != 1 || s.Lock != sim.Unlocked {
		t.Errorf("sim: wakeups %d lock %d, want 1 unlocked", s.Wakeups, s.Lock)
	}
	if st := r.eng.Stats(); st.Wakes != 1 {
		t.Errorf("Stats().Wakes = %d, want 1", st.Wakes)
	}
	// Timing is measured (TestWakeLatencyParked), not asserted here: the
	// ledger fsync before the frame can take seconds on a loaded disk.
	t.Logf("door.unlock on a sleeping bus answered after %v (wake-up → unlock frame %v)", took, reqs[0].Sub(wakes[0]))
}

// decidedAfter is how long after start the engine decided resp: its ts is
// taken when the result is built, before the ledger write and fsync (so
// a slow disk does not blur it); ms resolution.
func decidedAfter(resp command.Response, start time.Time) time.Duration {
	return time.UnixMilli(resp.TS).Sub(start.Truncate(time.Millisecond))
}

// TestWakeBusNeverWakes: the bus ignores the wake-up: REJECTED
// interlock_input_stale after wake_timeout (not earlier, not much later),
// saying the bus did not wake; no request frame.
func TestWakeBusNeverWakes(t *testing.T) {
	t.Parallel()
	const wakeTimeout = 800 * time.Millisecond
	r := newWakeRig(t, sim.Knobs{}, wakeTimeout, nil)
	r.sleep(t, sim.Knobs{NoWake: true})
	start := r.send(t, "nowake-1", "door.unlock", 30_000)
	resp := r.final(t, "nowake-1")
	took := decidedAfter(resp, start)
	checkFinal(t, resp, command.StatusRejected, command.ReasonInterlockStale)
	if !strings.Contains(resp.Reason, "did not wake") {
		t.Errorf("reason %q does not say the bus did not wake", resp.Reason)
	}
	// Not earlier than wake_timeout; not later than it plus scheduling slack.
	if took < wakeTimeout || took > wakeTimeout+time.Second {
		t.Errorf("refused %v after the request, want wake_timeout %v (+ ≤ 1 s)", took, wakeTimeout)
	}
	wakes, reqs, _ := r.awaitFrames(t, 1, 0)
	if len(wakes) != 1 || len(reqs) != 0 {
		t.Errorf("frames: %d wake-ups %d requests, want 1 and 0", len(wakes), len(reqs))
	}
	if s := r.veh.State(); s.Commands != 0 || s.Wakeups != 0 {
		t.Errorf("sim: %d commands %d wake-ups on a bus that does not wake", s.Commands, s.Wakeups)
	}
}

// TestWakeThenInterlockViolated: the bus wakes but the vehicle is moving
// (30 km/h): refused for the interlock, not as stale; no request frame.
func TestWakeThenInterlockViolated(t *testing.T) {
	t.Parallel()
	r := newWakeRig(t, sim.Knobs{}, 1500*time.Millisecond, nil)
	r.sleep(t, sim.Knobs{Hold: sim.HoldMoving, Speed: 30})
	r.send(t, "moving-1", "door.unlock", 30_000)
	resp := r.final(t, "moving-1")
	checkFinal(t, resp, command.StatusRejected, command.ReasonInterlock)
	if !strings.Contains(resp.Reason, "Vehicle.Speed = 30") {
		t.Errorf("reason %q does not name the speed", resp.Reason)
	}
	if wakes, reqs, _ := r.awaitFrames(t, 1, 0); len(wakes) != 1 || len(reqs) != 0 {
		t.Errorf("frames: %d wake-ups %d requests, want 1 and 0", len(wakes), len(reqs))
	}
	if s := r.veh.State(); s.Commands != 1 || s.Wakeups != 1 {
		t.Errorf("sim: %d frames received (want the wake-up only), %d wake-ups", s.Commands, s.Wakeups)
	}
}

// TestWakeCommandExpires: the validity window ends during the wake wait:
// REJECTED expired, before wake_timeout; no request frame.
func TestWakeCommandExpires(t *testing.T) {
	t.Parallel()
	const wakeTimeout = 3 * time.Second
	r := newWakeRig(t, sim.Knobs{}, wakeTimeout, nil)
	r.sleep(t, sim.Knobs{NoWake: true})
	start := r.send(t, "expire-1", "door.unlock", 600)
	resp := r.final(t, "expire-1")
	took := decidedAfter(resp, start)
	checkFinal(t, resp, command.StatusRejected, command.ReasonExpired)
	if !strings.Contains(resp.Reason, "waking") {
		t.Errorf("reason %q does not say it expired while waking the bus", resp.Reason)
	}
	if took < 600*time.Millisecond-time.Millisecond || took >= wakeTimeout {
		t.Errorf("expired %v after the request, want at its 600 ms validity, before wake_timeout %v", took, wakeTimeout)
	}
	if _, reqs, _ := r.frameKinds(t); len(reqs) != 0 {
		t.Errorf("%d request frames for an expired command", len(reqs))
	}
}

// TestWakeTwoCommands: door.unlock and ignition.disable (two actuators)
// arrive back to back on a sleeping bus: one wake-up serves both and both
// succeed, each actuated once.
func TestWakeTwoCommands(t *testing.T) {
	t.Parallel()
	r := newWakeRig(t, sim.Knobs{}, 1500*time.Millisecond, nil)
	r.veh.Update(func(s *sim.State) { s.Lock = sim.Locked })
	r.sleep(t, sim.Knobs{})
	r.send(t, "two-1", "door.unlock", 30_000)
	r.send(t, "two-2", "ignition.disable", 30_000)
	checkFinal(t, r.final(t, "two-1"), command.StatusSucceeded, command.ReasonOK)
	checkFinal(t, r.final(t, "two-2"), command.StatusSucceeded, command.ReasonOK)
	wakes, reqs, _ := r.awaitFrames(t, 1, 2)
	if len(wakes) != 1 || len(reqs) != 2 {
		t.Errorf("frames: %d wake-ups %d requests, want 1 and 2", len(wakes), len(reqs))
	}
	if s := r.veh.State(); s.Wakeups != 1 || s.Lock != sim.Unlocked || !s.Immobilized {
		t.Errorf("sim: %+v", s)
	}
}

// TestWakeNotWhenFresh: with fresh inputs nothing but the command's own
// frame goes on the bus.
func TestWakeNotWhenFresh(t *testing.T) {
	t.Parallel()
	r := newWakeRig(t, sim.Knobs{}, 1500*time.Millisecond, nil)
	time.Sleep(400 * time.Millisecond) // the standstill hold time
	r.send(t, "fresh-1", "door.unlock", 30_000)
	checkFinal(t, r.final(t, "fresh-1"), command.StatusSucceeded, command.ReasonOK)
	r.send(t, "fresh-2", "door.lock", 30_000)
	checkFinal(t, r.final(t, "fresh-2"), command.StatusSucceeded, command.ReasonOK)
	wakes, reqs, _ := r.awaitFrames(t, 0, 2)
	if len(wakes) != 0 || len(reqs) != 2 {
		t.Errorf("frames: %d wake-ups %d requests, want 0 and 2", len(wakes), len(reqs))
	}
	if st := r.eng.Stats(); st.Wakes != 0 {
		t.Errorf("Stats().Wakes = %d, want 0", st.Wakes)
	}
}

// TestWakeNotConfigured: without [[commands.wake]] a stale input refuses
// at once, as before, and nothing is sent.
func TestWakeNotConfigured(t *testing.T) {
	t.Parallel()
	r := newSimRig(t, sim.Knobs{}, func(c *command.Config) {
		for i := range c.Interlocks {
			c.Interlocks[i].MaxAge = dur(testMaxAge)
		}
	})
	r.sleep(t, sim.Knobs{})
	start := r.send(t, "nowakecfg-1", "door.unlock", 30_000)
	resp := r.final(t, "nowakecfg-1")
	checkFinal(t, resp, command.StatusRejected, command.ReasonInterlockStale)
	if took := decidedAfter(resp, start); took > 500*time.Millisecond {
		t.Errorf("refused %v after the request, want at once", took)
	}
	if n := r.commandFrames(); n != 0 {
		t.Errorf("%d frames on the bus, want 0", n)
	}
}

// TestWakeFrameUnsendable: the wake frame's bus has no transmitter: the
// stale refusal says the bus could not be woken (fakes: no waiting).
func TestWakeFrameUnsendable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Wake = []command.WakeFrame{{Bus: "gateway", Message: "NM_TCU"}}
	})
	h.clock.Advance(3 * time.Second) // max_age 2 s: inputs stale
	h.send(h.req("unsendable-1", "door.unlock"))
	r := h.final("unsendable-1", 1)
	checkFinal(t, r, command.StatusRejected, command.ReasonInterlockStale)
	if !strings.Contains(r.Reason, "could not be woken") || !strings.Contains(r.Reason, "gateway") {
		t.Errorf("reason %q", r.Reason)
	}
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames sent, want 0", n)
	}
}

// TestWakeProgressAndMissingInput: inputs missing (nothing heard since the
// start); an ECU that wakes slowly: IN_PROGRESS "waking" after
// progress_after, then the command runs on the fresh inputs.
func TestWakeProgressAndMissingInput(t *testing.T) {
	t.Parallel()
	var h *harness
	woken := make(chan struct{}, 1)
	h = newHarnessIn(t, t.TempDir(), func(c *command.Config) {
		c.Wake = []command.WakeFrame{{Bus: "body", Message: "NM_TCU", Signals: map[string]float64{"Wake": 1}}}
		c.WakeTimeout = dur(5 * time.Second)
		c.ProgressAfter = dur(100 * time.Millisecond)
		c.Interlocks[0].For = 0
	}, func(f commandtest.Frame) {
		if f.Message == "NM_TCU" {
			woken <- struct{}{}
		}
	})
	// A new interlock input nobody has heard of yet.
	h.stop()
	h.cfg.Interlocks = append(h.cfg.Interlocks, command.Interlock{Name: "doors", Signal: "Vehicle.Body.Doors", Op: "==",
		Value: 0, MaxAge: dur(2 * time.Second), AppliesTo: []string{"door.unlock"}})
	h.start()
	h.send(h.req("slow-1", "door.unlock"))
	<-woken
	waitFor(t, func() bool { return len(h.resp.For("slow-1")) == 1 })
	if p := h.resp.For("slow-1")[0]; p.Status != command.StatusInProgress || p.ReasonCode != command.ReasonWaking {
		t.Fatalf("first response %s/%s, want IN_PROGRESS waking", p.Status, p.ReasonCode)
	}
	h.emit("Vehicle.Body.Doors", 0)
	h.emit(sigSpeed, 0)
	h.emit(sigGear, 0)
	r := h.final("slow-1", 1)
	checkFinal(t, r, command.StatusSucceeded, command.ReasonOK)
	frames := h.tx.Frames()
	if len(frames) != 2 || frames[0].Message != "NM_TCU" || frames[0].Signals["Wake"] != 1 || frames[1].Message != "BODY_COMMAND" {
		t.Errorf("frames %+v, want NM_TCU{Wake:1} then BODY_COMMAND", frames)
	}
}

// TestWakeLatencyParked measures, end to end through a loopback MQTT
// broker, a parked car whose bus falls asleep after standing idle
// (sim.Knobs.SleepAfter): before each door.unlock the bus is asleep and
// the interlock inputs are stale, so every command wakes it. It checks
// each woke the bus once and succeeded, and reports publish → unlock frame
// on the bus and publish → final response (p50, max; a measurement, not
// asserted: the ledger fsyncs on a loaded disk dominate the tail). 20
// commands (5 with -short).
func TestWakeLatencyParked(t *testing.T) {
	t.Parallel()
	n := 20
	if testing.Short() {
		n = 5
	}
	br := newBroker(t)
	r := newWakeRig(t, sim.Knobs{SleepAfter: 700 * time.Millisecond, Delay: sim.DefaultBodyDelay}, 1500*time.Millisecond, br)
	br.attach(t, r.eng)
	toFrame := make([]time.Duration, 0, n)
	toFinal := make([]time.Duration, 0, n)
	for i := range n {
		waitFor(t, func() bool {
			return r.veh.Knobs().Asleep && strings.Contains(command.InterlockRefusal(r.eng, "door.unlock"), "stale")
		})
		r.veh.Update(func(s *sim.State) { s.Lock = sim.Locked })
		wakesBefore, reqsBefore, _ := r.frameKinds(t)
		id := idN("parked", i)
		ch := make(chan time.Time, 4)
		br.mu.Lock()
		br.finals[id] = ch
		br.mu.Unlock()
		req := command.Request{ID: id, Device: thing, Name: "door.unlock", IssuedAt: time.Now().UnixMilli(), ValidMS: 30_000}
		start := time.Now()
		br.backend.Publish(requestTopic(id), 1, false, mustJSON(t, req))
		var final time.Time
		select {
		case final = <-ch:
		case <-time.After(waitLong):
			t.Fatalf("no final response for %s", id)
		}
		br.mu.Lock()
		var resp command.Response
		for _, g := range br.got {
			if g.ID == id {
				resp = g
			}
		}
		br.mu.Unlock()
		if resp.Status != command.StatusSucceeded {
			t.Fatalf("%s: %s/%s (%s)", id, resp.Status, resp.ReasonCode, resp.Reason)
		}
		wakes, reqs, locks := r.awaitFrames(t, len(wakesBefore)+1, len(reqsBefore)+1)
		if len(wakes) != len(wakesBefore)+1 || len(reqs) != len(reqsBefore)+1 || locks[len(locks)-1] != 2 {
			t.Fatalf("%s: %d wake-ups and %d requests (last %v) on the bus, want one more of each, an unlock",
				id, len(wakes)-len(wakesBefore), len(reqs)-len(reqsBefore), locks)
		}
		toFrame = append(toFrame, reqs[len(reqs)-1].Sub(start))
		toFinal = append(toFinal, final.Sub(start))
		if s := r.veh.State(); s.Lock != sim.Unlocked {
			t.Fatalf("%s: sim lock %d after SUCCEEDED", id, s.Lock)
		}
	}
	br.mu.Lock()
	got := slices.Clone(br.got)
	br.mu.Unlock()
	for _, resp := range got {
		checkFinal(t, resp, command.StatusSucceeded, command.ReasonOK)
	}
	if s := r.veh.State(); s.Wakeups != n {
		t.Errorf("sim woken %d times for %d commands", s.Wakeups, n)
	}
	p50 := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	t.Logf("parked, bus asleep, %d door.unlock: publish → unlock frame p50 %v max %v; publish → final response (body delay %v) p50 %v max %v",
		n, p50(toFrame), slices.Max(toFrame), sim.DefaultBodyDelay, p50(toFinal), slices.Max(toFinal))
}

// TestWakeJoinedThenResent: a command that joins a wake-up under way sends
// the frames again itself when that wake-up's window ends without fresh
// inputs; here the network wakes only on the second wake frame.
func TestWakeJoinedThenResent(t *testing.T) {
	t.Parallel()
	const wakeTimeout = 400 * time.Millisecond
	var nm atomic.Int32
	var h *harness
	h = newHarnessIn(t, t.TempDir(), func(c *command.Config) {
		c.Wake = []command.WakeFrame{{Bus: "body", Message: "NM_TCU"}}
		c.WakeTimeout = dur(wakeTimeout)
	}, func(f commandtest.Frame) {
		if f.Message == "NM_TCU" && nm.Add(1) == 2 {
			h.emit(sigSpeed, 0)
			h.emit(sigGear, 0)
		}
	})
	h.clock.Advance(3 * time.Second) // max_age 2 s: the inputs are stale
	h.send(h.req("first-1", "door.unlock"))
	waitFor(t, func() bool { return nm.Load() == 1 })
	h.send(h.req("joins-1", "ignition.disable")) // another actuator, within the first's window
	checkFinal(t, h.final("joins-1", 1), command.StatusSucceeded, command.ReasonOK)
	// The first command's own window ends when the second wake-up goes out:
	// it may see the fresh inputs or not.
	if r := h.final("first-1", 1); r.ReasonCode != command.ReasonOK && r.ReasonCode != command.ReasonInterlockStale {
		t.Errorf("first command: %s/%s (%s)", r.Status, r.ReasonCode, r.Reason)
	}
	if n := nm.Load(); n != 2 {
		t.Errorf("%d wake frames, want 2 (one resent by the joined command)", n)
	}
	if st := h.eng.Stats(); st.Wakes != 2 {
		t.Errorf("Stats().Wakes = %d, want 2", st.Wakes)
	}
}

// TestWakeWaitsOutNewHold: an input never heard before (an agent started
// while the bus slept) can only begin its hold ("for") with the first
// sample after the wake-up. The command waits that hold out, observed on
// fresh samples, instead of refusing "held 1ms, needs 2s" (which the
// idle-cost run's first door.unlock after a start on a sleeping bus got);
// a value that breaks the interlock after the wake-up is refused at once.
func TestWakeWaitsOutNewHold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		doors  float64
		status command.Status
		reason string
	}{
		{"hold met after the wake", 0, command.StatusSucceeded, command.ReasonOK},
		{"value breaks the interlock", 1, command.StatusRejected, command.ReasonInterlock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			woken := make(chan struct{}, 4)
			h := newHarnessIn(t, t.TempDir(), func(c *command.Config) {
				c.Wake = []command.WakeFrame{{Bus: "body", Message: "NM_TCU", Signals: map[string]float64{"Wake": 1}}}
				c.WakeTimeout = dur(5 * time.Second)
				c.Interlocks[0].For = 0 // the restart below forgets the standstill hold
			}, func(f commandtest.Frame) {
				if f.Message == "NM_TCU" {
					woken <- struct{}{}
				}
			})
			h.stop()
			h.cfg.Interlocks = append(h.cfg.Interlocks, command.Interlock{Name: "doors", Signal: "Vehicle.Body.Doors", Op: "==",
				Value: 0, For: dur(2 * time.Second), MaxAge: dur(10 * time.Second), AppliesTo: []string{"door.unlock"}})
			h.start()
			h.send(h.req("hold-1", "door.unlock"))
			select {
			case <-woken:
			case <-time.After(30 * time.Second):
				t.Fatalf("no wake frame; responses %+v", h.resp.For("hold-1"))
			}
			h.emit("Vehicle.Body.Doors", tc.doors)
			h.emit(sigSpeed, 0)
			h.emit(sigGear, 0)
			if tc.doors != 0 {
				checkFinal(t, h.final("hold-1", 1), tc.status, tc.reason)
				return
			}
			// Awake, inputs fresh, the doors hold only just begun: no answer yet.
			time.Sleep(300 * time.Millisecond)
			for _, r := range h.resp.For("hold-1") {
				if r.Status != command.StatusInProgress {
					t.Fatalf("answered %s/%s %q before the hold was observed", r.Status, r.ReasonCode, r.Reason)
				}
			}
			h.clock.Advance(2 * time.Second)
			h.emit("Vehicle.Body.Doors", 0)
			h.emit(sigSpeed, 0)
			h.emit(sigGear, 0)
			checkFinal(t, h.final("hold-1", 1), tc.status, tc.reason)
		})
	}
}

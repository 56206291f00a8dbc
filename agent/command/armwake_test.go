package command_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// armRig is the sim rig for armed commands: ignition.disable (and, with
// unlockArmed, door.unlock) armed at standstill, the interlocks' max_age
// testMaxAge, the standstill hold hold; with wakeTimeout > 0 the wake frame
// (an empty BODY_COMMAND) is configured.
func armRig(t *testing.T, wakeTimeout, armTimeout, hold time.Duration, unlockArmed bool) *simRig {
	t.Helper()
	r := newSimRig(t, sim.Knobs{Hold: sim.HoldMoving, Speed: 30}, func(c *command.Config) {
		if wakeTimeout > 0 {
			c.Wake = []command.WakeFrame{{Bus: "body", Message: "BODY_COMMAND"}}
			c.WakeTimeout = dur(wakeTimeout)
		}
		for i := range c.Interlocks {
			c.Interlocks[i].MaxAge = dur(testMaxAge)
		}
		c.Interlocks[0].For = dur(hold)
		for i := range c.Commands {
			if c.Commands[i].Name == "ignition.disable" || unlockArmed && c.Commands[i].Name == "door.unlock" {
				c.Commands[i].Mode = command.ModeAtStandstill
				c.Commands[i].ArmTimeout = dur(armTimeout)
			}
		}
	})
	waitFor(t, func() bool { s, ok := r.cache.Latest(sigSpeed); return ok && s.Value > 10 })
	return r
}

// armed sends name while the vehicle moves and waits for its IN_PROGRESS
// "armed".
func (r *simRig) armed(t *testing.T, id, name string, validMS int64) time.Time {
	t.Helper()
	at := r.send(t, id, name, validMS)
	waitFor(t, func() bool { return len(r.resp.For(id)) >= 1 })
	if p := r.resp.For(id)[0]; p.Status != command.StatusInProgress || p.ReasonCode != command.ReasonArmed {
		t.Fatalf("%s: first response %s/%s (%s), want IN_PROGRESS armed", id, p.Status, p.ReasonCode, p.Reason)
	}
	return at
}

// TestArmedCommandRewakesBus: an at_standstill command armed while the
// vehicle moves; the vehicle parks and the bus falls asleep before the
// interlocks hold, so the inputs go stale while it waits. It wakes the bus
// as on receipt and decides on the fresh inputs only: it never actuates on
// stale data, never sends a wake frame without [[commands.wake]], and a
// bus that does not wake (or a validity window that ends meanwhile) ends
// it with the receipt path's reason.
func TestArmedCommandRewakesBus(t *testing.T) {
	t.Parallel()
	parkAsleep := func(k sim.Knobs) func(r *simRig) {
		return func(r *simRig) {
			k.Asleep = true
			r.veh.Update(func(s *sim.State) { s.Ignition = sim.IgnitionOff })
			r.veh.SetKnobs(k)
		}
	}
	for _, tc := range []struct {
		name        string
		wakeTimeout time.Duration // 0: no [[commands.wake]]
		validMS     int64
		then        func(r *simRig)
		status      command.Status
		code        string
		reason      string // in the final reason
		wakes       int    // wake frames on the bus; -1: at least one
		actuated    bool
	}{
		{
			name: "bus wakes, vehicle parked: actuated on fresh inputs", wakeTimeout: 1500 * time.Millisecond, validMS: 30_000,
			then: parkAsleep(sim.Knobs{Hold: sim.HoldParked}), status: command.StatusSucceeded, code: command.ReasonOK,
			reason: "Vehicle.Immobilizer.IsEngaged = 1", wakes: 1, actuated: true,
		},
		{
			name: "bus wakes, vehicle still moving: stays armed, no frame", wakeTimeout: 1500 * time.Millisecond, validMS: 30_000,
			then: parkAsleep(sim.Knobs{Hold: sim.HoldMoving, Speed: 30}), status: command.StatusTimedOut, code: command.ReasonInterlockNotMet,
			reason: "Vehicle.Speed = 30", wakes: 1,
		},
		{
			name: "bus does not wake", wakeTimeout: 800 * time.Millisecond, validMS: 30_000,
			then: parkAsleep(sim.Knobs{Hold: sim.HoldParked, NoWake: true}), status: command.StatusRejected, code: command.ReasonInterlockStale,
			reason: "the bus did not wake within wake_timeout 800ms (wake-up sent on body); not actuated", wakes: 1,
		},
		{
			name: "validity window ends while waking", wakeTimeout: 5 * time.Second, validMS: 3_500,
			then: parkAsleep(sim.Knobs{Hold: sim.HoldParked, NoWake: true}), status: command.StatusRejected, code: command.ReasonExpired,
			reason: "validity window ended while armed, waking the bus; not actuated", wakes: 1,
		},
		{
			name: "no wake configured: armed until arm_timeout, as before", validMS: 30_000,
			then: parkAsleep(sim.Knobs{Hold: sim.HoldParked}), status: command.StatusTimedOut, code: command.ReasonInterlockNotMet,
			reason: "is stale", wakes: 0,
		},
		{
			// Parked with the ignition off, the bus sleeps after 300 ms of
			// quiet (also after each wake-up) while the 3 s standstill hold
			// runs: re-woken as often as it falls asleep, the hold kept
			// across the sleeps, actuated once it has held.
			name: "bus sleeps again and again during the hold", wakeTimeout: 1500 * time.Millisecond, validMS: 30_000,
			then: func(r *simRig) {
				r.veh.Update(func(s *sim.State) { s.Ignition = sim.IgnitionOff })
				r.veh.SetKnobs(sim.Knobs{Hold: sim.HoldParked, SleepAfter: 300 * time.Millisecond})
			},
			status: command.StatusSucceeded, code: command.ReasonOK, reason: "Vehicle.Immobilizer.IsEngaged = 1", wakes: -1, actuated: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hold := 300 * time.Millisecond
			if tc.wakes < 0 {
				hold = 3 * time.Second
			}
			r := armRig(t, tc.wakeTimeout, 5*time.Second, hold, false)
			r.armed(t, "armed-1", "ignition.disable", tc.validMS)
			tc.then(r)
			resp := r.final(t, "armed-1")
			checkFinal(t, resp, tc.status, tc.code)
			if !strings.Contains(resp.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", resp.Reason, tc.reason)
			}
			minReqs := 0
			if tc.actuated {
				minReqs = 1
			}
			minWakes := 0
			if tc.wakes != 0 {
				minWakes = 1
			}
			wakes, reqs, _ := r.awaitFrames(t, minWakes, minReqs)
			switch {
			case tc.wakes >= 0 && len(wakes) != tc.wakes:
				t.Errorf("%d wake frames on the bus, want %d", len(wakes), tc.wakes)
			case tc.wakes < 0 && len(wakes) < 1:
				t.Errorf("no wake frame on the bus")
			}
			if st := r.eng.Stats(); st.Wakes != uint64(len(wakes)) {
				t.Errorf("Stats().Wakes = %d, %d wake frames on the bus", st.Wakes, len(wakes))
			}
			if !tc.actuated {
				if len(reqs) != 0 || r.veh.State().Immobilized {
					t.Errorf("actuated: %d request frames, sim immobilized %v", len(reqs), r.veh.State().Immobilized)
				}
				return
			}
			if len(reqs) != 1 || !r.veh.State().Immobilized {
				t.Fatalf("%d request frames, sim immobilized %v; want 1, true", len(reqs), r.veh.State().Immobilized)
			}
			if !wakes[len(wakes)-1].Before(reqs[0]) {
				t.Errorf("the request frame went out before the last wake-up")
			}
			t.Logf("%d wake-up(s) while armed (sim woken %d times); last wake frame → command frame %v",
				len(wakes), r.veh.State().Wakeups, reqs[0].Sub(wakes[len(wakes)-1]).Round(time.Millisecond))
		})
	}
}

// TestArmedCommandsShareWake: two armed commands for two actuators whose
// inputs go stale together are served by one wake-up (coalesced) and both
// run on the fresh inputs.
func TestArmedCommandsShareWake(t *testing.T) {
	t.Parallel()
	r := armRig(t, 1500*time.Millisecond, 8*time.Second, 300*time.Millisecond, true)
	r.veh.Update(func(s *sim.State) { s.Lock = sim.Locked })
	r.armed(t, "share-1", "ignition.disable", 30_000)
	r.armed(t, "share-2", "door.unlock", 30_000)
	r.veh.Update(func(s *sim.State) { s.Ignition = sim.IgnitionOff })
	r.veh.SetKnobs(sim.Knobs{Hold: sim.HoldParked, Asleep: true})
	checkFinal(t, r.final(t, "share-1"), command.StatusSucceeded, command.ReasonOK)
	checkFinal(t, r.final(t, "share-2"), command.StatusSucceeded, command.ReasonOK)
	wakes, reqs, _ := r.awaitFrames(t, 1, 2)
	if len(wakes) != 1 || len(reqs) != 2 {
		t.Errorf("frames: %d wake-ups %d requests, want 1 and 2", len(wakes), len(reqs))
	}
	if st := r.eng.Stats(); st.Wakes != 1 {
		t.Errorf("Stats().Wakes = %d, want 1", st.Wakes)
	}
	if s := r.veh.State(); s.Wakeups != 1 || s.Lock != sim.Unlocked || !s.Immobilized {
		t.Errorf("sim: %+v", s)
	}
}

// TestArmedWakeUnsendable: the inputs of an armed command go stale and the
// wake frame's bus has no transmitter: refused at once, as on receipt,
// saying the bus could not be woken; nothing on the bus.
func TestArmedWakeUnsendable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Wake = []command.WakeFrame{{Bus: "gateway", Message: "NM_TCU"}}
	})
	h.emit(sigSpeed, 30)
	h.send(h.req("armed-unsendable-1", "ignition.disable"))
	waitFor(t, func() bool { return len(h.resp.For("armed-unsendable-1")) == 1 })
	if p := h.resp.For("armed-unsendable-1")[0]; p.ReasonCode != command.ReasonArmed {
		t.Fatalf("first response %s/%s, want IN_PROGRESS armed", p.Status, p.ReasonCode)
	}
	h.clock.Advance(3 * time.Second) // max_age 2 s: the inputs are stale
	r := h.final("armed-unsendable-1", 1)
	checkFinal(t, r, command.StatusRejected, command.ReasonInterlockStale)
	if !strings.Contains(r.Reason, "could not be woken") || !strings.Contains(r.Reason, "gateway") {
		t.Errorf("reason %q", r.Reason)
	}
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames sent, want 0", n)
	}
	if st := h.eng.Stats(); st.Wakes != 0 {
		t.Errorf("Stats().Wakes = %d for a wake-up never sent", st.Wakes)
	}
}

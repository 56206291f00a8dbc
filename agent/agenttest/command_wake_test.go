package agenttest

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// TestSystemCommandWakesBus: the real agent binary with configs/demo.toml
// ([[commands.wake]], wake_timeout 1.5 s) behind Debian's mosquitto; the
// parked car's bus asleep long enough that the standstill interlock's
// input is stale (max_age 3 s). Every door.unlock wakes the bus (one wake
// frame: BODY_COMMAND without a request), waits for fresh inputs and
// unlocks; after each, a door.unlock on the then awake bus (fresh inputs)
// sends no wake frame and is the baseline. It logs publish → wake frame,
// → unlock frame and → final
// response (p50, max; measured, not asserted: on a loaded disk the ledger
// fsync before the frame alone has taken 2.2 s). 20 commands, 3 with
// -short; WAKE_DEBUG=1 also logs the agent's output.
func TestSystemCommandWakesBus(t *testing.T) {
	n := 20
	if testing.Short() {
		n = 3
	}
	r := newFloodRig(t, binary(t), 0)
	r.waitUnlockable(t)
	var toWake, toFrame, toFinal, awakeFrame, awakeFinal []time.Duration
	for i := range n {
		k := r.s.Vehicle.Knobs()
		k.Asleep = true
		r.s.Vehicle.SetKnobs(k)
		// No frame for longer than the interlock's max_age (3 s): its
		// input is stale at the agent.
		time.Sleep(3500 * time.Millisecond)
		// Locked while asleep (after the last command's repeated frames
		// have had their effect), so that the unlock changes the state.
		r.s.Vehicle.Update(func(st *sim.State) { st.Lock = sim.Locked })
		wakeups := r.s.Vehicle.State().Wakeups
		req := devcloud.NewRequest(r.s.Thing(), "door.unlock", nil, time.Now(), 30*time.Second)
		t0 := time.Now()
		r.be.publish(req)
		resp, ok := r.be.waitFinal(req.ID, 30*time.Second)
		if !ok || resp.Status != devcloud.StatusSucceeded {
			t.Fatalf("door.unlock %d on a sleeping bus: %+v (answered %v)", i, resp, ok)
		}
		first := func(sig string, v float64) time.Time {
			for _, f := range r.s.Frames(sig, v) {
				if !f.At.Before(t0) && (sig != "LockRequest" || v != 0 || f.Signals["ImmobilizerRequest"] == 0) {
					return f.At
				}
			}
			t.Fatalf("door.unlock %d: no BODY_COMMAND %s=%v frame after the publish", i, sig, v)
			return time.Time{}
		}
		wake, unlock := first("LockRequest", 0), first("LockRequest", 2)
		if !wake.Before(unlock) {
			t.Errorf("door.unlock %d: the unlock frame went out before the wake-up", i)
		}
		if st := r.s.Vehicle.State(); st.Wakeups != wakeups+1 || st.Lock != sim.Unlocked {
			t.Errorf("door.unlock %d: wake-ups %d → %d, lock %d", i, wakeups, st.Wakeups, st.Lock)
		}
		toWake = append(toWake, wake.Sub(t0))
		toFrame = append(toFrame, unlock.Sub(t0))
		toFinal = append(toFinal, resp.At.Sub(t0))

		// The baseline, same rig: the bus awake, inputs fresh: no wake frame.
		time.Sleep(500 * time.Millisecond) // the repeats have had their effect
		r.s.Vehicle.Update(func(st *sim.State) { st.Lock = sim.Locked })
		time.Sleep(300 * time.Millisecond) // BODY_STATUS (10 Hz) shows it
		req = devcloud.NewRequest(r.s.Thing(), "door.unlock", nil, time.Now(), 30*time.Second)
		t0 = time.Now()
		r.be.publish(req)
		resp, ok = r.be.waitFinal(req.ID, 30*time.Second)
		if !ok || resp.Status != devcloud.StatusSucceeded {
			t.Fatalf("door.unlock %d on the awake bus: %+v (answered %v)", i, resp, ok)
		}
		for _, f := range r.s.Frames("LockRequest", 0) {
			if !f.At.Before(t0) && f.Signals["ImmobilizerRequest"] == 0 {
				t.Fatalf("door.unlock %d on the awake bus sent a wake frame", i)
			}
		}
		awakeFrame = append(awakeFrame, first("LockRequest", 2).Sub(t0))
		awakeFinal = append(awakeFinal, resp.At.Sub(t0))
	}
	// tcu-agent status counts the wake-ups: one per unlock on the sleeping
	// bus, none for the baselines (nor for waitUnlockable's probes).
	if st, err := r.s.Status(context.Background()); err != nil || st.Commands.Wakes != uint64(n) || st.Commands.Succeeded < uint64(2*n) {
		t.Errorf("status commands = %+v (err %v), want %d wake-ups and at least %d successes", st.Commands, err, n, 2*n)
	}
	q := func(d []time.Duration) string {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2].Round(100*time.Microsecond).String() + " / " + d[len(d)-1].Round(100*time.Microsecond).String()
	}
	t.Logf("%d door.unlock on a sleeping bus (p50 / max): publish → wake frame %s, → unlock frame %s, → final %s (body delay %v)",
		n, q(toWake), q(toFrame), q(toFinal), sim.DefaultBodyDelay)
	t.Logf("%d door.unlock on the awake bus, same rig (p50 / max): publish → unlock frame %s, → final %s",
		n, q(awakeFrame), q(awakeFinal))
	if os.Getenv("WAKE_DEBUG") != "" {
		t.Log(r.s.newest().Log())
	}
}

package command

import (
	"maps"
	"slices"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// armPoll re-evaluates the interlocks of an armed command this often even
// without new samples (hold times and staleness change with time alone).
const armPoll = 100 * time.Millisecond

// minRepeatInterval bounds the frame rate of repeated frames.
const minRepeatInterval = 10 * time.Millisecond

// execute runs one admitted command up to its outcome; begun reports
// whether its ledger entry was written (it may have been actuated).
func (e *Engine) execute(j *job) (outcome *refusal, begun bool) {
	// A sleeping bus (stale interlock inputs) is woken first; the
	// interlocks are then evaluated as usual on fresh inputs.
	if ref := e.awaken(j); ref != nil {
		return ref, false
	}
	for {
		if j.spec.Mode == ModeAtStandstill {
			if ref := e.arm(j); ref != nil {
				return ref, false
			}
		}
		ref := e.preflight(j)
		if ref == nil {
			break
		}
		if j.spec.Mode != ModeAtStandstill || ref.code != ReasonInterlock {
			return ref, false
		}
		// An interlock let go between arming and the frame: arm again,
		// within the same deadline.
	}
	tx, ok := e.txFor(j.spec.Bus)
	if !ok {
		return refuse(StatusFailed, ReasonNoTransmitter, "bus %s has no transmitter", j.spec.Bus), false
	}
	// Room in the ledger was taken at admission (the received entry).
	if err := e.ledger.Begin(j.id, j.req.Name, j.topic, e.expires(j), e.now()); err != nil {
		j.log.Error("command ledger write failed", "err", err)
		return refuse(StatusFailed, ReasonLedgerUnavailable, "command ledger unavailable; not actuated"), false
	}
	j.log.Info("command ledger written")
	if e.hooks.afterBegin != nil {
		e.hooks.afterBegin(j.id)
	}
	j.signals = e.frameSignals(j.spec)
	sentAt := e.now()
	if err := tx.Transmit(j.ctx, j.spec.Message, j.signals); err != nil {
		j.log.Warn("command transmit failed", "bus", j.spec.Bus, "message", j.spec.Message, "err", err)
		return refuse(StatusFailed, ReasonTransmitFailed, "transmit %s on %s: %v", j.spec.Message, j.spec.Bus, err), true
	}
	j.log.Info("command frame sent", "bus", j.spec.Bus, "message", j.spec.Message)
	return e.confirm(j, tx, sentAt), true
}

// preflight re-checks, right before actuation, what may have changed since
// receipt: the clock, the validity window and the interlocks.
func (e *Engine) preflight(j *job) *refusal {
	if err := j.ctx.Err(); err != nil {
		return refuse(StatusRejected, ReasonShutdown, "agent stopping; not actuated")
	}
	now := e.now()
	if ref := e.checkTime(j.req, now); ref != nil {
		return ref
	}
	return e.il.check(j.req.Name, now)
}

// arm waits, in at_standstill mode, until the interlocks hold, for at most
// arm_timeout and never past the validity window. Should the interlock
// inputs go stale or missing while it waits (the bus fell asleep) and wake
// frames are configured, it wakes the bus as on receipt (wakeBus: joins a
// wake-up under way, at most wake_timeout, never past the arm deadline)
// and goes on waiting on the fresh inputs; a bus that does not wake ends
// the command with the receipt path's refusal. It never decides on stale
// inputs: without wake frames they keep it armed until its deadline.
func (e *Engine) arm(j *job) *refusal {
	ref := e.il.check(j.req.Name, e.now())
	if ref == nil {
		return nil
	}
	if j.armUntil.IsZero() {
		j.log.Info("command armed", "reason", ref.reason)
		e.progress(j, ReasonArmed, "armed, waiting for interlocks: "+ref.reason)
		wait := j.spec.ArmTimeout.Std()
		validEnd := time.UnixMilli(j.req.IssuedAt).Add(e.validity(j.req))
		if left := validEnd.Sub(e.now()); left < wait {
			wait, j.armExpiring = max(left, 0), true
		}
		j.armUntil = time.Now().Add(wait)
	}
	deadline := time.NewTimer(time.Until(j.armUntil))
	defer deadline.Stop()
	poll := time.NewTicker(armPoll)
	defer poll.Stop()
	for {
		ch := e.sig.Changed()
		if ref = e.il.check(j.req.Name, e.now()); ref == nil {
			j.log.Info("command interlocks met")
			return nil
		}
		if e.canWake(ref) {
			j.log.Info("command waking the bus while armed", "reason", ref.reason)
			if r := e.wakeBus(j, ref, time.Until(j.armUntil), nil, func(stale *refusal) *refusal {
				return e.armEnd(j, ", waking the bus", stale)
			}); r != nil {
				return r
			}
			continue // fresh inputs: evaluate them
		}
		select {
		case <-ch:
		case <-poll.C:
		case <-deadline.C:
			return e.armEnd(j, "", ref)
		case <-j.ctx.Done():
			return refuse(StatusRejected, ReasonShutdown, "agent stopping while armed; not actuated")
		}
	}
}

// armEnd is the refusal of an armed command whose deadline passed with
// the interlocks refusing ref (while: what it was doing then, "" or
// ", waking the bus"): REJECTED expired when the validity window set the
// deadline, else TIMED_OUT interlock_not_met.
func (e *Engine) armEnd(j *job, while string, ref *refusal) *refusal {
	if j.armExpiring {
		return refuse(StatusRejected, ReasonExpired, "validity window ended while armed%s; not actuated: %s", while, ref.reason)
	}
	return refuse(StatusTimedOut, ReasonInterlockNotMet, "interlocks not met within arm_timeout %s%s; not actuated: %s", j.spec.ArmTimeout.Std(), while, ref.reason)
}

// confirm repeats the frame as configured and waits for the feedback signal
// to show the expected value in a sample observed after the first frame.
func (e *Engine) confirm(j *job, tx drivers.Transmitter, sentAt time.Time) *refusal {
	spec := j.spec
	timeout := time.NewTimer(spec.Timeout.Std())
	defer timeout.Stop()
	var repeatC <-chan time.Time
	sent := 1
	if spec.repeat() > 1 {
		t := time.NewTicker(max(spec.RepeatInterval.Std(), minRepeatInterval))
		defer t.Stop()
		repeatC = t.C
	}
	var progressC <-chan time.Time
	if e.cfg.ProgressAfter > 0 && !j.progress {
		t := time.NewTimer(e.cfg.ProgressAfter.Std())
		defer t.Stop()
		progressC = t.C
	}
	for {
		ch := e.sig.Changed()
		if s, ok := e.sig.Latest(spec.Feedback); ok && !s.Time.Before(sentAt) {
			if s.Value == spec.Expect {
				j.log.Info("command confirmed", "signal", spec.Feedback, "frames", sent)
				return &refusal{status: StatusSucceeded, code: ReasonOK, reason: spec.Feedback + " = " + fmtValue(s.Value)}
			}
			if slices.Contains(spec.FailValues, s.Value) {
				j.log.Warn("command failed by actuator", "signal", spec.Feedback, "value", s.Value)
				return refuse(StatusFailed, ReasonActuatorFault, "%s = %s: the actuator reported a failure",
					spec.Feedback, fmtValue(s.Value))
			}
		}
		select {
		case <-ch:
		case <-repeatC:
			if err := tx.Transmit(j.ctx, spec.Message, j.signals); err != nil {
				j.log.Warn("command repeat transmit failed", "err", err)
			}
			if sent++; sent >= spec.repeat() {
				repeatC = nil
			}
		case <-progressC:
			e.progress(j, ReasonInProgress, "sent "+spec.Message+", waiting for "+spec.Feedback)
		case <-timeout.C:
			return refuse(StatusTimedOut, ReasonNoConfirmation, "%s did not reach %s within %s (observed %s)",
				spec.Feedback, fmtValue(spec.Expect), spec.Timeout.Std(), e.observed(spec.Feedback))
		case <-j.ctx.Done():
			return refuse(StatusFailed, ReasonShutdown, "agent stopping before %s confirmed; outcome unknown", spec.Feedback)
		}
	}
}

// frameSignals returns the signal values of spec's frame for a new
// command: the fixed values plus the next rolling counter value.
func (e *Engine) frameSignals(spec *Spec) map[string]float64 {
	if spec.Counter == "" {
		return spec.Signals
	}
	key := spec.Bus + "/" + spec.Message + "/" + spec.Counter
	e.mu.Lock()
	n, ok := e.counters[key]
	if !ok {
		n = e.seed
	}
	n = (n + 1) % spec.counterModulo()
	e.counters[key] = n
	e.mu.Unlock()
	out := make(map[string]float64, len(spec.Signals)+1)
	maps.Copy(out, spec.Signals)
	out[spec.Counter] = float64(n)
	return out
}

// observed describes the latest value of a signal for a reason text.
func (e *Engine) observed(name string) string {
	s, ok := e.sig.Latest(name)
	if !ok {
		return "no value"
	}
	return fmtValue(s.Value) + " at " + s.Time.UTC().Format(time.RFC3339Nano)
}

// snapshot returns the state reported with j's responses: the feedback
// signal, the interlock inputs and the spec's report list.
func (e *Engine) snapshot(j *job) map[string]float64 {
	if j.spec == nil {
		return nil
	}
	names := append([]string{j.spec.Feedback}, e.il.signals(j.spec.Name)...)
	names = append(names, j.spec.Report...)
	out := map[string]float64{}
	for _, n := range names {
		if s, ok := e.sig.Latest(n); ok {
			out[n] = s.Value
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

package command

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// waker sends the wake frames ([[commands.wake]]) and coalesces wake-ups:
// a command that finds its inputs stale while another command's wake-up is
// under way (sent less than wake_timeout ago) waits on that one instead of
// sending the frames again; if that wake-up's window ends while the
// command still waits, it sends the frames itself.
type waker struct {
	mu     sync.Mutex
	sentAt time.Time // guarded by mu; monotonic time of the last frames sent; zero: never
}

// canWake reports whether ref, the interlock check's refusal, is one a
// wake-up of the bus may clear: an input missing or stale while wake
// frames are configured.
func (e *Engine) canWake(ref *refusal) bool {
	return ref != nil && len(e.cfg.Wake) > 0 &&
		(ref.code == ReasonInterlockStale || ref.code == ReasonInterlockMissing)
}

// awaken wakes the vehicle network for j when (and only when) the
// interlock check today would refuse it for a missing or stale input: it
// sends the wake frames (or joins a wake-up under way) and waits, on
// signal changes, until every interlock input of j is fresh again, for at
// most wake_timeout and never past j's validity window. A hold ("for")
// that could only begin with the first sample after the wake (the input
// was never heard: an agent started while the bus slept) is then waited
// out too, within the validity window: the hold is observed, not assumed.
// It returns nil to go on (the interlocks are then evaluated as usual), or
// the final refusal.
func (e *Engine) awaken(j *job) *refusal {
	if j.ctx.Err() != nil || e.checkTime(j.req, e.now()) != nil {
		return nil // refused by preflight; no point waking the bus
	}
	ref := e.il.check(j.req.Name, e.now())
	if !e.canWake(ref) {
		return nil
	}
	validEnd := time.UnixMilli(j.req.IssuedAt).Add(e.validity(j.req))
	var progressC <-chan time.Time
	if pa := e.cfg.ProgressAfter.Std(); pa > 0 && pa < min(e.cfg.WakeTimeout.Std(), validEnd.Sub(e.now())) && !j.progress {
		t := time.NewTimer(pa)
		defer t.Stop()
		progressC = t.C
	}
	j.log.Info("command waking the bus", "reason", ref.reason)
	if ref := e.wakeBus(j, ref, validEnd.Sub(e.now()), progressC, func(stale *refusal) *refusal {
		return refuse(StatusRejected, ReasonExpired, "validity window ended while waking the bus; not actuated: %s", stale.reason)
	}); ref != nil {
		return ref
	}
	// From here only the validity window bounds the wait.
	deadline := time.NewTimer(max(validEnd.Sub(e.now()), 0))
	defer deadline.Stop()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	var holdC <-chan time.Time
	for {
		ch := e.sig.Changed()
		left, ok := e.il.holdLeft(j.req.Name, e.now())
		if !ok {
			return nil
		}
		if holdC == nil {
			j.log.Info("command waiting for interlock hold after the wake", "left", left.Round(time.Millisecond))
		}
		hold.Reset(left)
		holdC = hold.C
		select {
		case <-ch:
		case <-holdC:
		case <-progressC:
			e.progress(j, ReasonWaking, "waking the bus: "+ref.reason)
		case <-deadline.C:
			return refuse(StatusRejected, ReasonExpired, "validity window ended while waiting for an interlock hold after waking the bus; not actuated")
		case <-j.ctx.Done():
			return refuse(StatusRejected, ReasonShutdown, "agent stopping while waking the bus; not actuated")
		}
	}
}

// wakeBus sends the wake frames for j, whose interlock check ref failed on
// a missing or stale input, or joins a wake-up under way, and waits on
// signal changes until every interlock input of j is fresh again, for at
// most wake_timeout and never longer than limit. A joined wake-up whose
// window ends while j still waits is sent again by j. progressC, when not
// nil, sends j's IN_PROGRESS "waking". It returns nil once the inputs are
// fresh (the interlocks are then evaluated as usual), else the final
// refusal: the bus could not be woken or did not wake (ref's code, stale
// or missing), atLimit(the stale refusal) when limit came first, or
// agent_shutdown.
func (e *Engine) wakeBus(j *job, ref *refusal, limit time.Duration, progressC <-chan time.Time, atLimit func(stale *refusal) *refusal) *refusal {
	start := time.Now()
	joined, until, buses, err := e.sendWake(j)
	if err != nil {
		return refuse(StatusRejected, ref.code, "%s; the bus could not be woken: %v; not actuated", ref.reason, err)
	}
	wait, capped := e.cfg.WakeTimeout.Std(), false
	if limit < wait {
		wait, capped = max(limit, 0), true
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	// A joined wake-up may have been sent up to wake_timeout ago: when its
	// window ends first, this command wakes the bus again itself.
	var againC <-chan time.Time
	if joined {
		again := time.NewTimer(time.Until(until))
		defer again.Stop()
		againC = again.C
	}
	for {
		ch := e.sig.Changed()
		if e.il.stale(j.req.Name, e.now()) == nil {
			j.log.Info("command bus awake", "after", time.Since(start).Round(time.Millisecond), "joined", joined)
			return nil
		}
		select {
		case <-ch:
		case <-againC:
			againC = nil
			if _, _, _, err := e.sendWake(j); err != nil {
				j.log.Warn("command wake frame failed", "err", err)
			}
		case <-progressC:
			progressC = nil
			e.progress(j, ReasonWaking, "waking the bus: "+ref.reason)
		case <-deadline.C:
			stale := e.il.stale(j.req.Name, e.now())
			if stale == nil {
				return nil
			}
			if capped {
				return atLimit(stale)
			}
			j.log.Warn("command bus did not wake", "wake_timeout", e.cfg.WakeTimeout.Std(), "buses", buses)
			return refuse(StatusRejected, stale.code, "%s; the bus did not wake within wake_timeout %s (wake-up sent on %s); not actuated",
				stale.reason, e.cfg.WakeTimeout.Std(), buses)
		case <-j.ctx.Done():
			return refuse(StatusRejected, ReasonShutdown, "agent stopping while waking the bus; not actuated")
		}
	}
}

// sendWake transmits every configured wake frame, unless a wake-up sent
// less than wake_timeout ago is still under way (joined; until is when
// its window ends). It fails only when no frame could be sent; buses
// names where the frames go.
func (e *Engine) sendWake(j *job) (joined bool, until time.Time, buses string, err error) {
	var names []string
	for _, w := range e.cfg.Wake {
		if !slices.Contains(names, w.Bus) {
			names = append(names, w.Bus)
		}
	}
	buses = strings.Join(names, ", ")
	e.waker.mu.Lock()
	defer e.waker.mu.Unlock()
	if at := e.waker.sentAt; !at.IsZero() && time.Since(at) < e.cfg.WakeTimeout.Std() {
		return true, at.Add(e.cfg.WakeTimeout.Std()), buses, nil
	}
	var errs []string
	sent := 0
	for _, w := range e.cfg.Wake {
		tx, ok := e.txFor(w.Bus)
		if !ok {
			errs = append(errs, "bus "+w.Bus+" has no transmitter")
			continue
		}
		if err := tx.Transmit(j.ctx, w.Message, w.Signals); err != nil {
			errs = append(errs, fmt.Sprintf("transmit %s on %s: %v", w.Message, w.Bus, err))
			continue
		}
		sent++
		j.log.Info("command wake frame sent", "bus", w.Bus, "message", w.Message)
	}
	if sent == 0 {
		return false, time.Time{}, buses, errors.New(strings.Join(errs, "; "))
	}
	for _, err := range errs {
		j.log.Warn("command wake frame failed", "err", err)
	}
	e.waker.sentAt = time.Now()
	e.stats.wakes.Add(1)
	return false, e.waker.sentAt.Add(e.cfg.WakeTimeout.Std()), buses, nil
}

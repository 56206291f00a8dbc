package command

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// interlocks evaluates the configured preconditions on live signals. For
// rules with a hold time ("for") it tracks since when each condition has
// held continuously, from the samples it observes: a wake per stored sample
// (coalesced under load), so a violation shorter than one wake-up can be
// missed; at boot nothing has held yet.
type interlocks struct {
	rules []Interlock
	sig   Signals

	mu    sync.Mutex
	since []time.Time // guarded by mu; per rule, sample time the condition started holding; zero = not holding
}

func newInterlocks(rules []Interlock, sig Signals) *interlocks {
	return &interlocks{rules: rules, sig: sig, since: make([]time.Time, len(rules))}
}

// observe folds the latest samples into the hold tracking.
func (il *interlocks) observe() {
	il.mu.Lock()
	defer il.mu.Unlock()
	for i, r := range il.rules {
		s, ok := il.sig.Latest(r.Signal)
		switch {
		case !ok || !r.holds(s.Value):
			il.since[i] = time.Time{}
		case il.since[i].IsZero():
			il.since[i] = s.Time
		}
	}
}

// track keeps the hold tracking current until ctx is done.
func (il *interlocks) track(ctx context.Context) {
	for {
		ch := il.sig.Changed()
		il.observe()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// check returns nil when every rule that applies to command holds at now,
// else the refusal of the first one that does not.
func (il *interlocks) check(command string, now time.Time) *refusal {
	il.observe()
	il.mu.Lock()
	defer il.mu.Unlock()
	for i, r := range il.rules {
		if !r.appliesTo(command) {
			continue
		}
		s, ref := r.input(il.sig, now)
		if ref != nil {
			return ref
		}
		if !r.holds(s.Value) {
			return refuse(StatusRejected, ReasonInterlock,
				"interlock %s: %s = %s, needs %s %s", r.Name, r.Signal, fmtValue(s.Value), r.Op, fmtValue(r.Value))
		}
		if held := now.Sub(il.since[i]); r.For > 0 && (il.since[i].IsZero() || held < r.For.Std()) {
			return refuse(StatusRejected, ReasonInterlock,
				"interlock %s: %s %s %s held %s, needs %s", r.Name, r.Signal, r.Op, fmtValue(r.Value),
				max(held, 0).Round(time.Millisecond), r.For.Std())
		}
	}
	return nil
}

// holdLeft reports how long command still has to wait for its hold times
// ("for") alone: when every rule that applies to it has a fresh input whose
// value holds and some hold began less than its "for" ago, the longest
// remaining hold and true; otherwise false (met, or refused for something
// waiting cannot fix).
func (il *interlocks) holdLeft(command string, now time.Time) (time.Duration, bool) {
	il.observe()
	il.mu.Lock()
	defer il.mu.Unlock()
	var left time.Duration
	for i, r := range il.rules {
		if !r.appliesTo(command) {
			continue
		}
		s, ref := r.input(il.sig, now)
		if ref != nil || !r.holds(s.Value) || il.since[i].IsZero() {
			return 0, false
		}
		if r.For > 0 {
			left = max(left, r.For.Std()-now.Sub(il.since[i]))
		}
	}
	return left, left > 0
}

// stale returns nil when every input of the rules that apply to command
// has a sample no older than its max_age at now, else the refusal
// (missing or stale) of the first one that has not.
func (il *interlocks) stale(command string, now time.Time) *refusal {
	for _, r := range il.rules {
		if !r.appliesTo(command) {
			continue
		}
		if _, ref := r.input(il.sig, now); ref != nil {
			return ref
		}
	}
	return nil
}

// input returns the rule's input sample, or the refusal when it is missing
// or older than max_age at now.
func (r *Interlock) input(sig Signals, now time.Time) (drivers.Sample, *refusal) {
	s, ok := sig.Latest(r.Signal)
	if !ok {
		return s, refuse(StatusRejected, ReasonInterlockMissing,
			"interlock %s: no value for %s", r.Name, r.Signal)
	}
	if age := now.Sub(s.Time); age > r.MaxAge.Std() {
		return s, refuse(StatusRejected, ReasonInterlockStale,
			"interlock %s: %s is stale (%s old, max_age %s)", r.Name, r.Signal, age.Round(time.Millisecond), r.MaxAge.Std())
	}
	return s, nil
}

// signals returns the input signals of the rules that apply to command.
func (il *interlocks) signals(command string) []string {
	var out []string
	for _, r := range il.rules {
		if r.appliesTo(command) {
			out = append(out, r.Signal)
		}
	}
	return out
}

func (r *Interlock) appliesTo(command string) bool {
	for _, n := range r.AppliesTo {
		if n == command {
			return true
		}
	}
	return false
}

// holds reports whether v satisfies the rule's comparison.
func (r *Interlock) holds(v float64) bool {
	switch r.Op {
	case "==":
		return v == r.Value
	case "!=":
		return v != r.Value
	case "<":
		return v < r.Value
	case "<=":
		return v <= r.Value
	case ">":
		return v > r.Value
	case ">=":
		return v >= r.Value
	}
	return false
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// refusal is a final response decided by the engine: status, code, reason.
type refusal struct {
	status Status
	code   string
	reason string
}

func refuse(st Status, code, format string, args ...any) *refusal {
	return &refusal{status: st, code: code, reason: fmt.Sprintf(format, args...)}
}

package command

import "time"

// SetHooks installs test seams: afterBegin runs once the ledger entry is
// durable and before the first frame; afterFinish once the final result is
// durable and before it is handed to the responder.
func SetHooks(e *Engine, afterBegin, afterFinish func(id string)) {
	e.hooks = hooks{afterBegin: afterBegin, afterFinish: afterFinish}
}

// ObserveInterlocks folds the latest samples into the interlock hold
// tracking synchronously.
func ObserveInterlocks(e *Engine) { e.il.observe() }

// InterlockRefusal returns why command's interlocks do not hold at the
// engine's current time, or "" when they hold: the predicate an armed
// command's wait loop evaluates.
func InterlockRefusal(e *Engine, command string) string {
	if r := e.il.check(command, e.now()); r != nil {
		return r.reason
	}
	return ""
}

// SetMaintainEvery sets how often unanswered results are retried while one
// waits (pruneEvery by default); call it before Run.
func SetMaintainEvery(e *Engine, d time.Duration) { e.maintainEvery = d }

// Loops returns how often the dispatcher has woken up since New.
func Loops(e *Engine) uint64 { return e.loops.Load() }

// NextMaintenance returns how long the dispatcher would now sleep before its
// maintenance, and false when it would arm no timer at all.
func NextMaintenance(e *Engine) (time.Duration, bool) { return e.nextMaintenance(e.now(), false) }

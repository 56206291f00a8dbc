package command

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

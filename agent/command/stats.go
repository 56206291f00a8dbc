package command

import "sync/atomic"

// Stats are the engine's counters since New.
type Stats struct {
	// Received counts messages handed to HandleMessage; Dropped those it
	// left unacknowledged because the intake was full (the broker
	// redelivers them after the next reconnect).
	Received, Dropped uint64
	// Finished counts final responses handed to the responder, by status
	// (redelivered recorded answers included).
	Finished map[Status]uint64
	// InFlight is the number of admitted commands not yet answered.
	InFlight int
	// LedgerEntries is the number of ids in the ledger.
	LedgerEntries int
	// Wakes counts wake-ups of the vehicle network sent for commands whose
	// interlock inputs were stale (coalesced wake-ups count once).
	Wakes uint64
}

// counters are updated without locks.
type counters struct {
	received, dropped, wakes              atomic.Uint64
	succeeded, failed, rejected, timedOut atomic.Uint64
}

func (c *counters) finished(st Status) {
	switch st {
	case StatusSucceeded:
		c.succeeded.Add(1)
	case StatusFailed:
		c.failed.Add(1)
	case StatusRejected:
		c.rejected.Add(1)
	case StatusTimedOut:
		c.timedOut.Add(1)
	}
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	inflight := len(e.inflight)
	e.mu.Unlock()
	return Stats{
		Received: e.stats.received.Load(),
		Dropped:  e.stats.dropped.Load(),
		Finished: map[Status]uint64{
			StatusSucceeded: e.stats.succeeded.Load(),
			StatusFailed:    e.stats.failed.Load(),
			StatusRejected:  e.stats.rejected.Load(),
			StatusTimedOut:  e.stats.timedOut.Load(),
		},
		InFlight:      inflight,
		LedgerEntries: e.ledger.Len(),
		Wakes:         e.stats.wakes.Load(),
	}
}

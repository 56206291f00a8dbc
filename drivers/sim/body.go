package sim

import (
	"context"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// BODY_COMMAND request values.
const (
	lockNone   = 0
	lockLock   = 1
	lockUnlock = 2

	immoNone    = 0
	immoEnable  = 1 // ENABLE_IGNITION: immobiliser off
	immoDisable = 2 // DISABLE_IGNITION: immobiliser on
)

// pending is a body-controller reaction waiting for its delay.
type pending struct {
	at   time.Time
	lock int // target lock state, or -1
	immo int // 0 off, 1 on, or -1
}

// receive handles frames from the bus until ctx is done (nil) or the bus
// fails (the error).
func (v *Vehicle) receive(ctx context.Context) error {
	vals := make([]dbc.Value, 0, len(v.cmdMsg.Signals))
	for {
		f, err := v.bus.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !v.wake(time.Now()) {
			continue
		}
		if f.ID != v.cmdMsg.ID || f.Extended != v.cmdMsg.Extended {
			continue
		}
		vals, err = v.cmdMsg.DecodeInto(f.Payload(), vals)
		if err != nil {
			continue // a real ECU ignores malformed requests
		}
		var lock, immo int64
		for _, x := range vals {
			switch x.Signal.Name {
			case "LockRequest":
				lock = x.Raw
			case "ImmobilizerRequest":
				immo = x.Raw
			}
		}
		v.command(time.Now(), lock, immo)
	}
}

// command schedules the body controller's reaction to one request.
func (v *Vehicle) command(now time.Time, lock, immo int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st.Commands++
	if v.knobs.Ignore {
		return
	}
	p := pending{at: now.Add(v.knobs.Delay), lock: -1, immo: -1}
	switch lock {
	case lockLock:
		p.lock = Locked
	case lockUnlock:
		p.lock = Unlocked
	}
	if p.lock >= 0 && v.knobs.Fail {
		p.lock = Fault
	}
	if !v.knobs.Fail {
		switch immo {
		case immoEnable:
			p.immo = 0
		case immoDisable:
			p.immo = 1
		}
	}
	if p.lock >= 0 || p.immo >= 0 {
		v.pending = append(v.pending, p)
	}
}

// applyPendingLocked applies the reactions that are due, in order, and
// marks BODY_STATUS for immediate sending when something changed.
func (v *Vehicle) applyPendingLocked(now time.Time) {
	n := 0
	for _, p := range v.pending {
		if p.at.After(now) {
			v.pending[n] = p
			n++
			continue
		}
		if p.lock >= 0 && p.lock != v.st.Lock {
			v.log.Info("lock state changed", "from", lockName(v.st.Lock), "to", lockName(p.lock))
			v.st.Lock = p.lock
			v.sendNow("BODY_STATUS")
		}
		if p.immo >= 0 && (p.immo == 1) != v.st.Immobilized {
			v.st.Immobilized = p.immo == 1
			v.log.Info("immobilizer changed", "active", v.st.Immobilized)
			v.sendNow("BODY_STATUS")
		}
	}
	v.pending = v.pending[:n]
}

func lockName(s int) string {
	switch s {
	case Unlocked:
		return "UNLOCKED"
	case Locked:
		return "LOCKED"
	case Fault:
		return "FAULT"
	}
	return "UNKNOWN"
}

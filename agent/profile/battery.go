package profile

import (
	"fmt"
	"time"
)

// Level is the battery guard's level.
type Level int

// Battery guard levels.
const (
	LevelNormal Level = iota
	LevelLow
	LevelCritical
)

func (l Level) String() string {
	switch l {
	case LevelLow:
		return "low"
	case LevelCritical:
		return "critical"
	}
	return "normal"
}

// guard is the 12 V battery guard: thresholds with time filters and a
// recovery threshold above both (hysteresis). It is pure: the caller
// supplies the time and the latest voltage.
type guard struct {
	cfg                          Battery
	level                        Level
	since                        time.Time
	reason                       string
	lowSince, critSince, okSince time.Time
}

// step takes the latest voltage v (ok false: none yet) at now. It reports
// whether the level changed and the next time it may change without a new
// voltage (zero: none).
func (g *guard) step(now time.Time, v float64, ok bool) (changed bool, next time.Time) {
	if !g.cfg.Enabled || !ok {
		return false, time.Time{}
	}
	later := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	track := func(cond bool, since *time.Time, d time.Duration) bool {
		if !cond {
			*since = time.Time{}
			return false
		}
		if since.IsZero() {
			*since = now
		}
		if until := since.Add(d); now.Before(until) {
			later(until)
			return false
		}
		return true
	}
	crit := track(v < g.cfg.Critical, &g.critSince, g.cfg.CriticalFor.Std())
	low := track(v < g.cfg.Low, &g.lowSince, g.cfg.LowFor.Std())
	good := track(v >= g.cfg.Recover, &g.okSince, g.cfg.RecoverFor.Std())
	to, why := g.level, ""
	switch {
	case crit && g.level < LevelCritical:
		to, why = LevelCritical, fmt.Sprintf("battery %.2f V < %g V for %v", v, g.cfg.Critical, g.cfg.CriticalFor.Std())
	case low && g.level < LevelLow:
		to, why = LevelLow, fmt.Sprintf("battery %.2f V < %g V for %v", v, g.cfg.Low, g.cfg.LowFor.Std())
	case good && g.level > LevelNormal:
		to, why = LevelNormal, fmt.Sprintf("battery recovered: %.2f V ≥ %g V for %v", v, g.cfg.Recover, g.cfg.RecoverFor.Std())
	}
	if to == g.level {
		return false, next
	}
	g.level, g.since, g.reason = to, now, why
	return true, next
}

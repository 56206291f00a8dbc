package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/agent/metrics"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// healthMaxAge is how long a critical loop may go without a heartbeat
// (while not idle) before the health log and `tcu-agent status` call it
// hung: the systemd unit's WatchdogSec.
const healthMaxAge = 30 * time.Second

// observeWithoutWatchdog is how often the liveness probes, the health log
// and (under systemd without WatchdogSec) the STATUS= line run when there
// is no watchdog (no $WATCHDOG_USEC): nothing restarts a hung agent then,
// so they only feed the log; `tcu-agent status` probes the components
// itself on every query.
const observeWithoutWatchdog = 10 * time.Minute

// proveMaxAge is how long a critical loop may be silent before a
// configuration on trial (agent/jobs) counts as unhealthy.
const proveMaxAge = 100 * time.Second

// startObservability starts the liveness probes, the systemd watchdog, the
// control socket and (if configured) the metrics endpoint. Every goroutine
// it starts ends with ctx; wg tracks them.
func (a *Agent) startObservability(ctx context.Context, wg *sync.WaitGroup) {
	// A probe calls into a component under that component's own lock; a
	// deadlocked component hangs the probe and so stops the watchdog.
	o, err := newObserver(a.health, a.log, a.statusLine, map[string]func(){
		"buffer":  func() { a.queueStats() },
		"drivers": a.sampleRates,
		"uplink": func() {
			if s := a.currentSession(); s != nil {
				s.Stats()
			}
		},
	})
	if err != nil {
		a.log.Warn("systemd watchdog disabled", "err", err)
	}
	wg.Go(func() { o.run(ctx) }) // stops with ctx
	if p := a.cfg.Health.CtlSocket; p != "" {
		wg.Go(func() { // stops with ctx
			var opts []ctl.Option
			if a.level != nil {
				opts = append(opts, ctl.WithLogLevel(a.level))
			}
			a.keepServing(ctx, "ctl_socket", p, func() (net.Listener, error) { return ctl.Listen(p) },
				func(ctx context.Context, ln net.Listener) error { return ctl.ServeListener(ctx, ln, a.status, opts...) })
		})
	}
	if addr := a.cfg.Health.MetricsAddr; addr != "" {
		reg := a.metrics()
		wg.Go(func() { // stops with ctx
			a.keepServing(ctx, "metrics", addr, func() (net.Listener, error) { return metrics.Listen(addr) },
				func(ctx context.Context, ln net.Listener) error { return metrics.ServeListener(ctx, ln, reg) })
		})
	}
}

// keepServing runs serve until ctx ends, restarting it with backoff when
// it fails (socket directory missing, address in use...): an endpoint
// that is down is reported (degraded), never a reason to stop the agent.
func (a *Agent) keepServing(ctx context.Context, name, where string, listen func() (net.Listener, error), serve func(context.Context, net.Listener) error) {
	bo := backoff.New(time.Second, time.Minute)
	last := ""
	for {
		ln, err := listen()
		if err == nil {
			if last != "" {
				a.log.Info(name+" available again", "at", where)
				last = ""
			}
			a.health.Clear(name)
			start := time.Now()
			err = serve(ctx, ln) // closes ln
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped without error")
			}
			if time.Since(start) > time.Minute {
				bo.Reset()
			}
		}
		if err.Error() != last {
			a.log.Warn(name+" unavailable, retrying with backoff", "at", where, "err", err)
			last = err.Error()
		}
		a.health.SetDegraded(name, fmt.Sprintf("%s unavailable: %v", where, err))
		if !backoff.Wait(ctx, bo.Next()) {
			return
		}
	}
}

// An observer runs the liveness probes, the health log and the systemd
// watchdog ping on one timer, so that they cost one wake-up per period:
// the watchdog's (WATCHDOG_USEC/2) when systemd gives one, otherwise
// observeWithoutWatchdog. Each round runs every probe, then logs a change
// of the overall health, then pings: a probe that hangs (a component
// deadlocked under its own lock) hangs the round, so the pings stop and
// systemd restarts the agent after WatchdogSec, and its loop (busy since
// the round began) shows as hung in `tcu-agent status`. A critical loop
// hung elsewhere withholds the ping (sdnotify.Notifier.Tick).
type observer struct {
	tracker  *health.Tracker
	log      *slog.Logger
	notifier *sdnotify.Notifier // nil without $NOTIFY_SOCKET
	status   func() string
	period   time.Duration
	probes   []probe
	health   string // the last logged health
}

type probe struct {
	loop *health.Loop
	fn   func()
}

// newObserver registers one critical loop per probe (sorted by name). An
// error ($WATCHDOG_USEC malformed) still returns a working observer,
// without the watchdog.
func newObserver(tracker *health.Tracker, log *slog.Logger, status func() string, probes map[string]func()) (*observer, error) {
	o := &observer{tracker: tracker, log: log, status: status, period: observeWithoutWatchdog, health: "ok"}
	n, err := sdnotify.NewNotifier()
	if n != nil {
		o.notifier = n
		if iv := n.Interval(); iv > 0 {
			o.period = iv / 2
		}
	}
	for _, name := range slices.Sorted(maps.Keys(probes)) {
		o.probes = append(o.probes, probe{loop: tracker.Loop(name, true), fn: probes[name]})
	}
	return o, err
}

// run does a round now and then every period until ctx ends.
func (o *observer) run(ctx context.Context) {
	defer func() {
		for _, p := range o.probes {
			p.loop.Close()
		}
	}()
	t := time.NewTicker(o.period)
	defer t.Stop()
	for {
		o.round()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round probes, logs a change of health, and pings the watchdog.
func (o *observer) round() {
	for _, p := range o.probes {
		p.loop.Beat() // busy: a probe that never returns is a hung loop
		p.fn()
		p.loop.Idle() // waits for the next round, however long that is
	}
	if ok, why := o.tracker.Healthy(healthMaxAge); why != o.health {
		if ok {
			o.log.Info("health changed", "health", why)
		} else {
			o.log.Error("health changed", "health", why)
		}
		o.health = why
	}
	if o.notifier != nil {
		if err := o.notifier.Tick(o.tracker, o.status); err != nil {
			o.log.Debug("systemd notification failed, sent again next round", "err", err)
		}
	}
}

// sampleRates turns the drivers' frame counters into frames per second.
func (a *Agent) sampleRates() {
	now := a.now()
	for _, s := range a.supervisors() {
		a.rates.update(s.name, driverCounters(s.drv)["frames"], now)
	}
}

func (a *Agent) currentSession() *uplink.Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

func (a *Agent) queueStats() buffer.Stats {
	a.mu.Lock()
	q := a.queue
	a.mu.Unlock()
	if q == nil {
		return buffer.Stats{}
	}
	st := q.Stats()
	if st.Degraded != "" {
		a.health.SetDegraded("buffer", st.Degraded)
	} else {
		a.health.Clear("buffer")
	}
	// The store is open: a fault now is one of its appends (read-only
	// remount, I/O error, disk full), with the records held in memory.
	if s := a.currentStore(); s != nil {
		if err := s.fault(); err != nil {
			a.health.SetDegraded("storage", fmt.Sprintf("buffer refuses records (held in memory, retried with the next ones): %v", err))
		} else {
			a.health.Clear("storage")
		}
	}
	return st
}

// statusLine is the one-line systemd STATUS=.
func (a *Agent) statusLine() string {
	st := a.status()
	parts := []string{}
	if st.Identity.Thing != "" {
		parts = append(parts, "thing "+st.Identity.Thing)
	} else {
		parts = append(parts, "not provisioned")
	}
	parts = append(parts, "mqtt "+st.Connection.State)
	var recs int64
	for _, q := range st.Queues {
		recs += q.Records
	}
	parts = append(parts, fmt.Sprintf("queue %d rec", recs))
	for _, b := range st.Buses {
		parts = append(parts, b.Driver+" "+b.State)
	}
	for _, d := range st.Health.Degraded {
		parts = append(parts, d.Component+": "+d.Reason)
	}
	return strings.Join(parts, "; ")
}

// driverCounters reads a driver's Stats() struct (if it has one) as
// snake_case counters, so the agent needs no knowledge of driver kinds.
func driverCounters(drv any) map[string]uint64 {
	m := reflect.ValueOf(drv).MethodByName("Stats")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 || m.Type().Out(0).Kind() != reflect.Struct {
		return nil
	}
	v := m.Call(nil)[0]
	out := map[string]uint64{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		switch fv := v.Field(i); fv.Kind() {
		case reflect.Uint, reflect.Uint32, reflect.Uint64:
			out[snake(f.Name)] = fv.Uint()
		case reflect.Int, reflect.Int32, reflect.Int64:
			if fv.Int() >= 0 {
				out[snake(f.Name)] = uint64(fv.Int())
			}
		}
	}
	return out
}

// snake turns "DecodeErrors" into "decode_errors" and "TxFrames" into "tx_frames".
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

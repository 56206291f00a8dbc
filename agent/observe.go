package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/metrics"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// probeEvery is how often liveness probes exercise each component: three
// times within healthMaxAge, so a deadlocked component fails the watchdog
// (WatchdogSec=30s) in time, at 0.1 wake-ups/s per probe instead of 1
// (the probes' timers expire together and cost one wake-up).
const probeEvery = 10 * time.Second

// healthMaxAge is how long a critical loop may go without a heartbeat
// (while not idle) before the health log and `tcu-agent status` call it
// hung: the systemd unit's WatchdogSec.
const healthMaxAge = 30 * time.Second

// startObservability starts the liveness probes, the systemd watchdog, the
// control socket and (if configured) the metrics endpoint. Every goroutine
// it starts ends with ctx; wg tracks them.
func (a *Agent) startObservability(ctx context.Context, wg *sync.WaitGroup) {
	// A probe calls into a component under that component's own lock; a
	// deadlocked component stops its probe's heartbeats and so the watchdog.
	a.probe(ctx, wg, "buffer", func() { a.queueStats() })
	a.probe(ctx, wg, "drivers", a.sampleRates)
	a.probe(ctx, wg, "uplink", func() {
		if s := a.currentSession(); s != nil {
			s.Stats()
		}
	})
	wg.Go(func() { a.logHealth(ctx) }) // stops with ctx
	wg.Go(func() {                     // stops with ctx
		if err := sdnotify.Watchdog(ctx, a.health, a.statusLine); err != nil {
			a.log.Warn("systemd watchdog disabled", "err", err)
		}
	})
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

// logHealth logs each change of the overall health (a hung loop, a
// degraded component), once per change: the watchdog itself only shows it
// in systemd's STATUS.
func (a *Agent) logHealth(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	last := "ok"
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, why := a.health.Healthy(healthMaxAge)
		if why == last {
			continue
		}
		if ok {
			a.log.Info("health changed", "health", why)
		} else {
			a.log.Error("health changed", "health", why)
		}
		last = why
	}
}

func (a *Agent) probe(ctx context.Context, wg *sync.WaitGroup, name string, fn func()) {
	loop := a.health.Loop(name, true)
	wg.Go(func() { // stops with ctx
		defer loop.Close()
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			fn()
			loop.Beat()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
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

// Package telemetry turns the drivers' sample stream into buffered records:
// the latest value of every changed signal once per interval as one
// "telemetry" record, and every change of a configured event signal at once
// as an "event" record. It also keeps the live signal table current.
//
// The pipeline's sink never blocks a driver: samples go through a bounded
// channel and are dropped (and counted) when the pipeline falls behind.
package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// Class says which buffer class a record belongs to.
type Class int

// Record classes the pipeline produces.
const (
	ClassTelemetry Class = iota
	ClassEvent
)

// AppendFunc durably appends encoded records (see package record) of one
// class, in order, as one batch (one sync).
type AppendFunc func(ctx context.Context, class Class, data [][]byte) error

// maxBatch bounds the records written in one AppendFunc call.
const maxBatch = 256

// Options configure a Pipeline.
type Options struct {
	// Interval is how often changed signals are written as one record.
	Interval time.Duration
	// Events are signal names whose every change is also an event record.
	Events []string
	// MaxPending bounds the samples waiting for the pipeline.
	MaxPending int
	// Append stores records; it is called from Run's goroutine only.
	Append AppendFunc
	// Observe, if set, sees every sample first (live signal table).
	Observe func(drivers.Sample)
	Logger  *slog.Logger
	Now     func() time.Time
	// StopGrace bounds how long Run keeps appending after ctx ends: the
	// samples already emitted are written within it (default 5s).
	StopGrace time.Duration
	// Seed are the latest known values of the signals: a pipeline that
	// replaces another at run time does not report an unchanged event
	// signal as a change.
	Seed []drivers.Sample
}

// Pipeline is a drivers.Sink that batches samples into records.
type Pipeline struct {
	opts    Options
	in      chan drivers.Sample
	events  map[string]bool
	dropped atomic.Uint64
	written atomic.Uint64
	failed  atomic.Uint64
	beat    func()
	// interval is the current interval (ns); SetInterval changes it and
	// signals retick.
	interval atomic.Int64
	retick   chan struct{}
	idle     func()
	// pending holds encoded records not yet appended, per class; Run's
	// goroutine only. They are appended as soon as the input channel is
	// empty, so a burst of samples costs one sync, not one per record.
	pending [2][][]byte
}

// Stats are the pipeline's counters.
type Stats struct {
	Dropped uint64 // samples dropped because the pipeline fell behind
	Records uint64 // records appended
	Failed  uint64 // records the buffer refused
}

// New returns a pipeline; call Run to start it.
func New(opts Options) (*Pipeline, error) {
	if opts.Append == nil {
		return nil, fmt.Errorf("telemetry: Append is required")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	ev := make(map[string]bool, len(opts.Events))
	for _, e := range opts.Events {
		ev[e] = true
	}
	p := &Pipeline{opts: opts, in: make(chan drivers.Sample, opts.MaxPending), events: ev, beat: func() {}, idle: func() {}, retick: make(chan struct{}, 1)}
	p.interval.Store(int64(opts.Interval))
	return p, nil
}

// SetInterval changes the telemetry interval at run time (a vehicle-state
// profile); d ≤ 0 restores Options.Interval. What is pending is written at
// once, then every d.
func (p *Pipeline) SetInterval(d time.Duration) {
	if d <= 0 {
		d = p.opts.Interval
	}
	if time.Duration(p.interval.Swap(int64(d))) == d {
		return
	}
	select {
	case p.retick <- struct{}{}:
	default:
	}
}

// Interval returns the interval in effect.
func (p *Pipeline) Interval() time.Duration { return time.Duration(p.interval.Load()) }

// SetHeartbeat installs a function Run calls on every loop iteration
// (health/watchdog liveness). Call before Run.
func (p *Pipeline) SetHeartbeat(f func()) { p.beat = f }

// SetIdle installs a function Run calls right before it blocks waiting
// for a sample or its flush timer (health.Loop.Idle): a pipeline waiting
// is not hung, even when its interval (a parked profile's minute) is
// longer than the watchdog's, and an idle pipeline does not wake up to
// say it is alive. Call before Run.
func (p *Pipeline) SetIdle(f func()) { p.idle = f }

// Emit implements drivers.Sink; it never blocks.
func (p *Pipeline) Emit(s drivers.Sample) {
	select {
	case p.in <- s:
	default:
		p.dropped.Add(1)
	}
}

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	return Stats{Dropped: p.dropped.Load(), Records: p.written.Load(), Failed: p.failed.Load()}
}

// Run consumes samples until ctx is done, then writes what it holds
// (every sample emitted before ctx ended) and returns nil. Appends are not
// cut short by ctx itself, only by Options.StopGrace after it: an append in
// flight when the stop comes completes, so nothing accepted is dropped by a
// clean stop.
func (p *Pipeline) Run(ctx context.Context) error {
	actx, cancelAppends := context.WithCancel(context.WithoutCancel(ctx))
	done, watched := make(chan struct{}), make(chan struct{})
	go func() { // ends when Run returns
		defer close(watched)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(p.opts.StopGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancelAppends()
		}
	}()
	defer func() {
		close(done)
		<-watched
		cancelAppends()
	}()
	// The flush timer runs only while samples are pending, so a pipeline
	// with nothing to write (a parked car's silent bus) never wakes up. It
	// fires on the phase a ticker started now would have: one record per
	// interval while samples keep coming.
	epoch := time.Now()
	var flushT *time.Timer
	var flushC <-chan time.Time // nil: not armed
	defer func() {
		if flushT != nil {
			flushT.Stop()
		}
	}()
	pending := map[string]drivers.Sample{}
	prev := map[string]drivers.Sample{}
	for _, s := range p.opts.Seed {
		if p.events[s.Name] {
			prev[s.Name] = s
		}
	}
	for {
		p.beat()
		if flushC == nil && len(pending) > 0 {
			iv := p.Interval()
			d := iv - time.Since(epoch)%iv
			if flushT == nil {
				flushT = time.NewTimer(d)
			} else {
				flushT.Reset(d)
			}
			flushC = flushT.C
		}
		if len(p.in) == 0 {
			// Waiting, not working: however long the flush timer (the
			// interval) is. Every case below beats first.
			p.idle()
		}
		select {
		case <-ctx.Done():
			p.drainInput(pending, prev)
			p.flush(pending)
			p.commit(actx)
			return nil
		case s := <-p.in:
			p.beat() // busy again: a hang from here on (take, commit) is seen
			p.take(s, pending, prev)
		case <-flushC:
			p.beat()
			flushC = nil
			p.flush(pending)
		case <-p.retick:
			p.beat()
			// A new interval: write what is pending now, and count the
			// next interval from here (the timer is armed again, with the
			// new interval, when samples are pending).
			p.flush(pending)
			epoch = time.Now()
			if flushC != nil {
				flushT.Stop()
				flushC = nil
			}
		}
		if len(p.in) == 0 || p.queued() >= maxBatch {
			p.commit(actx)
		}
	}
}

func (p *Pipeline) drainInput(pending, prev map[string]drivers.Sample) {
	for {
		select {
		case s := <-p.in:
			p.take(s, pending, prev)
		default:
			return
		}
	}
}

func (p *Pipeline) take(s drivers.Sample, pending, prev map[string]drivers.Sample) {
	if p.opts.Observe != nil {
		p.opts.Observe(s)
	}
	pending[s.Name] = s
	if !p.events[s.Name] {
		return
	}
	old, seen := prev[s.Name]
	prev[s.Name] = s
	if seen && old.Value == s.Value {
		return
	}
	ev := eventBody{Signal: s.Name, Value: s.Value, Label: s.Label, Source: s.Source}
	if seen {
		ev.Previous = &old.Value
	}
	p.write(ClassEvent, record.KindEvent, s.Time, ev)
}

type eventBody struct {
	Signal   string   `json:"signal"`
	Value    float64  `json:"value"`
	Label    string   `json:"label,omitempty"`
	Previous *float64 `json:"previous,omitempty"`
	Source   string   `json:"source,omitempty"`
}

type telemetryBody struct {
	Signals map[string]float64 `json:"signals"`
	Labels  map[string]string  `json:"labels,omitempty"`
}

// flush writes the pending latest values as one telemetry record.
func (p *Pipeline) flush(pending map[string]drivers.Sample) {
	if len(pending) == 0 {
		return
	}
	body := telemetryBody{Signals: make(map[string]float64, len(pending))}
	var newest time.Time
	names := make([]string, 0, len(pending))
	for n := range pending {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := pending[n]
		body.Signals[n] = s.Value
		if s.Label != "" {
			if body.Labels == nil {
				body.Labels = map[string]string{}
			}
			body.Labels[n] = s.Label
		}
		if s.Time.After(newest) {
			newest = s.Time
		}
		delete(pending, n)
	}
	if newest.IsZero() {
		newest = p.opts.Now()
	}
	p.write(ClassTelemetry, record.KindTelemetry, newest, body)
}

// write encodes one record and queues it for the next commit.
func (p *Pipeline) write(class Class, kind string, ts time.Time, body any) {
	b, err := json.Marshal(body)
	if err == nil {
		b, err = record.Record{Kind: kind, Time: ts, Body: b}.Marshal()
	}
	if err != nil {
		p.fail(1, kind, err)
		return
	}
	p.pending[class] = append(p.pending[class], b)
}

func (p *Pipeline) queued() int { return len(p.pending[ClassTelemetry]) + len(p.pending[ClassEvent]) }

// commit appends the queued records, events first, one batch per class.
func (p *Pipeline) commit(ctx context.Context) {
	for _, class := range []Class{ClassEvent, ClassTelemetry} {
		recs := p.pending[class]
		if len(recs) == 0 {
			continue
		}
		p.pending[class] = nil
		if err := p.opts.Append(ctx, class, recs); err != nil {
			p.fail(uint64(len(recs)), "batch", err)
			continue
		}
		p.written.Add(uint64(len(recs)))
	}
}

func (p *Pipeline) fail(n uint64, kind string, err error) {
	// Logged each time the total crosses a power of two, so a broken
	// store cannot flood the journal.
	before := p.failed.Add(n) - n
	if total := before + n; bitsLen(before) != bitsLen(total) {
		p.opts.Logger.Warn("telemetry records not buffered", "kind", kind, "failed_total", total, "err", err)
	}
}

func bitsLen(x uint64) int {
	n := 0
	for ; x != 0; x >>= 1 {
		n++
	}
	return n
}

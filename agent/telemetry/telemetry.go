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

// AppendFunc durably appends one encoded record (see package record).
type AppendFunc func(ctx context.Context, class Class, data []byte) error

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
	ev := make(map[string]bool, len(opts.Events))
	for _, e := range opts.Events {
		ev[e] = true
	}
	return &Pipeline{opts: opts, in: make(chan drivers.Sample, opts.MaxPending), events: ev, beat: func() {}}, nil
}

// SetHeartbeat installs a function Run calls on every loop iteration
// (health/watchdog liveness). Call before Run.
func (p *Pipeline) SetHeartbeat(f func()) { p.beat = f }

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

// Run consumes samples until ctx is done, then writes what it holds using
// a short grace period and returns nil.
func (p *Pipeline) Run(ctx context.Context) error {
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	pending := map[string]drivers.Sample{}
	prev := map[string]drivers.Sample{}
	for {
		p.beat()
		select {
		case <-ctx.Done():
			p.drainInput(pending, prev)
			grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			p.flush(grace, pending)
			cancel()
			return nil
		case s := <-p.in:
			p.take(ctx, s, pending, prev)
		case <-tick.C:
			p.flush(ctx, pending)
		}
	}
}

func (p *Pipeline) drainInput(pending, prev map[string]drivers.Sample) {
	grace, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		select {
		case s := <-p.in:
			p.take(grace, s, pending, prev)
		default:
			return
		}
	}
}

func (p *Pipeline) take(ctx context.Context, s drivers.Sample, pending, prev map[string]drivers.Sample) {
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
	p.write(ctx, ClassEvent, record.KindEvent, s.Time, ev)
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
func (p *Pipeline) flush(ctx context.Context, pending map[string]drivers.Sample) {
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
	p.write(ctx, ClassTelemetry, record.KindTelemetry, newest, body)
}

func (p *Pipeline) write(ctx context.Context, class Class, kind string, ts time.Time, body any) {
	b, err := json.Marshal(body)
	if err == nil {
		b, err = record.Record{Kind: kind, Time: ts, Body: b}.Marshal()
	}
	if err == nil {
		err = p.opts.Append(ctx, class, b)
	}
	if err != nil {
		// Logged at powers of two so a broken store cannot flood the journal.
		if n := p.failed.Add(1); n&(n-1) == 0 {
			p.opts.Logger.Warn("telemetry record not buffered", "kind", kind, "failed_total", n, "err", err)
		}
		return
	}
	p.written.Add(1)
}

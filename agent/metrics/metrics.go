// Package metrics is a small registry of counters and gauges with labels,
// exposed in the Prometheus text format (version 0.0.4) by an http.Handler.
//
// It exists so that the agent does not link the Prometheus client library
// (size on the vehicle matters): only what the agent exports is supported —
// counters and gauges, set directly or computed at scrape time by a func.
// Registration mistakes (bad names, duplicates, wrong label count) are
// programming errors and panic.
package metrics

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Type is a metric family's Prometheus type.
type Type string

// Supported metric types.
const (
	TypeCounter Type = "counter"
	TypeGauge   Type = "gauge"
	// TypeSummary is only used by go_gc_duration_seconds (RegisterRuntime).
	TypeSummary Type = "summary"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// A Registry holds metric families. It is safe for concurrent use and
// implements http.Handler (see ServeHTTP).
type Registry struct {
	mu       sync.Mutex
	families map[string]family // guarded by mu
}

// family is one registered metric name.
type family interface {
	meta() *desc
	// collect calls emit for each sample; labelValues has len(desc.labels).
	collect(emit func(value float64, labelValues ...string))
}

type desc struct {
	name   string
	help   string
	typ    Type
	labels []string
}

func (d *desc) meta() *desc { return d }

// New returns an empty Registry.
func New() *Registry {
	return &Registry{families: make(map[string]family)}
}

func (r *Registry) register(f family) {
	d := f.meta()
	if !metricNameRE.MatchString(d.name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", d.name))
	}
	for _, l := range d.labels {
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", d.name, l))
		}
	}
	for i, l := range d.labels {
		if slices.Contains(d.labels[:i], l) {
			panic(fmt.Sprintf("metrics: %s: duplicate label name %q", d.name, l))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.families[d.name]; dup {
		panic(fmt.Sprintf("metrics: %s registered twice", d.name))
	}
	r.families[d.name] = f
}

// Counter registers a monotonically increasing counter. By convention its
// name ends in _total. labels are the label names; each child is selected by
// label values in the same order.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	c := &Counter{vec: newVec(desc{name: name, help: help, typ: TypeCounter, labels: labels})}
	r.register(c)
	return c
}

// Gauge registers a value that can go up and down.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	g := &Gauge{vec: newVec(desc{name: name, help: help, typ: TypeGauge, labels: labels})}
	r.register(g)
	return g
}

// GaugeFunc registers an unlabelled gauge whose value fn computes at scrape
// time (e.g. buffer bytes, oldest unsent age). fn must be safe for concurrent
// use and fast.
func (r *Registry) GaugeFunc(name, help string, fn func() float64) {
	r.register(&funcFamily{desc: desc{name: name, help: help, typ: TypeGauge},
		fn: func(emit func(float64, ...string)) { emit(fn()) }})
}

// CounterFunc registers an unlabelled counter read at scrape time from a
// cumulative count kept elsewhere (e.g. a Stats struct).
func (r *Registry) CounterFunc(name, help string, fn func() float64) {
	r.register(&funcFamily{desc: desc{name: name, help: help, typ: TypeCounter},
		fn: func(emit func(float64, ...string)) { emit(fn()) }})
}

// An EmitFunc reports one sample of a func-backed family: its value and its
// label values, in the order of the family's label names.
type EmitFunc func(value float64, labelValues ...string)

// CollectFunc registers a labelled family of type typ whose samples fn
// produces at scrape time by calling emit once per label combination (e.g.
// queue records per class from buffer stats, frames per bus from driver
// counters). fn must be safe for concurrent use and fast. Calling emit with
// the wrong number of label values panics.
func (r *Registry) CollectFunc(name, help string, typ Type, labels []string, fn func(emit EmitFunc)) {
	if typ != TypeCounter && typ != TypeGauge {
		panic(fmt.Sprintf("metrics: %s: unsupported type %q", name, typ))
	}
	r.register(&funcFamily{desc: desc{name: name, help: help, typ: typ, labels: labels},
		fn: func(emit func(float64, ...string)) { fn(emit) }})
}

type funcFamily struct {
	desc
	fn func(emit func(float64, ...string))
}

func (f *funcFamily) collect(emit func(float64, ...string)) { f.fn(emit) }

// value is an atomically updated float64.
type value struct{ bits atomic.Uint64 }

func (v *value) load() float64 { return math.Float64frombits(v.bits.Load()) }

func (v *value) store(f float64) { v.bits.Store(math.Float64bits(f)) }

func (v *value) add(d float64) {
	for {
		old := v.bits.Load()
		if v.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// vec holds the children of a labelled family, keyed by label values.
type vec struct {
	desc
	mu       sync.RWMutex
	children map[string]*child // guarded by mu
}

type child struct {
	labelValues []string
	v           value
}

func newVec(d desc) vec { return vec{desc: d, children: make(map[string]*child)} }

func (v *vec) child(labelValues []string) *child {
	if len(labelValues) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s: got %d label values, want %d (%v)", v.name, len(labelValues), len(v.labels), v.labels))
	}
	key := strings.Join(labelValues, "\xff")
	v.mu.RLock()
	c, ok := v.children[key]
	v.mu.RUnlock()
	if ok {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.children[key]; ok {
		return c
	}
	c = &child{labelValues: slices.Clone(labelValues)}
	v.children[key] = c
	return c
}

func (v *vec) collect(emit func(float64, ...string)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, c := range v.children {
		emit(c.v.load(), c.labelValues...)
	}
}

// A Counter is a labelled counter family.
type Counter struct{ vec }

// CounterValue is one child of a Counter. Hold it on hot paths to skip the
// label lookup.
type CounterValue struct{ c *child }

// With returns the child for labelValues, creating it at 0.
func (c *Counter) With(labelValues ...string) CounterValue {
	return CounterValue{c.child(labelValues)}
}

// Inc adds 1 to the child for labelValues.
func (c *Counter) Inc(labelValues ...string) { c.child(labelValues).v.add(1) }

// Add adds delta (which must not be negative) to the child for labelValues.
func (c *Counter) Add(delta float64, labelValues ...string) {
	c.With(labelValues...).Add(delta)
}

// Inc adds 1.
func (v CounterValue) Inc() { v.c.v.add(1) }

// Add adds delta; a negative delta panics (counters only go up).
func (v CounterValue) Add(delta float64) {
	if delta < 0 {
		panic("metrics: counter decreased")
	}
	v.c.v.add(delta)
}

// Value returns the current count.
func (v CounterValue) Value() float64 { return v.c.v.load() }

// A Gauge is a labelled gauge family.
type Gauge struct{ vec }

// GaugeValue is one child of a Gauge.
type GaugeValue struct{ c *child }

// With returns the child for labelValues, creating it at 0.
func (g *Gauge) With(labelValues ...string) GaugeValue { return GaugeValue{g.child(labelValues)} }

// Set sets the child for labelValues to v.
func (g *Gauge) Set(v float64, labelValues ...string) { g.child(labelValues).v.store(v) }

// Add adds delta (may be negative) to the child for labelValues.
func (g *Gauge) Add(delta float64, labelValues ...string) { g.child(labelValues).v.add(delta) }

// Set sets the gauge.
func (v GaugeValue) Set(f float64) { v.c.v.store(f) }

// Add adds delta (may be negative).
func (v GaugeValue) Add(delta float64) { v.c.v.add(delta) }

// Value returns the current value.
func (v GaugeValue) Value() float64 { return v.c.v.load() }

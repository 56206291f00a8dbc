package canmap

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// Options configure a Decoder.
type Options struct {
	// DB is the DBC database frames are decoded with.
	DB *dbc.Database
	// Signals maps DBC signals to names and policies.
	Signals []Signal
	// Unmapped is UnmappedDrop ("" means the same) or UnmappedEmit.
	Unmapped string
	// Source is copied into every sample's Source (the driver instance).
	Source string
	// Now stamps frames that carry no receive time; nil means time.Now.
	Now func() time.Time
}

// Stats are a Decoder's counters.
type Stats struct {
	// Frames counts frames handed to Decode.
	Frames uint64
	// DecodeErrors counts frames of known messages that failed to decode
	// (e.g. shorter than the DBC length).
	DecodeErrors uint64
	// UnknownIDs counts frames whose identifier is not in the DBC.
	UnknownIDs uint64
	// Samples counts samples emitted.
	Samples uint64
}

// Decoder decodes frames and samples the mapped signals. Decode must be
// called from one goroutine at a time; Stats and LastSeen may be called
// concurrently with it.
type Decoder struct {
	source string
	now    func() time.Time
	plans  map[uint64]*plan
	byName map[string]*target

	frames, decodeErrs, unknown, samples atomic.Uint64
}

// plan is what the decoder does with one message.
type plan struct {
	msg *dbc.Message
	// targets[i] are the targets of msg.Signals[i]; nil when unmapped.
	targets [][]*target
	// any reports whether some signal of the message has a target.
	any     bool
	scratch []dbc.Value
	// seenAt is when a frame of the message last decoded (unix ns, 0 =
	// never); read concurrently by LastSeen.
	seenAt atomic.Int64
}

// target is one named output with its policy state.
type target struct {
	name string
	// base is the configured policy; pol the one in effect (base, or
	// base with SetOverrides applied), read by Decode.
	base policy
	pol  atomic.Pointer[policy]

	// plan is the target's message; mux marks a multiplexed signal, which
	// is not in every frame of its message and so keeps its own seenAt.
	plan *plan
	mux  bool

	// Touched only by Decode.
	reported bool
	last     float64
	lastAt   int64 // unix ns

	seenAt atomic.Int64 // for mux targets: unix ns, 0 = never
}

// New validates opts against the DBC and builds a Decoder. It fails with
// an error wrapping ErrConfig naming the first unknown or invalid entry.
func New(opts Options) (*Decoder, error) {
	if opts.DB == nil {
		return nil, fmt.Errorf("%w: no dbc database", ErrConfig)
	}
	switch opts.Unmapped {
	case "", UnmappedDrop, UnmappedEmit:
	default:
		return nil, fmt.Errorf("%w: unmapped %q: want %q or %q", ErrConfig, opts.Unmapped, UnmappedDrop, UnmappedEmit)
	}
	d := &Decoder{
		source: opts.Source,
		now:    opts.Now,
		plans:  make(map[uint64]*plan, len(opts.DB.Messages)),
		byName: make(map[string]*target, len(opts.Signals)),
	}
	if d.now == nil {
		d.now = time.Now
	}
	for _, m := range opts.DB.Messages {
		d.plans[key(m.ID, m.Extended)] = &plan{
			msg:     m,
			targets: make([][]*target, len(m.Signals)),
			scratch: make([]dbc.Value, 0, len(m.Signals)),
		}
	}
	for i := range opts.Signals {
		if err := d.mapSignal(opts.DB, &opts.Signals[i]); err != nil {
			return nil, err
		}
	}
	if opts.Unmapped == UnmappedEmit {
		d.mapUnmapped(opts.DB)
	}
	return d, nil
}

func (d *Decoder) mapSignal(db *dbc.Database, s *Signal) error {
	if err := s.validate(); err != nil {
		return err
	}
	if _, dup := d.byName[s.Name]; dup {
		return fmt.Errorf("%w: signal name %q is mapped twice", ErrConfig, s.Name)
	}
	m, sig, err := db.Signal(s.Source)
	if err != nil {
		return fmt.Errorf("%w: signal %q: %w", ErrConfig, s.Name, err)
	}
	p := d.plans[key(m.ID, m.Extended)]
	t := &target{
		plan: p,
		mux:  sig.MuxValue >= 0 || len(sig.MuxRanges) > 0,
		name: s.Name,
		base: policy{deadband: s.Deadband, deadbandPct: s.DeadbandPct, minInterval: s.MinInterval.Std(), heartbeat: s.Heartbeat.Std()},
	}
	t.pol.Store(&t.base)
	d.byName[s.Name] = t
	p.attach(sig, t)
	return nil
}

// mapUnmapped gives every signal without a target one named
// "MESSAGE.Signal" with the default policy.
func (d *Decoder) mapUnmapped(db *dbc.Database) {
	for _, m := range db.Messages {
		p := d.plans[key(m.ID, m.Extended)]
		for i, sig := range m.Signals {
			if len(p.targets[i]) > 0 {
				continue
			}
			name := m.Name + "." + sig.Name
			if _, dup := d.byName[name]; dup {
				continue
			}
			t := &target{name: name, plan: p, mux: sig.MuxValue >= 0 || len(sig.MuxRanges) > 0}
			t.pol.Store(&t.base)
			d.byName[name] = t
			p.attach(sig, t)
		}
	}
}

func (p *plan) attach(sig *dbc.Signal, t *target) {
	for i, s := range p.msg.Signals {
		if s == sig {
			p.targets[i] = append(p.targets[i], t)
			p.any = true
			return
		}
	}
}

func key(id uint32, extended bool) uint64 {
	k := uint64(id)
	if extended {
		k |= 1 << 32
	}
	return k
}

// Decode decodes f and emits the samples its mapped signals call for. A
// frame without a receive time is stamped with Options.Now.
func (d *Decoder) Decode(f *canbus.Frame, sink drivers.Sink) {
	d.frames.Add(1)
	p := d.plans[key(f.ID, f.Extended)]
	if p == nil {
		d.unknown.Add(1)
		return
	}
	if !p.any {
		return
	}
	vals, err := p.msg.DecodeInto(f.Payload(), p.scratch[:0])
	if err != nil {
		d.decodeErrs.Add(1)
		return
	}
	at := f.Time
	if at.IsZero() {
		at = d.now()
	}
	ns := at.UnixNano()
	p.seenAt.Store(ns)
	j := 0 // values usually arrive in signal order: search from the last hit
	for i := range vals {
		v := &vals[i]
		j = p.index(v.Signal, j)
		if j < 0 {
			j = 0
			continue
		}
		for _, t := range p.targets[j] {
			if t.observe(v.Phys, ns) {
				d.samples.Add(1)
				sink.Emit(drivers.Sample{Name: t.name, Value: v.Phys, Label: v.Label, Time: at, Source: d.source})
			}
		}
	}
}

// index returns the position of sig in the message's signals, searching
// from hint, or -1.
func (p *plan) index(sig *dbc.Signal, hint int) int {
	n := len(p.msg.Signals)
	for k := range n {
		i := hint + k
		if i >= n {
			i -= n
		}
		if p.msg.Signals[i] == sig {
			return i
		}
	}
	return -1
}

// observe records a value seen at unix time ns and reports whether it is
// to be emitted.
func (t *target) observe(v float64, ns int64) bool {
	if t.mux {
		t.seenAt.Store(ns)
	}
	if t.reported {
		pol := t.pol.Load()
		since := time.Duration(ns - t.lastAt)
		if since < 0 { // the clock (or a replay) went backwards: start afresh
			since = math.MaxInt64
		}
		if since < pol.minInterval {
			return false
		}
		beat := pol.heartbeat > 0 && since >= pol.heartbeat
		if !beat && !t.changed(v, pol) {
			return false
		}
	}
	t.reported, t.last, t.lastAt = true, v, ns
	return true
}

// changed reports whether v differs from the last reported value by more
// than the deadbands.
func (t *target) changed(v float64, pol *policy) bool {
	if math.IsNaN(v) || math.IsNaN(t.last) {
		return math.IsNaN(v) != math.IsNaN(t.last)
	}
	delta := math.Abs(v - t.last)
	if delta <= pol.deadband {
		return false
	}
	if pol.deadbandPct > 0 && delta <= pol.deadbandPct/100*math.Abs(t.last) {
		return false
	}
	return true
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() Stats {
	return Stats{
		Frames:       d.frames.Load(),
		DecodeErrors: d.decodeErrs.Load(),
		UnknownIDs:   d.unknown.Load(),
		Samples:      d.samples.Load(),
	}
}

// LastSeen returns when the named signal was last decoded (the receive
// time of its last frame), whether or not the policy reported the value:
// the basis for staleness checks. ok is false for a name that is not
// mapped or has not been seen yet.
func (d *Decoder) LastSeen(name string) (at time.Time, ok bool) {
	t := d.byName[name]
	if t == nil {
		return time.Time{}, false
	}
	ns := t.plan.seenAt.Load()
	if t.mux {
		ns = t.seenAt.Load()
	}
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// Names returns the names the decoder can emit, in no particular order.
func (d *Decoder) Names() []string {
	names := make([]string, 0, len(d.byName))
	for n := range d.byName {
		names = append(names, n)
	}
	return names
}

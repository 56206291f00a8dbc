package dbc

import (
	"encoding/binary"
	"fmt"
	"math"
)

// sigPlan is a signal's precomputed bit layout. Bits are read with one
// 8-byte load at lo plus, for a value spanning 9 bytes, one more byte.
type sigPlan struct {
	sig    *Signal
	lo     int  // first payload byte
	off    uint // little-endian: right shift; big-endian: bits before the MSB in byte lo
	rsh    uint // 64 - Size
	nine   bool // spans 9 bytes
	mask   uint64
	big    bool
	signed bool
	typ    ValueType
	slot   int // multiplexer state slot, -1 if not a multiplexer
	parent int // slot of the selecting multiplexer, -1 if always present
	ranges []MuxRange
}

// frame is a payload padded so every signal can be read with 8-byte loads.
type frame [72]byte

// plan is a message's decode plan.
type plan struct {
	sigs  []sigPlan // in Message.Signals order
	muxes []int     // indices into sigs of multiplexers, parents first
	need  int
}

// maxStackMux is the number of multiplexers decoded without allocating.
const maxStackMux = 8

func newSigPlan(s *Signal) sigPlan {
	sp := sigPlan{sig: s, big: s.BigEndian, signed: s.Signed, typ: s.Type, slot: -1, parent: -1,
		rsh: uint(64 - s.Size), mask: math.MaxUint64 >> (64 - uint(s.Size))}
	first := s.Start
	if s.BigEndian {
		first = msbPos(s)
	}
	sp.lo, sp.off = first/8, uint(first%8)
	sp.nine = int(sp.off)+s.Size > 64
	return sp
}

// compile builds the decode plan of a message whose signals have been
// validated; it fails on multiplexer cycles.
func compile(m *Message) (*plan, error) {
	pl := &plan{sigs: make([]sigPlan, len(m.Signals)), need: m.Length}
	index := make(map[string]int, len(m.Signals))
	for i, s := range m.Signals {
		if s.Size < 1 || s.Size > 64 || s.Start < 0 || lastByte(s) >= m.Length {
			return nil, fmt.Errorf("signal %s: bits %d|%d do not fit %d bytes", s.Name, s.Start, s.Size, m.Length)
		}
		if s.Type == Float32 && s.Size != 32 || s.Type == Float64 && s.Size != 64 {
			return nil, fmt.Errorf("signal %s: float signal with size %d", s.Name, s.Size)
		}
		pl.sigs[i] = newSigPlan(s)
		index[s.Name] = i
		if s.IsMultiplexer {
			pl.sigs[i].slot = len(pl.muxes)
			pl.muxes = append(pl.muxes, i)
		}
	}
	for i, s := range m.Signals {
		if s.MuxParent == "" {
			continue
		}
		pi, ok := index[s.MuxParent]
		if !ok || pl.sigs[pi].slot < 0 {
			return nil, fmt.Errorf("signal %s: multiplexer %q unusable", s.Name, s.MuxParent)
		}
		pl.sigs[i].parent = pl.sigs[pi].slot
		pl.sigs[i].ranges = s.MuxRanges
	}
	// Order multiplexers so every parent is evaluated before its children.
	order := make([]int, 0, len(pl.muxes))
	done := make([]bool, len(pl.muxes))
	for len(order) < len(pl.muxes) {
		progress := false
		for _, i := range pl.muxes {
			sp := &pl.sigs[i]
			if done[sp.slot] || sp.parent >= 0 && !done[sp.parent] {
				continue
			}
			done[sp.slot], progress = true, true
			order = append(order, i)
		}
		if !progress {
			return nil, fmt.Errorf("multiplexer cycle")
		}
	}
	pl.muxes = order
	return pl, nil
}

// bits extracts the signal's raw bits.
func (sp *sigPlan) bits(f *frame) uint64 {
	if !sp.big {
		v := binary.LittleEndian.Uint64(f[sp.lo:]) >> sp.off
		if sp.nine {
			v |= uint64(f[sp.lo+8]) << (64 - sp.off)
		}
		return v & sp.mask
	}
	v := binary.BigEndian.Uint64(f[sp.lo:]) << sp.off
	if sp.nine {
		v |= uint64(f[sp.lo+8]) >> (8 - sp.off)
	}
	return v >> sp.rsh
}

// raw returns the raw value: sign-extended for signed integers, the bit
// pattern for floats.
func (sp *sigPlan) raw(f *frame) int64 {
	u := sp.bits(f)
	if sp.signed && sp.typ == Integer && sp.mask != math.MaxUint64 && u&^(sp.mask>>1) != 0 {
		u |= ^sp.mask
	}
	return int64(u)
}

func (sp *sigPlan) phys(raw int64) float64 {
	s := sp.sig
	switch sp.typ {
	case Float32:
		return float64(math.Float32frombits(uint32(raw)))*s.Scale + s.Offset
	case Float64:
		return math.Float64frombits(uint64(raw))*s.Scale + s.Offset
	}
	if !sp.signed {
		return float64(uint64(raw))*s.Scale + s.Offset
	}
	return float64(raw)*s.Scale + s.Offset
}

func inRanges(v int64, rs []MuxRange) bool {
	for _, r := range rs {
		if v >= r.Lo && v <= r.Hi {
			return true
		}
	}
	return false
}

// muxState evaluates the multiplexers of a payload: active[slot] tells
// whether a multiplexer is present, raws[slot] its raw value.
func (pl *plan) muxState(f *frame, active []bool, raws []int64) {
	for _, i := range pl.muxes {
		sp := &pl.sigs[i]
		act := sp.parent < 0 || active[sp.parent] && inRanges(raws[sp.parent], sp.ranges)
		active[sp.slot] = act
		if act {
			raws[sp.slot] = sp.raw(f)
		}
	}
}

func (m *Message) getPlan() (*plan, error) {
	if m.plan != nil {
		return m.plan, nil
	}
	return compile(m) // a Message built by hand rather than by Parse
}

// Decode decodes a payload into the values of the signals present in it
// (multiplexed signals only when selected). A payload shorter than the
// message's Length is an error wrapping ErrShortPayload; extra bytes are
// ignored.
func (m *Message) Decode(data []byte) ([]Value, error) {
	return m.DecodeInto(data, make([]Value, 0, len(m.Signals)))
}

// DecodeInto is Decode appending to dst[:0]; it does not allocate when dst
// has room for all signals and the message has at most 8 multiplexers.
func (m *Message) DecodeInto(data []byte, dst []Value) ([]Value, error) {
	dst = dst[:0]
	pl, err := m.getPlan()
	if err != nil {
		return dst, fmt.Errorf("decode %s: %w", m.Name, err)
	}
	if len(data) < pl.need {
		return dst, fmt.Errorf("decode %s: %d bytes, want %d: %w", m.Name, len(data), pl.need, ErrShortPayload)
	}
	var activeBuf [maxStackMux]bool
	var rawBuf [maxStackMux]int64
	active, raws := activeBuf[:], rawBuf[:]
	if len(pl.muxes) > maxStackMux {
		active, raws = make([]bool, len(pl.muxes)), make([]int64, len(pl.muxes))
	}
	var f frame
	copy(f[:], data)
	pl.muxState(&f, active, raws)
	for i := range pl.sigs {
		sp := &pl.sigs[i]
		if sp.parent >= 0 && !(active[sp.parent] && inRanges(raws[sp.parent], sp.ranges)) {
			continue
		}
		raw := sp.raw(&f)
		v := Value{Signal: sp.sig, Raw: raw, Phys: sp.phys(raw)}
		if sp.sig.Values != nil {
			v.Label = sp.sig.Values[raw]
		}
		dst = append(dst, v)
	}
	return dst, nil
}

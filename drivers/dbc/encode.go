package dbc

import (
	"fmt"
	"math"
	"sort"
)

// Encode builds a payload of the message's Length from physical values.
// Signals not given are encoded as raw 0; a multiplexer not given selects
// value 0. It fails, naming the signal, on an unknown signal
// (ErrUnknownSignal), a value outside [Min,Max] when Min < Max
// (ErrOutOfRange), a value with no raw encoding (ErrNotRepresentable) and
// a multiplexed signal its multiplexer does not select (ErrInactive).
func (m *Message) Encode(values map[string]float64) ([]byte, error) {
	pl, err := m.getPlan()
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Name, err)
	}
	if err := m.checkNames(values); err != nil {
		return nil, err
	}
	raws := make([]uint64, len(pl.sigs))
	given := make([]bool, len(pl.sigs))
	for i := range pl.sigs {
		s := pl.sigs[i].sig
		v, ok := values[s.Name]
		if !ok {
			continue
		}
		r, err := toRaw(s, v)
		if err != nil {
			return nil, fmt.Errorf("encode %s.%s = %g: %w", m.Name, s.Name, v, err)
		}
		raws[i], given[i] = r, true
	}
	buf := make([]byte, m.Length)
	for i := range pl.sigs {
		if given[i] {
			insert(buf, pl.sigs[i].sig, raws[i])
		}
	}
	// The multiplexers are now in buf; check every given signal is selected.
	active, muxRaw := make([]bool, len(pl.muxes)), make([]int64, len(pl.muxes))
	var f frame
	copy(f[:], buf)
	pl.muxState(&f, active, muxRaw)
	for i := range pl.sigs {
		sp := &pl.sigs[i]
		if given[i] && sp.parent >= 0 && !(active[sp.parent] && inRanges(muxRaw[sp.parent], sp.ranges)) {
			return nil, fmt.Errorf("encode %s.%s: multiplexer %s does not select it: %w",
				m.Name, sp.sig.Name, sp.sig.MuxParent, ErrInactive)
		}
	}
	return buf, nil
}

func (m *Message) checkNames(values map[string]float64) error {
	var unknown []string
	for name := range values {
		if _, ok := m.Signal(name); !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("encode %s.%s: %w", m.Name, unknown[0], ErrUnknownSignal)
}

// toRaw converts a physical value to the signal's raw bits.
func toRaw(s *Signal, v float64) (uint64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, ErrNotRepresentable
	}
	if s.Min < s.Max {
		tol := 1e-9 * math.Max(1, math.Max(math.Abs(s.Min), math.Abs(s.Max)))
		if v < s.Min-tol || v > s.Max+tol {
			return 0, fmt.Errorf("outside [%g, %g]: %w", s.Min, s.Max, ErrOutOfRange)
		}
	}
	if s.Scale == 0 {
		return 0, fmt.Errorf("zero scale: %w", ErrNotRepresentable)
	}
	x := (v - s.Offset) / s.Scale
	switch s.Type {
	case Float32:
		if math.Abs(x) > math.MaxFloat32 {
			return 0, fmt.Errorf("exceeds float32: %w", ErrNotRepresentable)
		}
		return uint64(math.Float32bits(float32(x))), nil
	case Float64:
		return math.Float64bits(x), nil
	}
	r := math.Round(x)
	lo, hi := 0.0, math.Ldexp(1, s.Size) // hi exclusive
	if s.Signed {
		lo, hi = -math.Ldexp(1, s.Size-1), math.Ldexp(1, s.Size-1)
	}
	if r < lo || r >= hi {
		return 0, fmt.Errorf("raw %g does not fit %d bits: %w", r, s.Size, ErrNotRepresentable)
	}
	mask := uint64(math.MaxUint64) >> (64 - uint(s.Size))
	if r >= math.Ldexp(1, 63) {
		return uint64(r) & mask, nil
	}
	return uint64(int64(r)) & mask, nil
}

// insert writes raw bits of a signal into buf, bit by bit.
func insert(buf []byte, s *Signal, raw uint64) {
	for i := 0; i < s.Size; i++ {
		var pos, bit int
		var b uint64
		if s.BigEndian {
			q := msbPos(s) + i
			pos, bit = q/8, 7-q%8
			b = raw >> uint(s.Size-1-i) & 1
		} else {
			q := s.Start + i
			pos, bit = q/8, q%8
			b = raw >> uint(i) & 1
		}
		buf[pos] = buf[pos]&^(1<<bit) | byte(b)<<bit
	}
}

package dbc

import (
	"fmt"
	"math"
	"time"
)

// finish validates every message, resolves multiplexing, builds the decode
// plans and indexes the database. Signals and messages that cannot be
// decoded are dropped with a warning.
func (p *parser) finish() {
	kept := p.db.Messages[:0]
	for _, m := range p.db.Messages {
		if ms, ok := p.cycle[m]; ok {
			m.CycleTime = millis(ms)
		} else if p.cycleDefault > 0 {
			m.CycleTime = millis(p.cycleDefault)
		}
		fd, ok := p.fd[m]
		if !ok {
			fd = p.fdDefault
		}
		m.FD = fd || m.Length > 8
		p.checkSignals(m)
		pl, err := compile(m)
		if err != nil {
			p.file = m.file
			p.warn(m.line, "skipped BO_ %s: %v", m.Name, err)
			p.recordSkip(m.Name)
			continue
		}
		m.plan = pl
		kept = append(kept, m)
	}
	p.db.Messages = kept
	p.db.index()
}

func millis(ms float64) time.Duration {
	if ms <= 0 || ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// checkSignals drops signals that cannot be decoded, repeating until the
// multiplexer structure is consistent.
func (p *parser) checkSignals(m *Message) {
	p.file = m.file
	if tops := topMuxes(m); len(tops) > 1 {
		for _, s := range m.Signals {
			if s.MuxValue >= 0 && s.MuxParent == "" {
				p.warn(m.line, "message %s has %d multiplexers and no SG_MUL_VAL_: m<N> signals follow %s",
					m.Name, len(tops), tops[0].Name)
				break
			}
		}
	}
	for changed := true; changed; {
		changed = false
		tops := topMuxes(m)
		kept := m.Signals[:0]
		for _, s := range m.Signals {
			if err := resolveSignal(m, s, tops); err != nil {
				p.warn(s.line, "skipped signal %s.%s: %v", m.Name, s.Name, err)
				p.recordSkip(m.Name + "." + s.Name)
				delete(m.bySig, s.Name)
				changed = true
				continue
			}
			kept = append(kept, s)
		}
		m.Signals = kept
	}
}

func resolveSignal(m *Message, s *Signal, tops []*Signal) error {
	if math.IsNaN(s.Scale) || math.IsInf(s.Scale, 0) || math.IsNaN(s.Offset) || math.IsInf(s.Offset, 0) {
		return fmt.Errorf("scale %g or offset %g not finite", s.Scale, s.Offset)
	}
	if s.Type == Float32 && s.Size != 32 || s.Type == Float64 && s.Size != 64 {
		return fmt.Errorf("float signal with size %d", s.Size)
	}
	if need := lastByte(s) + 1; need > m.Length {
		return fmt.Errorf("bits %d|%d need %d bytes, message has %d", s.Start, s.Size, need, m.Length)
	}
	if s.MuxValue < 0 && s.MuxParent == "" {
		return nil
	}
	if s.MuxParent == "" {
		if len(tops) == 0 {
			return fmt.Errorf("multiplexed (m%d) but the message has no multiplexer", s.MuxValue)
		}
		s.MuxParent = tops[0].Name
	}
	if len(s.MuxRanges) == 0 {
		s.MuxRanges = []MuxRange{{s.MuxValue, s.MuxValue}}
	} else if s.MuxValue < 0 {
		s.MuxValue = s.MuxRanges[0].Lo
	}
	parent, ok := m.bySig[s.MuxParent]
	switch {
	case !ok:
		return fmt.Errorf("multiplexer %q not found", s.MuxParent)
	case parent == s:
		return fmt.Errorf("multiplexed by itself")
	case parent.Type != Integer:
		return fmt.Errorf("multiplexer %q is a float signal", s.MuxParent)
	}
	parent.IsMultiplexer = true
	return nil
}

// lastByte returns the index of the last payload byte a signal touches.
func lastByte(s *Signal) int {
	if !s.BigEndian {
		return (s.Start + s.Size - 1) / 8
	}
	return (msbPos(s) + s.Size - 1) / 8
}

// msbPos converts a big-endian signal's DBC start bit (sawtooth numbering)
// to a linear position counted from the most significant bit of byte 0.
func msbPos(s *Signal) int { return s.Start/8*8 + 7 - s.Start%8 }

// topMuxes returns the multiplexer switches that are not themselves
// multiplexed.
func topMuxes(m *Message) []*Signal {
	var tops []*Signal
	for _, s := range m.Signals {
		if s.IsMultiplexer && s.MuxValue < 0 && s.MuxParent == "" {
			tops = append(tops, s)
		}
	}
	return tops
}

package agenttest

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"
)

// Arrival is one record seen on the telemetry or events topic.
type Arrival struct {
	Seq   uint64
	Kind  string
	Topic string
	// TS is the record's own timestamp (when the agent observed it).
	TS time.Time
	// At is when the broker delivered it to the test.
	At time.Time
}

// Stream collects the stream records the agent publishes and answers
// questions about their seqs. It is safe for concurrent use.
type Stream struct {
	thing string

	mu       sync.Mutex
	arrivals []Arrival      // guarded by mu; in arrival order
	count    map[uint64]int // guarded by mu; arrivals per seq
}

func newStream(thing string) *Stream {
	return &Stream{thing: thing, count: map[uint64]int{}}
}

// collect records the records of one envelope message.
func (s *Stream) collect(t testing.TB, topic string, payload []byte) {
	var env struct {
		V       int    `json:"v"`
		Device  string `json:"device"`
		Records []struct {
			Seq  uint64 `json:"seq"`
			TS   int64  `json:"ts"`
			Kind string `json:"kind"`
		} `json:"records"`
	}
	if err := json.Unmarshal(payload, &env); err != nil || env.V != 1 || env.Device != s.thing || len(env.Records) == 0 {
		t.Errorf("bad envelope on %s (%v): %s", topic, err, payload)
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range env.Records {
		if r.Seq == 0 || r.TS == 0 || r.Kind == "" {
			t.Errorf("record without seq/ts/kind on %s: %s", topic, payload)
			continue
		}
		s.arrivals = append(s.arrivals, Arrival{Seq: r.Seq, Kind: r.Kind, Topic: topic, TS: time.UnixMilli(r.TS), At: now})
		s.count[r.Seq]++
	}
}

// Arrivals returns a copy of every arrival so far, in arrival order.
func (s *Stream) Arrivals() []Arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals)
}

// Len is the number of arrivals so far (duplicates included).
func (s *Stream) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// Max is the highest seq seen (0 if none).
func (s *Stream) Max() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m uint64
	for q := range s.count {
		m = max(m, q)
	}
	return m
}

// Distinct is the number of different seqs seen.
func (s *Stream) Distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.count)
}

// Duplicates is the number of arrivals beyond the first of each seq.
func (s *Stream) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals) - len(s.count)
}

// Gap is a run of seqs never seen, From..To inclusive.
type Gap struct{ From, To uint64 }

// Span returns the lowest and highest seq seen (0, 0 if none). Seqs start
// wherever the buffer's first Open put them (the clock floor, about 1.7e15
// for a new store), so only their differences mean anything.
func (s *Stream) Span() (lo, hi uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := range s.count {
		if lo == 0 || q < lo {
			lo = q
		}
		hi = max(hi, q)
	}
	return lo, hi
}

// Gaps returns the runs of seqs never seen between the lowest and the
// highest seq seen, ascending.
func (s *Stream) Gaps() []Gap {
	s.mu.Lock()
	seqs := make([]uint64, 0, len(s.count))
	for q := range s.count {
		seqs = append(seqs, q)
	}
	s.mu.Unlock()
	slices.Sort(seqs)
	var out []Gap
	for i := 1; i < len(seqs); i++ {
		if seqs[i] > seqs[i-1]+1 {
			out = append(out, Gap{From: seqs[i-1] + 1, To: seqs[i] - 1})
		}
	}
	return out
}

// Count returns how often seq arrived.
func (s *Stream) Count(seq uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[seq]
}

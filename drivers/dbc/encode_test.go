package dbc

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEncodeVectors checks Encode against the hand-computed decode vectors.
func TestEncodeVectors(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	tests := []struct {
		name   string
		msg    string
		values map[string]float64
		want   []byte
	}{
		{"little-endian", "LE", map[string]float64{"A": 0x12, "B": 784, "C": 5, "D": 0xC9A7},
			[]byte{0x12, 0x34, 0x56, 0x70, 0x9A, 0x0C, 0, 0}},
		{"little-endian signed", "LE", map[string]float64{"C": -1}, []byte{0, 0, 0xF0, 0, 0, 0, 0, 0}},
		{"big-endian", "BE", map[string]float64{"E": 0x1234, "F": 25, "G": 247.5},
			[]byte{0x12, 0x34, 0x06, 0x40, 0x9A, 0xB0, 0, 0}},
		{"big-endian signed", "BE", map[string]float64{"F": -1}, []byte{0, 0, 0x0F, 0xC0, 0, 0, 0, 0}},
		{"FD 9-byte spans", "FD64", map[string]float64{"H": 0xBCA, "I": -2, "J": float64(uint64(0x6000000000000000))},
			payload(64, map[int]byte{62: 0xA0, 63: 0xBC, 32: 0xFF, 33: 0xFE, 48: 0x03})},
		{"multiplexer selects S1", "MUX", map[string]float64{"Sel": 1, "S1": 0x3322, "Common": 0x77},
			[]byte{1, 0x22, 0x33, 0, 0, 0, 0, 0x77}},
		{"extended mux", "XMUX", map[string]float64{"Top": 1, "Sub": 5, "Leaf": 0x44},
			[]byte{0x51, 0x44, 0, 0, 0, 0, 0, 0}},
		{"float32", "VALS", map[string]float64{"Gear": 3, "F32": 1.5}, []byte{3, 0, 0, 0, 0, 0, 0xC0, 0x3F}},
		{"float64 scaled", "F64MSG", map[string]float64{"D64": -3.5}, []byte{0, 0, 0, 0, 0, 0, 0x02, 0xC0}},
		{"rounds to nearest step", "BE", map[string]float64{"G": 247.46}, []byte{0, 0, 0, 0, 0x9A, 0xB0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := mustMessage(t, db, tt.msg).Encode(tt.values)
			if err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Encode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	tests := []struct {
		name   string
		msg    string
		values map[string]float64
		want   error
		signal string
	}{
		{"unknown signal", "LE", map[string]float64{"A": 1, "Zzz": 1}, ErrUnknownSignal, "LE.Zzz"},
		{"above max", "LE", map[string]float64{"B": 2038}, ErrOutOfRange, "LE.B"},
		{"below min", "LE", map[string]float64{"C": -9}, ErrOutOfRange, "LE.C"},
		{"NaN", "LE", map[string]float64{"A": math.NaN()}, ErrNotRepresentable, "LE.A"},
		{"raw overflow without range", "FD64", map[string]float64{"I": 40000}, ErrNotRepresentable, "FD64.I"},
		{"negative for unsigned", "FD64", map[string]float64{"J": -1}, ErrNotRepresentable, "FD64.J"},
		{"float32 overflow", "VALS", map[string]float64{"F32": 1e39}, ErrNotRepresentable, "VALS.F32"},
		{"not selected by multiplexer", "MUX", map[string]float64{"Sel": 0, "S1": 1}, ErrInactive, "MUX.S1"},
		{"multiplexer defaults to 0", "MUX", map[string]float64{"S1": 1}, ErrInactive, "MUX.S1"},
		{"extended parent absent", "XMUX", map[string]float64{"Top": 0, "Sub": 2, "Leaf": 1}, ErrInactive, "XMUX.Sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := mustMessage(t, db, tt.msg).Encode(tt.values)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.signal) {
				t.Errorf("Encode() error = %v, want %v naming %s", err, tt.want, tt.signal)
			}
		})
	}
}

// TestRoundTrip encodes random in-range raw values for every signal of every
// message and checks Decode returns them.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dbs := []*Database{}
	db, _ := mustParse(t, fixtureDBC)
	dbs = append(dbs, db)
	for _, f := range realFiles(t) {
		db, _, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, db)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, db := range dbs {
		for _, m := range db.Messages {
			for round := 0; round < 5; round++ {
				roundTrip(t, m, rng)
			}
		}
	}
}

// roundTrip picks one non-overlapping set of signals (the ones selected
// when every multiplexer is 0 or a random valid value), encodes random raw
// values and decodes them back.
func roundTrip(t *testing.T, m *Message, rng *rand.Rand) {
	t.Helper()
	data := make([]byte, m.Length)
	// Decode an all-zero payload to learn which signals are selected.
	vs, err := m.Decode(data)
	if err != nil {
		t.Fatalf("%s: Decode(zeros) error = %v", m.Name, err)
	}
	values := map[string]float64{}
	want := map[string]int64{}
	used := make([]bool, m.Length*8)
	for _, v := range vs {
		s := v.Signal
		if s.IsMultiplexer || s.Type != Integer || s.Scale == 0 || overlaps(s, used) {
			continue // keep the selection fixed; overlapping signals would clobber each other
		}
		raw := randomRaw(s, rng)
		phys := float64(raw)*s.Scale + s.Offset
		if !s.Signed {
			phys = float64(uint64(raw))*s.Scale + s.Offset
		}
		if s.Min < s.Max && (phys < s.Min || phys > s.Max) || s.Size > 52 {
			continue // outside the declared range, or not exact in float64
		}
		values[s.Name], want[s.Name] = phys, raw
	}
	buf, err := m.Encode(values)
	if err != nil {
		t.Fatalf("%s: Encode(%v) error = %v", m.Name, values, err)
	}
	vs, err = m.Decode(buf)
	if err != nil {
		t.Fatalf("%s: Decode() error = %v", m.Name, err)
	}
	for _, v := range vs {
		if w, ok := want[v.Signal.Name]; ok && v.Raw != w {
			t.Errorf("%s.%s: raw %d after round trip, want %d", m.Name, v.Signal.Name, v.Raw, w)
		}
	}
}

func overlaps(s *Signal, used []bool) bool {
	bits := make([]int, 0, s.Size)
	for i := 0; i < s.Size; i++ {
		q := s.Start + i
		if s.BigEndian {
			lin := msbPos(s) + i
			q = lin/8*8 + 7 - lin%8
		}
		if used[q] {
			return true
		}
		bits = append(bits, q)
	}
	for _, q := range bits {
		used[q] = true
	}
	return false
}

func randomRaw(s *Signal, rng *rand.Rand) int64 {
	u := rng.Uint64() >> (64 - uint(s.Size))
	if s.Signed && s.Size < 64 && u>>(s.Size-1) == 1 {
		u |= ^uint64(0) << uint(s.Size)
	}
	return int64(u)
}

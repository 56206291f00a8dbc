package dbc

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// got is the comparable form of a decoded value.
type got struct {
	Name  string
	Raw   int64
	Phys  float64
	Label string
}

func flatten(vs []Value) []got {
	out := make([]got, len(vs))
	for i, v := range vs {
		out[i] = got{v.Signal.Name, v.Raw, v.Phys, v.Label}
	}
	return out
}

// TestDecodeVectors checks hand-computed vectors for each encoding feature.
func TestDecodeVectors(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	seq := []byte{0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0}
	tests := []struct {
		name string
		msg  string
		data []byte
		want []got
	}{
		{
			// A=byte0; B=bits 8..19 = 0x634=1588 -> 1588*0.5-10=784;
			// C=bits 20..23=0x5; D=bits 28..43 = 0x7 | 0x9A<<4 | 0xC<<12 = 0xC9A7.
			name: "little-endian", msg: "LE", data: seq,
			want: []got{{"A", 0x12, 18, ""}, {"B", 1588, 784, ""}, {"C", 5, 5, ""}, {"D", 0xC9A7, 0xC9A7, ""}},
		},
		{
			// C = high nibble of 0xF6 = 0xF = -1 (4-bit two's complement);
			// B = 0x6 <<8 | 0x00 = 0x600 = 1536 -> 758.
			name: "little-endian signed negative", msg: "LE", data: []byte{0, 0, 0xF6, 0, 0, 0, 0, 0},
			want: []got{{"A", 0, 0, ""}, {"B", 0x600, 758, ""}, {"C", -1, -1, ""}, {"D", 0, 0, ""}},
		},
		{
			// E = bytes 0,1 big-endian = 0x1234; F: MSB at byte2 bit3:
			// 0x56 low nibble 0110 + 0x78 top bits 01 = 011001 = 25;
			// G: MSB at byte4 bit7: 0x9A,0xB = 0x9AB = 2475 -> 247.5.
			name: "big-endian", msg: "BE", data: seq,
			want: []got{{"E", 0x1234, 0x1234, ""}, {"F", 25, 25, ""}, {"G", 2475, 247.5, ""}},
		},
		{
			// F = 1111 (byte2 low nibble) + 11 (byte3 top bits) = -1.
			name: "big-endian signed negative", msg: "BE", data: []byte{0, 0, 0x0F, 0xC0, 0, 0, 0, 0},
			want: []got{{"E", 0, 0, ""}, {"F", -1, -1, ""}, {"G", 0, 0, ""}},
		},
		{
			// H = byte62 high nibble 0xA | byte63 0xBC<<4 = 0xBCA;
			// I = 0xFFFE = -2; J (9 bytes LE): 0x1F | 0x3<<61;
			// K (9 bytes BE): MSB byte50 bit4, LSB byte58 bit5.
			name: "CAN FD 64 bytes", msg: "FD64",
			data: payload(64, map[int]byte{62: 0xA0, 63: 0xBC, 32: 0xFF, 33: 0xFE, 40: 0xF8, 48: 0x03, 50: 0x10, 58: 0x20}),
			want: []got{
				{"H", 0xBCA, 0xBCA, ""}, {"I", -2, -2, ""},
				{"J", 0x600000000000001F, float64(uint64(0x600000000000001F)), ""},
				{"K", -0x7FFFFFFFFFFFFFFF, float64(uint64(0x8000000000000001)), ""},
			},
		},
		{
			name: "multiplexed m0", msg: "MUX", data: []byte{0, 0x22, 0x33, 0, 0, 0, 0, 0x77},
			want: []got{{"Sel", 0, 0, ""}, {"S0", 0x22, 0x22, ""}, {"Common", 0x77, 0x77, ""}},
		},
		{
			name: "multiplexed m1", msg: "MUX", data: []byte{1, 0x22, 0x33, 0, 0, 0, 0, 0x77},
			want: []got{{"Sel", 1, 1, ""}, {"S1", 0x3322, 0x3322, ""}, {"Common", 0x77, 0x77, ""}},
		},
		{
			name: "multiplexed none selected", msg: "MUX", data: []byte{2, 0x22, 0x33, 0, 0, 0, 0, 0x77},
			want: []got{{"Sel", 2, 2, ""}, {"Common", 0x77, 0x77, ""}},
		},
		{
			// Top=1 selects Sub=3, which lies in Leaf's range 2-3.
			name: "extended mux leaf in first range", msg: "XMUX", data: []byte{0x31, 0x44, 0, 0, 0, 0, 0, 0},
			want: []got{{"Top", 1, 1, ""}, {"Sub", 3, 3, ""}, {"Leaf", 0x44, 0x44, ""}},
		},
		{
			name: "extended mux leaf in second range", msg: "XMUX", data: []byte{0x51, 0x44, 0, 0, 0, 0, 0, 0},
			want: []got{{"Top", 1, 1, ""}, {"Sub", 5, 5, ""}, {"Leaf", 0x44, 0x44, ""}},
		},
		{
			name: "extended mux leaf not selected", msg: "XMUX", data: []byte{0x41, 0x44, 0, 0, 0, 0, 0, 0},
			want: []got{{"Top", 1, 1, ""}, {"Sub", 4, 4, ""}},
		},
		{
			// Top=0: Sub is absent, so Leaf is too, whatever bits 4..7 say.
			name: "extended mux parent absent", msg: "XMUX", data: []byte{0x30, 0x44, 0, 0, 0, 0, 0, 0},
			want: []got{{"Top", 0, 0, ""}, {"Other", 0x44, 0x44, ""}},
		},
		{
			// Gear=3 "D"; F32 = 0x3FC00000 = 1.5 little-endian in bytes 4..7.
			name: "value table and float32", msg: "VALS", data: []byte{3, 0, 0, 0, 0x00, 0x00, 0xC0, 0x3F},
			want: []got{{"Gear", 3, 3, "D"}, {"F32", 0x3FC00000, 1.5, ""}},
		},
		{
			// -2.25 = 0xC002000000000000; phys = -2.25*2+1 = -3.5.
			name: "float64 scaled", msg: "F64MSG", data: []byte{0, 0, 0, 0, 0, 0, 0x02, 0xC0},
			want: []got{{"D64", -0x3FFE000000000000, -3.5, ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustMessage(t, db, tt.msg)
			vs, err := m.Decode(tt.data)
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, flatten(vs)); diff != "" {
				t.Errorf("Decode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeShortPayload(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	m := mustMessage(t, db, "FD64")
	if _, err := m.Decode(make([]byte, 63)); !errors.Is(err, ErrShortPayload) {
		t.Errorf("Decode(63 bytes) error = %v, want ErrShortPayload", err)
	}
	// Longer payloads (CAN FD DLC padding) are fine.
	if _, err := mustMessage(t, db, "LE").Decode(make([]byte, 12)); err != nil {
		t.Errorf("Decode(12 bytes) error = %v", err)
	}
}

func TestDatabaseLookups(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	m, ok := db.MessageByID(0x160, true)
	if !ok || m.Name != "FD64" || m.Length != 64 || m.CycleTime != 5*time.Millisecond {
		t.Errorf("MessageByID(0x160, ext) = %+v, %v", m, ok)
	}
	if _, ok := db.MessageByID(0x160, false); ok {
		t.Error("MessageByID(0x160, std) found a message")
	}
	le := mustMessage(t, db, "LE")
	if le.CycleTime != 20*time.Millisecond || le.Comment != "little-endian message" || le.Sender != "ECU" {
		t.Errorf("LE = cycle %v comment %q sender %q", le.CycleTime, le.Comment, le.Sender)
	}
	if _, s, err := db.Signal("LE.B"); err != nil || s.Unit != "km/h" || s.Comment != `speed with "quotes"` {
		t.Errorf("Signal(LE.B) = %+v, %v", s, err)
	}
	for _, ref := range []string{"NOPE.B", "LE.Nope", "LE", ".B"} {
		if _, _, err := db.Signal(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Signal(%q) error = %v, want ErrNotFound", ref, err)
		}
	}
	var ids []uint32
	for _, m := range db.Messages {
		ids = append(ids, m.ID)
	}
	if diff := cmp.Diff([]uint32{100, 200, 300, 352, 400, 500, 501}, ids); diff != "" {
		t.Errorf("message order (-want +got):\n%s", diff)
	}
	if db.Version != "fixture" || db.Comment != "network comment" || len(db.ValueTables["GearTable"]) != 4 {
		t.Errorf("db = version %q comment %q tables %v", db.Version, db.Comment, db.ValueTables)
	}
	sub, _ := mustMessage(t, db, "XMUX").Signal("Leaf")
	want := []MuxRange{{2, 3}, {5, 5}}
	if sub.MuxParent != "Sub" || sub.MuxValue != 2 || !cmp.Equal(want, sub.MuxRanges) {
		t.Errorf("Leaf mux = parent %q value %d ranges %v", sub.MuxParent, sub.MuxValue, sub.MuxRanges)
	}
}

// TestExtractMatchesReference compares the fast extractor with a
// bit-by-bit reference on random payloads for every signal of the fixture
// and of the real files in testdata.
func TestExtractMatchesReference(t *testing.T) {
	t.Parallel()
	dbs := []*Database{}
	db, _ := mustParse(t, fixtureDBC)
	dbs = append(dbs, db)
	for _, f := range realFiles(t) {
		db, _, err := Load(f)
		if err != nil {
			t.Fatalf("Load(%s) error = %v", f, err)
		}
		dbs = append(dbs, db)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 64)
	n := 0
	for _, db := range dbs {
		for _, m := range db.Messages {
			for round := 0; round < 20; round++ {
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				for i := range m.plan.sigs {
					sp := &m.plan.sigs[i]
					if got, want := sp.bits(pad(data)), refBits(data, sp.sig); got != want {
						t.Fatalf("%s.%s bits = %#x, want %#x", m.Name, sp.sig.Name, got, want)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d extractions compared", n)
}

func TestFloatNaNDecodes(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	vs, err := mustMessage(t, db, "VALS").Decode([]byte{0, 0, 0, 0, 0x00, 0x00, 0xC0, 0x7F})
	if err != nil || !math.IsNaN(vs[1].Phys) {
		t.Errorf("Decode(NaN float32) = %v, %v", vs, err)
	}
}

// TestDecodeIntoDoesNotAllocate guards the per-frame path.
func TestDecodeIntoDoesNotAllocate(t *testing.T) {
	db, _ := mustParse(t, fixtureDBC)
	for _, name := range []string{"LE", "BE", "FD64", "MUX", "XMUX", "VALS"} {
		m := mustMessage(t, db, name)
		data := make([]byte, m.Length)
		data[0] = 0x31
		dst := make([]Value, 0, len(m.Signals))
		allocs := testing.AllocsPerRun(100, func() {
			dst, _ = m.DecodeInto(data, dst)
		})
		if allocs != 0 {
			t.Errorf("%s: DecodeInto allocates %.1f times per call", name, allocs)
		}
	}
}

func TestValueInRange(t *testing.T) {
	t.Parallel()
	db, _ := mustParse(t, fixtureDBC)
	_, b, _ := db.Signal("LE.B")   // [-10|2037.5]
	_, i, _ := db.Signal("FD64.I") // [0|0]: no range
	tests := []struct {
		v    Value
		want bool
	}{
		{Value{Signal: b, Phys: -10}, true},
		{Value{Signal: b, Phys: 2037.5}, true},
		{Value{Signal: b, Phys: 2038}, false},
		{Value{Signal: b, Phys: math.NaN()}, false},
		{Value{Signal: i, Phys: -5}, true},
	}
	for _, tt := range tests {
		if got := tt.v.InRange(); got != tt.want {
			t.Errorf("InRange(%s = %g) = %v, want %v", tt.v.Signal.Name, tt.v.Phys, got, tt.want)
		}
	}
}

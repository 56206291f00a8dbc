package canmap

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

const testDBC = `VERSION ""
BU_: A B
BO_ 256 M1: 8 A
 SG_ Speed : 0|16@1+ (0.1,0) [0|6553.5] "km/h" B
 SG_ State : 16|2@1+ (1,0) [0|3] "" B
 SG_ Temp : 24|8@1- (1,0) [-128|127] "C" B
BO_ 2147484160 EXT: 4 A
 SG_ Level : 0|8@1+ (0.5,0) [0|100] "%" B
VAL_ 256 State 0 "OFF" 1 "ON" 2 "FAULT" ;
`

func loadDB(t testing.TB) *dbc.Database {
	t.Helper()
	db, _, err := dbc.Parse("test.dbc", []byte(testDBC))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// rec records samples.
type rec []drivers.Sample

func (r *rec) Emit(s drivers.Sample) { *r = append(*r, s) }

var t0 = time.Unix(1_700_000_000, 0)

// m1 builds an M1 frame at t0+ms.
func m1(speedRaw uint16, state byte, temp int8, ms int) canbus.Frame {
	f := canbus.Frame{ID: 256, Len: 8, Time: t0.Add(time.Duration(ms) * time.Millisecond)}
	f.Data[0], f.Data[1] = byte(speedRaw), byte(speedRaw>>8)
	f.Data[2] = state
	f.Data[3] = byte(temp)
	return f
}

type emitted struct {
	Name  string
	Value float64
	Label string
	MS    int
}

func run(t *testing.T, sigs []Signal, frames []canbus.Frame) []emitted {
	t.Helper()
	d, err := New(Options{DB: loadDB(t), Signals: sigs, Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	for i := range frames {
		d.Decode(&frames[i], &r)
	}
	var out []emitted
	for _, s := range r {
		if s.Source != "src" {
			t.Errorf("sample source = %q, want src", s.Source)
		}
		out = append(out, emitted{s.Name, math.Round(s.Value*1000) / 1000, s.Label, int(s.Time.Sub(t0) / time.Millisecond)})
	}
	return out
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	speeds := []canbus.Frame{ // 10.0, 10.0, 10.4, 10.6, 11.2, 11.2, 11.2 km/h every 100 ms
		m1(100, 0, 0, 0), m1(100, 0, 0, 100), m1(104, 0, 0, 200), m1(106, 0, 0, 300),
		m1(112, 0, 0, 400), m1(112, 0, 0, 500), m1(112, 0, 0, 600),
	}
	tests := []struct {
		name   string
		sig    Signal
		frames []canbus.Frame
		want   []emitted
	}{
		{
			name: "on change", sig: Signal{Name: "S", Source: "M1.Speed"}, frames: speeds,
			want: []emitted{{"S", 10, "", 0}, {"S", 10.4, "", 200}, {"S", 10.6, "", 300}, {"S", 11.2, "", 400}},
		},
		{
			name: "absolute deadband", sig: Signal{Name: "S", Source: "M1.Speed", Deadband: 0.5}, frames: speeds,
			want: []emitted{{"S", 10, "", 0}, {"S", 10.6, "", 300}, {"S", 11.2, "", 400}},
		},
		{
			name: "relative deadband 5%", sig: Signal{Name: "S", Source: "M1.Speed", DeadbandPct: 5}, frames: speeds,
			want: []emitted{{"S", 10, "", 0}, {"S", 10.6, "", 300}, {"S", 11.2, "", 400}},
		},
		{
			name: "min interval delays a change to the next frame", sig: Signal{Name: "S", Source: "M1.Speed", MinInterval: ms(250)},
			frames: speeds,
			want:   []emitted{{"S", 10, "", 0}, {"S", 10.6, "", 300}, {"S", 11.2, "", 600}},
		},
		{
			name: "heartbeat repeats an unchanged value", sig: Signal{Name: "S", Source: "M1.Speed", Heartbeat: ms(200), Deadband: 5},
			frames: speeds,
			want:   []emitted{{"S", 10, "", 0}, {"S", 10.4, "", 200}, {"S", 11.2, "", 400}, {"S", 11.2, "", 600}},
		},
		{
			name: "labels and signed values", sig: Signal{Name: "St", Source: "M1.State"},
			frames: []canbus.Frame{m1(0, 1, -5, 0), m1(0, 1, -5, 10), m1(0, 2, -5, 20)},
			want:   []emitted{{"St", 1, "ON", 0}, {"St", 2, "FAULT", 20}},
		},
		{
			name: "signed", sig: Signal{Name: "T", Source: "M1.Temp"},
			frames: []canbus.Frame{m1(0, 0, -5, 0), m1(0, 0, 3, 10)},
			want:   []emitted{{"T", -5, "", 0}, {"T", 3, "", 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, []Signal{tt.sig}, tt.frames)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("emitted mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sigs     []Signal
		unmapped string
		want     string
	}{
		{"unknown message", []Signal{{Name: "A", Source: "NOPE.Speed"}}, "", `"NOPE.Speed"`},
		{"unknown signal", []Signal{{Name: "A", Source: "M1.Nope"}}, "", `"M1.Nope"`},
		{"no dot", []Signal{{Name: "A", Source: "Speed"}}, "", "want MESSAGE.Signal"},
		{"empty name", []Signal{{Source: "M1.Speed"}}, "", "name is empty"},
		{"duplicate", []Signal{{Name: "A", Source: "M1.Speed"}, {Name: "A", Source: "M1.State"}}, "", "mapped twice"},
		{"negative deadband", []Signal{{Name: "A", Source: "M1.Speed", Deadband: -1}}, "", "deadband"},
		{"heartbeat < min interval", []Signal{{Name: "A", Source: "M1.Speed", Heartbeat: Duration(time.Millisecond), MinInterval: Duration(time.Second)}}, "", "heartbeat"},
		{"bad unmapped", nil, "keep", `unmapped "keep"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Options{DB: loadDB(t), Signals: tt.sigs, Unmapped: tt.unmapped})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v, want ErrConfig mentioning %s", err, tt.want)
			}
		})
	}
}

func TestUnmappedEmitStatsAndLastSeen(t *testing.T) {
	t.Parallel()
	d, err := New(Options{DB: loadDB(t), Unmapped: UnmappedEmit, Signals: []Signal{{Name: "Vehicle.Speed", Source: "M1.Speed"}}})
	if err != nil {
		t.Fatal(err)
	}
	ext := canbus.Frame{ID: 512, Extended: true, Len: 4, Data: [64]byte{50}}
	frames := []canbus.Frame{
		m1(100, 1, 0, 0),
		ext,
		{ID: 512, Len: 4}, // standard id 512 is not the extended message
		{ID: 256, Len: 2}, // too short
	}
	var r rec
	for i := range frames {
		d.Decode(&frames[i], &r)
	}
	var names []string
	for _, s := range r {
		names = append(names, s.Name)
	}
	want := []string{"Vehicle.Speed", "M1.State", "M1.Temp", "EXT.Level"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("emitted names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Frames: 4, DecodeErrors: 1, UnknownIDs: 1, Samples: 4}, d.Stats()); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
	at, ok := d.LastSeen("Vehicle.Speed")
	if !ok || !at.Equal(t0) {
		t.Errorf("LastSeen(Vehicle.Speed) = %v, %v; want %v, true", at, ok, t0)
	}
	if _, ok := d.LastSeen("M1.Speed"); ok {
		t.Error("LastSeen(M1.Speed) found a mapped signal under its DBC name")
	}
	// A frame without time is stamped by the decoder.
	nf := m1(200, 1, 0, 0)
	nf.Time = time.Time{}
	d.Decode(&nf, &r)
	if at, _ := d.LastSeen("Vehicle.Speed"); at.Before(t0.Add(time.Hour)) {
		t.Errorf("frame without time stamped %v, want now", at)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	db := loadDB(t)
	d, err := New(Options{DB: db, Unmapped: UnmappedEmit})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	sink := drivers.SinkFunc(func(drivers.Sample) { n++ })
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		f := m1(uint16(i), byte(i%3), int8(i), i)
		d.Decode(&f, sink)
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %v times per frame, want 0", allocs)
	}
	if n == 0 {
		t.Error("no samples emitted")
	}
}

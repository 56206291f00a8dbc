package canmap

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

const muxDBC = `VERSION ""
BU_: A B
BO_ 768 MUXED: 8 A
 SG_ Page M : 0|8@1+ (1,0) [0|255] "" B
 SG_ Temp m0 : 8|8@1+ (1,-40) [-40|215] "C" B
 SG_ Volt m1 : 8|16@1+ (0.01,0) [0|655.35] "V" B
 SG_ Always : 56|8@1+ (1,0) [0|255] "" B
BO_ 1024 FDMSG: 64 A
 SG_ Tail : 504|8@1+ (1,0) [0|255] "" B
`

func TestMultiplexedAndFD(t *testing.T) {
	t.Parallel()
	db, _, err := dbc.Parse("mux.dbc", []byte(muxDBC))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{DB: db, Signals: []Signal{
		{Name: "T", Source: "MUXED.Temp"},
		{Name: "V", Source: "MUXED.Volt"},
		{Name: "A", Source: "MUXED.Always"},
		{Name: "Tail", Source: "FDMSG.Tail"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	frames := []canbus.Frame{
		{ID: 768, Len: 8, Data: [64]byte{0, 60, 0, 0, 0, 0, 0, 7}, Time: at(0)},       // page 0: Temp 20
		{ID: 768, Len: 8, Data: [64]byte{1, 0xB0, 0x04, 0, 0, 0, 0, 7}, Time: at(10)}, // page 1: Volt 12.00
		{ID: 1024, FD: true, Len: 64, Time: at(20)},
	}
	frames[2].Data[63] = 0xAB
	var r rec
	for i := range frames {
		d.Decode(&frames[i], &r)
	}
	var got []emitted
	for _, s := range r {
		got = append(got, emitted{s.Name, s.Value, s.Label, int(s.Time.Sub(t0) / time.Millisecond)})
	}
	want := []emitted{{"T", 20, "", 0}, {"A", 7, "", 0}, {"V", 12, "", 10}, {"Tail", 0xAB, "", 20}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("emitted (-want +got):\n%s", diff)
	}
	// Temp was last in the frame at 0 ms even though MUXED arrived at 10 ms.
	if seen, ok := d.LastSeen("T"); !ok || !seen.Equal(at(0)) {
		t.Errorf("LastSeen(T) = %v, %v; want %v (multiplexed signals keep their own time)", seen, ok, at(0))
	}
	if seen, ok := d.LastSeen("A"); !ok || !seen.Equal(at(10)) {
		t.Errorf("LastSeen(A) = %v, %v; want %v", seen, ok, at(10))
	}
}

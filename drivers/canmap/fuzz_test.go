package canmap

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// FuzzDecodeFrame feeds arbitrary frames through a decoder that emits every
// signal of the test DBC (incl. a multiplexed message and an FD message):
// it must not panic, must count every frame and must emit only names it
// knows.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(uint32(256), false, false, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint32(512), true, false, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(uint32(768), false, false, []byte{1, 0xB0, 0x04, 0, 0, 0, 0, 7})
	f.Add(uint32(1024), false, true, make([]byte, 64))
	f.Add(uint32(256), false, false, []byte{1})
	db, _, err := dbc.Parse("fuzz.dbc", []byte(testDBC+strings.SplitN(muxDBC, "\n", 3)[2]))
	if err != nil {
		f.Fatal(err)
	}
	d, err := New(Options{DB: db, Unmapped: UnmappedEmit})
	if err != nil {
		f.Fatal(err)
	}
	if len(db.Messages) != 4 {
		f.Fatalf("fuzz dbc has %d messages, want 4", len(db.Messages))
	}
	known := map[string]bool{}
	for _, n := range d.Names() {
		known[n] = true
	}
	f.Fuzz(func(t *testing.T, id uint32, ext, fd bool, data []byte) {
		fr := canbus.Frame{ID: id, Extended: ext, FD: fd, Time: time.Unix(1, 0)}
		fr.Len = uint8(copy(fr.Data[:], data))
		before := d.Stats().Frames
		d.Decode(&fr, drivers.SinkFunc(func(s drivers.Sample) {
			if !known[s.Name] {
				t.Fatalf("emitted unknown name %q", s.Name)
			}
			if math.IsInf(s.Value, 0) {
				t.Fatalf("%s = %v", s.Name, s.Value)
			}
		}))
		if d.Stats().Frames != before+1 {
			t.Fatal("frame not counted")
		}
	})
}

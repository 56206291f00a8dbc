package obd

import (
	"math"
	"testing"
)

func TestDecodePID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pid  byte
		data []byte
		want float64
	}{
		{0x0D, []byte{0x57}, 87},
		{0x0C, []byte{0x21, 0x98}, 2150},
		{0x05, []byte{0x00}, -40},
		{0x05, []byte{0xFF}, 215},
		{0x2F, []byte{0xFF}, 100},
		{0x42, []byte{0x37, 0x14}, 14.1},
		{0xA6, []byte{0x00, 0x01, 0xE2, 0x40}, 12345.6},
		{0x10, []byte{0xFF, 0xFF}, 655.35},
		{0x5E, []byte{0x00, 0x64}, 5},
		{0x0D, []byte{0x57, 0xCC, 0xCC}, 87}, // padding ignored
	} {
		got, err := DecodePID(tt.pid, tt.data)
		if err != nil || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("DecodePID(%#02x, % X) = %v, %v; want %v", tt.pid, tt.data, got, err, tt.want)
		}
	}
	if _, err := DecodePID(0x0C, []byte{1}); err == nil {
		t.Error("DecodePID with too few bytes = nil error")
	}
	if _, err := DecodePID(0x03, []byte{1, 2}); err == nil {
		t.Error("DecodePID of a PID without scaling = nil error")
	}
}

func TestSupportedPIDs(t *testing.T) {
	t.Parallel()
	var got []byte
	// 0xBE1FA813: the classic example (PIDs 01,03-07,0C-0D,0F-11,13,15,1C,1F,20).
	if err := SupportedPIDs(0, []byte{0xBE, 0x1F, 0xA8, 0x13}, func(p byte) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x13, 0x15, 0x1C, 0x1F, 0x20}
	if string(got) != string(want) {
		t.Errorf("SupportedPIDs = % X, want % X", got, want)
	}
	if err := SupportedPIDs(0x10, []byte{1, 2, 3, 4}, func(byte) {}); err == nil {
		t.Error("base 0x10 accepted")
	}
}

func TestParseVIN(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"\x011G1JC5444R7252367", "1G1JC5444R7252367", true},
		{"1G1JC5444R7252367", "1G1JC5444R7252367", true},
		{"\x00\x00\x001G1JC5444R7252367", "1G1JC5444R7252367", true},
		{"\x011G1JC5444R725236", "", false},  // 16 characters
		{"\x011G1JC5444I7252367", "", false}, // I is not a VIN character
		{"", "", false},
	} {
		got, err := ParseVIN([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseVIN(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzDecoders: the PID, bitmap and VIN decoders take ECU bytes; they must
// never panic, and what they accept must be sane.
func FuzzDecoders(f *testing.F) {
	f.Add(byte(0x0C), []byte{0x21, 0x98})
	f.Add(byte(0xA6), []byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(byte(0x00), []byte{0xBE, 0x1F, 0xA8, 0x13})
	f.Add(byte(0x02), []byte("\x011G1JC5444R7252367"))
	f.Fuzz(func(t *testing.T, pid byte, data []byte) {
		if v, err := DecodePID(pid, data); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("DecodePID(%#02x) = %v", pid, v)
		}
		n := 0
		if err := SupportedPIDs(pid&0xE0, data, func(p byte) {
			if p <= pid&0xE0 {
				t.Fatalf("PID %#02x not above base %#02x", p, pid&0xE0)
			}
			n++
		}); err == nil && n > 32 {
			t.Fatalf("%d PIDs from one bitmap", n)
		}
		if vin, err := ParseVIN(data); err == nil && len(vin) != VINLen {
			t.Fatalf("ParseVIN accepted %q", vin)
		}
	})
}

package gnss

import (
	"testing"
	"time"
)

// TestEpochEndLearned checks that after one epoch boundary the decoder
// emits each fix on the epoch's last sentence, and that it falls back to
// boundaries (without a duplicate fix) when a receiver proves it wrong.
func TestEpochEndLearned(t *testing.T) {
	t.Parallel()
	rmc := func(hms string) string {
		return "GPRMC," + hms + ",A,4221.3871,N,01322.0800,E,0.1,,150305,,,A"
	}
	gga := func(hms string) string {
		return "GPGGA," + hms + ",4221.3871,N,01322.0800,E,1,05,1.2,746.1,M,44.2,M,,"
	}
	const gsa = "GPGSA,A,3,01,03,14,,,,,,,,,,2.0,1.2,1.5"
	gll := func(hms string) string { return "GPGLL,4221.3871,N,01322.0800,E," + hms + ",A,A" }
	tests := []struct {
		line     string
		wantFix  string // time of day of the fix Feed returns, or ""
		disabled bool
	}{
		{rmc("120000"), "", false},
		{gga("120000"), "", false},
		{gsa, "", false},
		{rmc("120001"), "12:00:00", false}, // boundary: learns GPGSA#1 ends an epoch
		{gga("120001"), "", false},
		{gsa, "12:00:01", false}, // ended early, no second of latency
		{rmc("120002"), "", false},
		{gga("120002"), "", false},
		{gsa, "12:00:02", false},
		{gll("120002"), "", true}, // same epoch after its "end": dropped, early ends off
		{rmc("120003"), "", true},
		{gsa, "", true},
		{rmc("120004"), "12:00:03", true}, // back to boundaries
	}
	var d Decoder
	for i, tt := range tests {
		f, ok, err := d.Feed(mustSentence(t, frame(tt.line)))
		if err != nil {
			t.Fatalf("line %d: Feed() error = %v", i, err)
		}
		got := ""
		if ok {
			got = time.Time{}.Add(f.TimeOfDay.D).Format("15:04:05")
		}
		if got != tt.wantFix || d.end.disabled != tt.disabled {
			t.Errorf("line %d (%s): fix %q disabled %v, want %q %v", i, tt.line[:5], got, d.end.disabled, tt.wantFix, tt.disabled)
		}
	}
}

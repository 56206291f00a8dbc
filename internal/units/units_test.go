package units

import (
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"250ms", 250 * time.Millisecond, ""},
		{"72h", 72 * time.Hour, ""},
		{"0s", 0, ""},
		{"1m30s", 90 * time.Second, ""},
		{"fast", 0, "invalid duration"},
		{"30", 0, "invalid duration"},
		{"", 0, "invalid duration"},
		{"-1s", 0, "negative duration"},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("UnmarshalText(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("UnmarshalText(%q): %v", tt.in, err)
		case d.Std() != tt.want:
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, d.Std(), tt.want)
		}
		if err != nil {
			continue
		}
		out, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(out); err != nil || back != d {
			t.Errorf("round trip of %q via %q = %v, %v", tt.in, out, back.Std(), err)
		}
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		text    string
		wantErr bool
	}{
		{"64MiB", 64 << 20, "64MiB", false},
		{"512KiB", 512 << 10, "512KiB", false},
		{"1GiB", 1 << 30, "1GiB", false},
		{"1GB", 1e9, "1000000000B", false},
		{"2KB", 2000, "2000B", false},
		{"3MB", 3e6, "3000000B", false},
		{"100", 100, "100B", false},
		{"100B", 100, "100B", false},
		{" 8 MiB ", 8 << 20, "8MiB", false},
		{"0", 0, "0B", false},
		{"-1", 0, "", true},
		{"1.5MiB", 0, "", true},
		{"MiB", 0, "", true},
		{"10TiB", 0, "", true},
		{"9223372036854775807GiB", 0, "", true},
	}
	for _, tt := range tests {
		var s Size
		err := s.UnmarshalText([]byte(tt.in))
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "invalid size") {
				t.Errorf("UnmarshalText(%q) = %d, %v; want an invalid size error", tt.in, s, err)
			}
			continue
		}
		if err != nil || int64(s) != tt.want {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", tt.in, s, err, tt.want)
			continue
		}
		if out, _ := s.MarshalText(); string(out) != tt.text {
			t.Errorf("MarshalText(%d) = %q, want %q", s, out, tt.text)
		}
	}
}

// FuzzSize: whatever parses formats to a string that parses to the same
// value.
func FuzzSize(f *testing.F) {
	for _, s := range []string{"64MiB", "1GB", "100", "-1", " 7 KiB", "4611686018427387904"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var s Size
		if s.UnmarshalText([]byte(in)) != nil {
			return
		}
		if s < 0 {
			t.Fatalf("%q parsed to negative %d", in, s)
		}
		out, _ := s.MarshalText()
		var back Size
		if err := back.UnmarshalText(out); err != nil || back != s {
			t.Fatalf("%q -> %d -> %q -> %d, %v", in, s, out, back, err)
		}
	})
}

// FuzzDuration: whatever parses is non-negative and round-trips.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"250ms", "72h", "-1s", "1h2m3.5s", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var d Duration
		if d.UnmarshalText([]byte(in)) != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q parsed to negative %v", in, d.Std())
		}
		out, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(out); err != nil || back != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", in, d.Std(), out, back.Std(), err)
		}
	})
}

package candump

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

func fr(id uint32, ext, fd bool, data ...byte) canbus.Frame {
	f := canbus.Frame{ID: id, Extended: ext, FD: fd, Len: uint8(len(data))}
	copy(f.Data[:], data)
	return f
}

func TestParseLine(t *testing.T) {
	t.Parallel()
	ts := time.Unix(1436509052, 249713000)
	tests := []struct {
		line string
		want canbus.Frame
		err  error
	}{
		{"(1436509052.249713) vcan0 044#2A366C2A", fr(0x044, false, false, 0x2A, 0x36, 0x6C, 0x2A), nil},
		{"(1436509052.249713) vcan0 12345678#", fr(0x12345678, true, false), nil},
		{"(1436509052.249713) vcan0 123##1" + strings.Repeat("AB", 12), fr(0x123, false, true, bytes.Repeat([]byte{0xAB}, 12)...), nil},
		{"(1436509052.249713) vcan0 123##0", fr(0x123, false, true), nil},
		{"(1436509052.249713) vcan0 1aB#de.ad", fr(0x1AB, false, false, 0xDE, 0xAD), nil},
		{"(1436509052.249713) vcan0 123#1122334455667788_E", fr(0x123, false, false, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88), nil},
		{"(1436509052.249713) vcan0 123#11 T", fr(0x123, false, false, 0x11), nil},
		{"(1436509052.249713) vcan0 123#R", canbus.Frame{}, ErrUnsupported},
		{"(1436509052.249713) vcan0 20000080#0000000000000000", canbus.Frame{}, ErrUnsupported},
		{"(1436509052.249713) vcan0 123#112233445566778899", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0 123##1" + strings.Repeat("AB", 9), canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0 800#", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0 1234#", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0 123#1", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0 123#XY", canbus.Frame{}, ErrSyntax},
		{"(1436509052) vcan0 123#", canbus.Frame{}, ErrSyntax},
		{"(1436509052.2x9713) vcan0 123#", canbus.Frame{}, ErrSyntax},
		{"1436509052.249713 vcan0 123#", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713) vcan0", canbus.Frame{}, ErrSyntax},
		{"(1436509052.249713)", canbus.Frame{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			t.Parallel()
			var r Record
			err := ParseLine([]byte(tt.line), &r)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseLine() = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Time = ts
			if diff := cmp.Diff(Record{Time: ts, Interface: "vcan0", Frame: tt.want}, r); diff != "" {
				t.Errorf("ParseLine() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	frames := []canbus.Frame{
		fr(0x044, false, false, 0x2A, 0x36, 0x6C, 0x2A),
		fr(0x18FF1021, true, false, 1, 2, 3, 4, 5, 6, 7, 8),
		fr(0x7FF, false, false),
		fr(0x123, false, true, bytes.Repeat([]byte{0x5A}, 64)...),
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, "vcan0")
	base := time.Unix(1436509052, 249713000)
	for i := range frames {
		frames[i].Time = base.Add(time.Duration(i) * time.Second)
		if err := w.Write(&frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(buf.String(), "\n"); first != "(1436509052.249713) vcan0 044#2A366C2A" {
		t.Errorf("first line = %q, want candump -l format", first)
	}
	r := NewReader(&buf)
	for i := range frames {
		var rec Record
		if err := r.Next(&rec); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(frames[i], rec.Frame); diff != "" {
			t.Errorf("frame %d mismatch (-want +got):\n%s", i, diff)
		}
	}
	if err := r.Next(&Record{}); !errors.Is(err, io.EOF) {
		t.Errorf("Next at end = %v, want io.EOF", err)
	}
	if err := w.Write(&canbus.Frame{}); err == nil {
		t.Error("Write of a frame without time succeeded")
	}
}

func TestReaderSkipsAndCounts(t *testing.T) {
	t.Parallel()
	in := "# comment\n\n(1.000001) can0 001#01\r\ngarbage\n(2.000000) can0 002#R\n(3.5) can0 003#03\n"
	r := NewReader(strings.NewReader(in))
	var ids []uint32
	for {
		var rec Record
		if err := r.Next(&rec); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		ids = append(ids, rec.Frame.ID)
	}
	if diff := cmp.Diff([]uint32{1, 3}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if r.Skipped() != 2 || r.FirstSkip() == nil || !strings.Contains(r.FirstSkip().Error(), "line 4") {
		t.Errorf("Skipped() = %d, FirstSkip() = %v; want 2 and a line 4 error", r.Skipped(), r.FirstSkip())
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"(1436509052.249713) vcan0 044#2A366C2A",
		"(1436509052.249713) vcan0 12345678#0102",
		"(1436509052.249713) can1 123##1AABBCCDDEEFF0011223344",
		"(1.5) x 7FF#R",
		"(1436509052.249713) vcan0 123#11.22_E extra",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var r Record
		if err := ParseLine(line, &r); err != nil {
			return
		}
		if err := r.Frame.Validate(); err != nil {
			t.Fatalf("ParseLine accepted an invalid frame: %v", err)
		}
		// What was parsed must survive writing and parsing again.
		out := AppendLine(nil, &r)
		var again Record
		if err := ParseLine(bytes.TrimSuffix(out, []byte("\n")), &again); err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		r.Time = r.Time.Truncate(time.Microsecond)
		r.Frame.Time = r.Time
		if r.Interface == "" || bytes.ContainsAny([]byte(r.Interface), " \n") {
			return
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip of %q mismatch (-want +got):\n%s", out, diff)
		}
	})
}

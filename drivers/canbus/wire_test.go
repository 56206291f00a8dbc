package canbus

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	fd := Frame{ID: 0x18DAF110, Extended: true, FD: true, Len: 64, Time: time.Unix(1436509052, 249713000)}
	for i := range fd.Data {
		fd.Data[i] = byte(i)
	}
	tests := []struct {
		name string
		f    Frame
	}{
		{"empty", Frame{ID: 0x0C0}},
		{"classic", Frame{ID: 0x120, Len: 3, Data: [64]byte{1, 2, 3}, Time: time.Unix(5, 6)}},
		{"fd extended", fd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := AppendWire([]byte{0xAA}, &tt.f)[1:]
			var got Frame
			n, err := DecodeWire(b, &got)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b) {
				t.Errorf("DecodeWire consumed %d of %d bytes", n, len(b))
			}
			if diff := cmp.Diff(tt.f, got); diff != "" {
				t.Errorf("DecodeWire() mismatch (-want +got):\n%s", diff)
			}
			for cut := range len(b) {
				if _, err := DecodeWire(b[:cut], &got); !errors.Is(err, ErrShortWire) {
					t.Fatalf("DecodeWire(%d of %d bytes) = %v, want ErrShortWire", cut, len(b), err)
				}
			}
		})
	}
}

func TestDecodeWireRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := AppendWire(nil, &Frame{ID: 0x120, Len: 2})
	tests := []struct {
		name string
		b    []byte
	}{
		{"size too small", []byte{3, 0, 0, 0, 0}},
		{"size too big", append([]byte{200}, make([]byte, 200)...)},
		{"unknown flag", func() []byte { b := bytes.Clone(good); b[1] = 0x80; return b }()},
		{"len mismatch", func() []byte { b := bytes.Clone(good); b[14] = 1; return b }()},
		{"id too big", func() []byte { b := bytes.Clone(good); b[2] = 0xFF; return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f Frame
			if _, err := DecodeWire(tt.b, &f); err == nil || errors.Is(err, ErrShortWire) {
				t.Errorf("DecodeWire() = %v, want a malformed-record error", err)
			}
		})
	}
}

func FuzzDecodeWire(f *testing.F) {
	f.Add(AppendWire(nil, &Frame{ID: 0x120, Len: 8, Time: time.Unix(1, 2)}))
	f.Add(AppendWire(nil, &Frame{ID: 0x1FFFFFFF, Extended: true, FD: true, Len: 64}))
	f.Add([]byte{14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		n, err := DecodeWire(b, &fr)
		if err != nil {
			return
		}
		if n < 1 || n > len(b) || n > MaxWireLen {
			t.Fatalf("DecodeWire consumed %d of %d bytes", n, len(b))
		}
		if err := fr.Validate(); err != nil {
			t.Fatalf("DecodeWire accepted an invalid frame: %v", err)
		}
		again := AppendWire(nil, &fr)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:n], again)
		}
	})
}

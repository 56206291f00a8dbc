package socketcan

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

func frameOf(id uint32, ext, fd bool, data ...byte) canbus.Frame {
	f := canbus.Frame{ID: id, Extended: ext, FD: fd, Len: uint8(len(data))}
	copy(f.Data[:], data)
	return f
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	big := make([]byte, 64)
	for i := range big {
		big[i] = byte(i * 3)
	}
	tests := []struct {
		name    string
		f       canbus.Frame
		wantLen int
	}{
		{"standard empty", frameOf(0x123, false, false), classicMTU},
		{"standard 8 bytes", frameOf(0x7FF, false, false, 1, 2, 3, 4, 5, 6, 7, 8), classicMTU},
		{"extended", frameOf(0x1ABCDEF0, true, false, 0xde, 0xad), classicMTU},
		{"fd 64 bytes extended", frameOf(0x18DAF110, true, true, big...), fdMTU},
		{"fd 12 bytes", frameOf(0x10, false, true, big[:12]...), fdMTU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf [fdMTU]byte
			b, err := encodeFrame(buf[:], &tt.f)
			if err != nil {
				t.Fatalf("encodeFrame() error = %v", err)
			}
			if len(b) != tt.wantLen {
				t.Fatalf("encodeFrame() wrote %d bytes, want %d", len(b), tt.wantLen)
			}
			var got canbus.Frame
			var ef errorFrame
			isErr, err := decodeFrame(b, &got, &ef)
			if err != nil || isErr {
				t.Fatalf("decodeFrame() = %v, %v", isErr, err)
			}
			if diff := cmp.Diff(tt.f, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeFrameLayout(t *testing.T) {
	t.Parallel()
	f := frameOf(0x1234567, true, false, 0xAA, 0xBB)
	var buf [fdMTU]byte
	b, err := encodeFrame(buf[:], &f)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.NativeEndian.Uint32(b[0:4]); got != 0x1234567|flagEFF {
		t.Errorf("can_id = %#x, want %#x", got, uint32(0x1234567|flagEFF))
	}
	if b[4] != 2 || b[8] != 0xAA || b[9] != 0xBB || b[10] != 0 {
		t.Errorf("frame bytes = % x", b)
	}
}

func TestEncodeFrameInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    canbus.Frame
	}{
		{"standard id too big", frameOf(0x800, false, false)},
		{"classic too long", canbus.Frame{ID: 1, Len: 9}},
		{"fd invalid length", canbus.Frame{ID: 1, FD: true, Len: 9}},
	}
	for _, tt := range tests {
		var buf [fdMTU]byte
		if _, err := encodeFrame(buf[:], &tt.f); !errors.Is(err, canbus.ErrInvalidFrame) {
			t.Errorf("%s: encodeFrame() error = %v, want ErrInvalidFrame", tt.name, err)
		}
	}
}

func rawFrame(id uint32, data ...byte) []byte {
	b := make([]byte, classicMTU)
	binary.NativeEndian.PutUint32(b, id)
	b[4] = uint8(len(data))
	copy(b[8:], data)
	return b
}

func TestDecodeFrameSkipsAndRejects(t *testing.T) {
	t.Parallel()
	var f canbus.Frame
	var ef errorFrame
	if _, err := decodeFrame(rawFrame(0x100|flagRTR), &f, &ef); !errors.Is(err, errSkip) {
		t.Errorf("remote frame: err = %v, want errSkip", err)
	}
	if _, err := decodeFrame(make([]byte, 20), &f, &ef); !errors.Is(err, canbus.ErrInvalidFrame) {
		t.Errorf("20-byte frame: err = %v, want ErrInvalidFrame", err)
	}
	long := rawFrame(0x100)
	long[4] = 9
	if _, err := decodeFrame(long, &f, &ef); !errors.Is(err, canbus.ErrInvalidFrame) {
		t.Errorf("dlc 9: err = %v, want ErrInvalidFrame", err)
	}
}

func TestErrorFrameState(t *testing.T) {
	t.Parallel()
	const (
		crtl, busOff, restarted, cnt = 0x04, 0x40, 0x100, 0x200
	)
	tests := []struct {
		name           string
		prev           State
		raw            []byte
		want           State
		wantTx, wantRx uint8
		wantCounters   bool
	}{
		{"bus-off", StateActive, rawFrame(flagERR | busOff), StateBusOff, 0, 0, false},
		{"restarted", StateBusOff, rawFrame(flagERR | restarted), StateActive, 0, 0, false},
		{"rx warning", StateActive, rawFrame(flagERR|crtl, 0, 0x04), StateWarning, 0, 0, false},
		{"tx passive with counters", StateWarning, rawFrame(flagERR|crtl|cnt, 0, 0x20, 0, 0, 0, 0, 130, 5), StatePassive, 130, 5, true},
		{"back to active", StatePassive, rawFrame(flagERR|crtl, 0, 0x40), StateActive, 0, 0, false},
		{"protocol error keeps state", StateWarning, rawFrame(flagERR|0x08, 0, 0, 0x02), StateWarning, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f canbus.Frame
			var ef errorFrame
			isErr, err := decodeFrame(tt.raw, &f, &ef)
			if err != nil || !isErr {
				t.Fatalf("decodeFrame() = %v, %v; want error frame", isErr, err)
			}
			s, tx, rx, ok := nextState(tt.prev, &ef)
			if s != tt.want || tx != tt.wantTx || rx != tt.wantRx || ok != tt.wantCounters {
				t.Errorf("nextState() = %v %d %d %v, want %v %d %d %v", s, tx, rx, ok, tt.want, tt.wantTx, tt.wantRx, tt.wantCounters)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(rawFrame(0x123, 1, 2, 3))
	f.Add(rawFrame(0x1ABCDEF0|flagEFF, 1))
	f.Add(rawFrame(flagERR|0x44, 0, 0x20))
	f.Add(make([]byte, fdMTU))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr canbus.Frame
		var ef errorFrame
		isErr, err := decodeFrame(b, &fr, &ef)
		if err != nil || isErr {
			return
		}
		if err := fr.Validate(); err != nil && !fr.FD {
			t.Fatalf("decoded classic frame fails Validate: %v", err)
		}
		// Re-encoding a decoded frame with a valid length reproduces it.
		if fr.Validate() == nil {
			var buf [fdMTU]byte
			out, err := encodeFrame(buf[:], &fr)
			if err != nil {
				t.Fatalf("encodeFrame(decoded) error = %v", err)
			}
			var again canbus.Frame
			if _, err := decodeFrame(out, &again, &ef); err != nil {
				t.Fatalf("decode(encode(decoded)) error = %v", err)
			}
			if diff := cmp.Diff(fr, again); diff != "" {
				t.Fatalf("re-encode mismatch (-first +second):\n%s", diff)
			}
		}
	})
}

//go:build linux

package socketcan

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	l := uint64(unix.CmsgLen(len(data)))
	lenSize := unix.SizeofCmsghdr - 8
	if lenSize == 8 {
		binary.NativeEndian.PutUint64(b, l)
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	binary.NativeEndian.PutUint32(b[lenSize:], uint32(level))
	binary.NativeEndian.PutUint32(b[lenSize+4:], uint32(typ))
	copy(b[unix.SizeofCmsghdr:], data)
	return b
}

func timespec(sec, nsec int64) []byte {
	b := make([]byte, timespecSize)
	if timespecSize == 16 {
		binary.NativeEndian.PutUint64(b, uint64(sec))
		binary.NativeEndian.PutUint64(b[8:], uint64(nsec))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(sec))
		binary.NativeEndian.PutUint32(b[4:], uint32(nsec))
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func TestParseCmsgs(t *testing.T) {
	t.Parallel()
	ts := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(1700000000, 123456789))
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(42))
	other := cmsg(unix.SOL_IP, 7, u32(9))
	want := time.Unix(1700000000, 123456789)
	tests := []struct {
		name      string
		oob       []byte
		wantTS    bool
		wantDrops uint32
		wantOK    bool
	}{
		{"both", append(append([]byte{}, ts...), ovfl...), true, 42, true},
		{"drops first", append(append([]byte{}, ovfl...), ts...), true, 42, true},
		{"timestamp only", ts, true, 0, false},
		{"unknown level skipped", append(append([]byte{}, other...), ovfl...), false, 42, true},
		{"empty", nil, false, 0, false},
		{"truncated", ts[:10], false, 0, false},
		{"bad length", func() []byte { b := append([]byte{}, ts...); b[0] = 0xFF; return b }(), false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, drops, haveTS, haveDrops := parseCmsgs(tt.oob)
			if haveTS != tt.wantTS || (haveTS && !got.Equal(want)) {
				t.Errorf("timestamp = %v (%v), want %v (%v)", got, haveTS, want, tt.wantTS)
			}
			if haveDrops != tt.wantOK || drops != tt.wantDrops {
				t.Errorf("drops = %d (%v), want %d (%v)", drops, haveDrops, tt.wantDrops, tt.wantOK)
			}
		})
	}
}

func FuzzParseCmsgs(f *testing.F) {
	f.Add(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(1, 2)))
	f.Add(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(1)))
	f.Fuzz(func(t *testing.T, b []byte) { parseCmsgs(b) })
}

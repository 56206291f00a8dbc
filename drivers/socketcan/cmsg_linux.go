//go:build linux

package socketcan

import (
	"encoding/binary"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oobSize holds an SCM_TIMESTAMPNS and an SO_RXQ_OVFL control message with
// room to spare.
const oobSize = 128

// timespecSize is sizeof(struct timespec) as the kernel sends it for
// SO_TIMESTAMPNS on this architecture (two longs).
const timespecSize = int(unsafe.Sizeof(unix.Timespec{}))

// parseCmsgs extracts the kernel receive timestamp (SCM_TIMESTAMPNS) and
// the socket's cumulative drop counter (SO_RXQ_OVFL) from a recvmsg
// control buffer without allocating. Malformed or truncated messages end
// the walk.
func parseCmsgs(oob []byte) (ts time.Time, drops uint32, haveTS, haveDrops bool) {
	const hdr = unix.SizeofCmsghdr
	lenSize := hdr - 8 // cmsg_len is a size_t; level and type are ints
	for len(oob) >= hdr {
		var l uint64
		if lenSize == 8 {
			l = binary.NativeEndian.Uint64(oob[0:8])
		} else {
			l = uint64(binary.NativeEndian.Uint32(oob[0:4]))
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenSize : lenSize+4]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4 : lenSize+8]))
		if l < uint64(hdr) || l > uint64(len(oob)) {
			return
		}
		data := oob[hdr:l]
		if level == unix.SOL_SOCKET {
			switch typ {
			case unix.SCM_TIMESTAMPNS:
				if len(data) >= timespecSize {
					ts, haveTS = decodeTimespec(data), true
				}
			case unix.SO_RXQ_OVFL:
				if len(data) >= 4 {
					drops, haveDrops = binary.NativeEndian.Uint32(data[0:4]), true
				}
			}
		}
		next := unix.CmsgSpace(int(l) - hdr)
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
	return
}

// decodeTimespec reads a struct timespec of two native longs.
func decodeTimespec(b []byte) time.Time {
	half := timespecSize / 2
	if half == 8 {
		return time.Unix(int64(binary.NativeEndian.Uint64(b[0:8])), int64(binary.NativeEndian.Uint64(b[8:16])))
	}
	return time.Unix(int64(int32(binary.NativeEndian.Uint32(b[0:4]))), int64(int32(binary.NativeEndian.Uint32(b[4:8]))))
}

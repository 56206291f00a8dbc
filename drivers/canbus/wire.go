package canbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Wire format of the stream bridge (Serve/Dial), version 1. On connect,
// both sides first send the 8-byte hello "tcuCANv1" and check the peer's;
// then each frame is one record:
//
//	u8   size   number of bytes that follow: wireHeader + len
//	u8   flags  bit 0 extended id, bit 1 CAN FD; other bits must be zero
//	u32  id     big-endian
//	i64  time   big-endian unix nanoseconds; 0 means no timestamp
//	u8   len    payload length (0..8 classic, CAN FD lengths up to 64)
//	[len]data
//
// The record is self-delimiting, so a reader never needs more than
// MaxWireLen bytes of buffer.
const (
	wireHeader  = 1 + 4 + 8 + 1
	flagExt     = 1 << 0
	flagFD      = 1 << 1
	knownFlags  = flagExt | flagFD
	MaxWireLen  = 1 + wireHeader + MaxFDLen // MaxWireLen is the longest wire record.
	minWireSize = wireHeader
)

// wireHello opens every bridge connection in both directions.
const wireHello = "tcuCANv1"

// helloTimeout bounds the handshake.
const helloTimeout = 5 * time.Second

// handshake exchanges hellos on c within timeout.
func handshake(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetDeadline(noDeadline) }()
	if _, err := io.WriteString(c, wireHello); err != nil {
		return fmt.Errorf("can bridge hello: %w", err)
	}
	var got [len(wireHello)]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("can bridge hello: %w", err)
	}
	if string(got[:]) != wireHello {
		return fmt.Errorf("%w: peer is not a tcu-agent virtual can bus (hello %q)", ErrBadWire, got[:])
	}
	return nil
}

// ErrShortWire means the buffer ends before the record does; read more.
var ErrShortWire = errors.New("short can wire record")

// ErrBadWire classifies malformed wire records. The stream cannot be
// resynchronised after one; the connection is dropped.
var ErrBadWire = errors.New("malformed can wire record")

// AppendWire appends f's wire record to dst.
func AppendWire(dst []byte, f *Frame) []byte {
	var flags byte
	if f.Extended {
		flags |= flagExt
	}
	if f.FD {
		flags |= flagFD
	}
	var ts int64
	if !f.Time.IsZero() {
		ts = f.Time.UnixNano()
	}
	dst = append(dst, byte(wireHeader+int(f.Len)), flags)
	dst = binary.BigEndian.AppendUint32(dst, f.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = append(dst, f.Len)
	return append(dst, f.Data[:f.Len]...)
}

// DecodeWire decodes the wire record at the start of b into f and returns
// the number of bytes consumed. It returns ErrShortWire when b holds only
// part of a record and an error wrapping ErrBadWire (or ErrInvalidFrame)
// when the record is malformed.
func DecodeWire(b []byte, f *Frame) (int, error) {
	if len(b) < 1 {
		return 0, ErrShortWire
	}
	size := int(b[0])
	if size < minWireSize || size > wireHeader+MaxFDLen {
		return 0, fmt.Errorf("%w: record size %d", ErrBadWire, size)
	}
	if len(b) < 1+size {
		return 0, ErrShortWire
	}
	r := b[1 : 1+size]
	flags := r[0]
	if flags&^knownFlags != 0 {
		return 0, fmt.Errorf("%w: unknown flags %#x", ErrBadWire, flags)
	}
	n := int(r[13])
	if wireHeader+n != size {
		return 0, fmt.Errorf("%w: payload length %d does not match record size %d", ErrBadWire, n, size)
	}
	*f = Frame{
		ID:       binary.BigEndian.Uint32(r[1:5]),
		Extended: flags&flagExt != 0,
		FD:       flags&flagFD != 0,
		Len:      uint8(n),
	}
	copy(f.Data[:], r[wireHeader:])
	if ts := int64(binary.BigEndian.Uint64(r[5:13])); ts != 0 {
		f.Time = time.Unix(0, ts)
	}
	if err := f.Validate(); err != nil {
		return 0, err
	}
	return 1 + size, nil
}

var noDeadline time.Time

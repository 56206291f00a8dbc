package socketcan

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// Sizes of the kernel's struct can_frame and struct canfd_frame.
const (
	classicMTU = 16 // CAN_MTU
	fdMTU      = 72 // CANFD_MTU
)

// Flags in the can_id word of struct can_frame (linux/can.h).
const (
	flagEFF = 0x80000000 // extended frame format
	flagRTR = 0x40000000 // remote transmission request
	flagERR = 0x20000000 // error frame
	maskEFF = 0x1FFFFFFF
	maskSFF = 0x7FF
)

// fdFlagFDF marks a CAN FD frame in canfd_frame.flags (Linux ≥ 5.14 sets it).
const fdFlagFDF = 0x04

// errSkip marks a frame that is valid on the wire but not delivered
// (remote frames: canbus.Frame has no RTR bit).
var errSkip = errors.New("frame skipped")

// encodeFrame writes f as the kernel's can_frame (classic) or canfd_frame
// (FD) into b (at least fdMTU bytes) and returns the bytes to write.
// The can_id word is in host byte order.
func encodeFrame(b []byte, f *canbus.Frame) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	n := classicMTU
	if f.FD {
		n = fdMTU
	}
	b = b[:n]
	clear(b)
	id := f.ID
	if f.Extended {
		id |= flagEFF
	}
	binary.NativeEndian.PutUint32(b[0:4], id)
	b[4] = f.Len
	if f.FD {
		b[5] = fdFlagFDF
	}
	copy(b[8:], f.Data[:f.Len])
	return b, nil
}

// decodeFrame parses a can_frame or canfd_frame as read from a CAN_RAW
// socket. It returns isErr for error frames (their content in ef) and
// errSkip for remote frames.
func decodeFrame(b []byte, f *canbus.Frame, ef *errorFrame) (isErr bool, err error) {
	if len(b) != classicMTU && len(b) != fdMTU {
		return false, fmt.Errorf("%w: %d bytes is neither can_frame nor canfd_frame", canbus.ErrInvalidFrame, len(b))
	}
	id := binary.NativeEndian.Uint32(b[0:4])
	if id&flagERR != 0 {
		if len(b) != classicMTU {
			return false, fmt.Errorf("%w: error frame of %d bytes", canbus.ErrInvalidFrame, len(b))
		}
		ef.class = id & maskEFF // CAN_ERR_MASK
		copy(ef.data[:], b[8:16])
		return true, nil
	}
	if id&flagRTR != 0 {
		return false, errSkip
	}
	*f = canbus.Frame{Extended: id&flagEFF != 0, FD: len(b) == fdMTU, Len: b[4]}
	if f.Extended {
		f.ID = id & maskEFF
	} else {
		f.ID = id & maskSFF
	}
	max := canbus.MaxClassicLen
	if f.FD {
		max = canbus.MaxFDLen
	}
	if int(f.Len) > max {
		return false, fmt.Errorf("%w: length %d exceeds %d", canbus.ErrInvalidFrame, f.Len, max)
	}
	copy(f.Data[:f.Len], b[8:])
	return false, nil
}

// nextState returns the controller state after error frame ef, given the
// previous state, and the error counters when the frame carries them.
func nextState(prev State, ef *errorFrame) (s State, tx, rx uint8, counters bool) {
	ctrl := ef.data[1]
	s = prev
	switch {
	case ef.has(errClassBusOff):
		s = StateBusOff
	case ef.has(errClassRestarted):
		s = StateActive
	case ef.has(errClassCtrl):
		switch {
		case ctrl&(ctrlRxPassive|ctrlTxPassive) != 0:
			s = StatePassive
		case ctrl&(ctrlRxWarning|ctrlTxWarning) != 0:
			s = StateWarning
		case ctrl&ctrlActive != 0:
			s = StateActive
		}
	}
	tx, rx, counters = ef.counters()
	return s, tx, rx, counters
}

package socketcan

import (
	"encoding/binary"
	"errors"
	"fmt"

	einride "go.einride.tech/can/pkg/socketcan"

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

// errCountersClass is CAN_ERR_CNT: data[6] and data[7] hold the TX and RX
// error counters.
const errCountersClass = 0x200

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
func decodeFrame(b []byte, f *canbus.Frame, ef *einride.ErrorFrame) (isErr bool, err error) {
	if len(b) != classicMTU && len(b) != fdMTU {
		return false, fmt.Errorf("%w: %d bytes is neither can_frame nor canfd_frame", canbus.ErrInvalidFrame, len(b))
	}
	id := binary.NativeEndian.Uint32(b[0:4])
	if id&flagERR != 0 {
		if len(b) != classicMTU {
			return false, fmt.Errorf("%w: error frame of %d bytes", canbus.ErrInvalidFrame, len(b))
		}
		var raw einride.Frame
		var le [classicMTU]byte // einride decodes little-endian
		copy(le[:], b)
		binary.LittleEndian.PutUint32(le[0:4], id)
		raw.UnmarshalBinary(le[:])
		*ef = raw.DecodeErrorFrame()
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
func nextState(prev State, ef *einride.ErrorFrame) (s State, tx, rx uint8, counters bool) {
	class := ef.ErrorClass
	ctrl := ef.ControllerError
	s = prev
	switch {
	case class&einride.ErrorClassBusOff != 0:
		s = StateBusOff
	case class&einride.ErrorClassRestarted != 0:
		s = StateActive
	case class&einride.ErrorClassController != 0:
		switch {
		case ctrl&(einride.ControllerErrorRxPassive|einride.ControllerErrorTxPassive) != 0:
			s = StatePassive
		case ctrl&(einride.ControllerErrorRxWarning|einride.ControllerErrorTxWarning) != 0:
			s = StateWarning
		case ctrl&einride.ControllerErrorActive != 0:
			s = StateActive
		}
	}
	if class&errCountersClass != 0 {
		info := ef.ControllerSpecificInformation // data[5..7]
		return s, info[1], info[2], true
	}
	return s, 0, 0, false
}

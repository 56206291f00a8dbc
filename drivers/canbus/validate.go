package canbus

import (
	"errors"
	"fmt"
)

// Limits of CAN identifiers and payloads.
const (
	// MaxStandardID is the largest 11-bit identifier.
	MaxStandardID = 0x7FF
	// MaxExtendedID is the largest 29-bit identifier.
	MaxExtendedID = 0x1FFFFFFF
	// MaxClassicLen is the payload limit of a classic CAN frame.
	MaxClassicLen = 8
	// MaxFDLen is the payload limit of a CAN FD frame.
	MaxFDLen = 64
)

// ErrInvalidFrame classifies frames whose identifier or length is out of
// range.
var ErrInvalidFrame = errors.New("invalid can frame")

// fdLens are the payload lengths a CAN FD frame can carry (its DLC codes).
var fdLens = [...]bool{
	0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true,
	12: true, 16: true, 20: true, 24: true, 32: true, 48: true, 64: true,
}

// Validate reports whether f's identifier fits its format and its length
// is one a CAN (FD) frame can carry.
func (f *Frame) Validate() error {
	switch {
	case f.Extended && f.ID > MaxExtendedID:
		return fmt.Errorf("%w: extended id %#x exceeds 29 bits", ErrInvalidFrame, f.ID)
	case !f.Extended && f.ID > MaxStandardID:
		return fmt.Errorf("%w: standard id %#x exceeds 11 bits", ErrInvalidFrame, f.ID)
	case !f.FD && f.Len > MaxClassicLen:
		return fmt.Errorf("%w: classic frame length %d exceeds 8", ErrInvalidFrame, f.Len)
	case f.FD && (int(f.Len) >= len(fdLens) || !fdLens[f.Len]):
		return fmt.Errorf("%w: fd frame length %d is not a valid fd length", ErrInvalidFrame, f.Len)
	}
	return nil
}

// Package canbus holds the CAN frame type shared by every CAN transport and
// decoder in tcu-agent, the Bus interface the transports implement, and the
// in-process virtual bus used by the simulator and by tests.
package canbus

import (
	"context"
	"time"
)

// Frame is one classic CAN or CAN FD frame.
type Frame struct {
	// ID is the 11-bit (standard) or 29-bit (extended) identifier.
	ID uint32
	// Extended marks a 29-bit identifier.
	Extended bool
	// FD marks a CAN FD frame (up to 64 data bytes).
	FD bool
	// Len is the number of valid bytes in Data (0..8 classic, 0..64 FD).
	Len uint8
	// Data is the payload; bytes past Len are zero.
	Data [64]byte
	// Time is the receive timestamp (kernel time where available).
	Time time.Time
}

// Payload returns the valid bytes of the frame's data.
func (f *Frame) Payload() []byte { return f.Data[:f.Len] }

// A Bus is one CAN bus a process is attached to.
type Bus interface {
	// Send transmits one frame; it honours ctx's deadline.
	Send(ctx context.Context, f Frame) error
	// Receive blocks until a frame arrives, ctx is done or the bus is
	// closed (then it returns an error wrapping net.ErrClosed).
	Receive(ctx context.Context) (Frame, error)
	// Close releases the bus; a blocked Receive returns.
	Close() error
}

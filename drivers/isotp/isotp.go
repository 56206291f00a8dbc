// Package isotp implements the ISO 15765-2 transport protocol (ISO-TP) on
// raw classic CAN frames, as ISO 15765-4 (OBD-II on CAN) uses it: single
// frames, first and consecutive frames with flow control, block size and
// separation time (STmin). It is a pure protocol layer: Receiver
// reassembles the frames of one sender, Transmit segments a message and
// paces it by the receiver's flow control; the caller moves frames.
//
// Frames are always 8 bytes (ISO 15765-4 requires DLC 8); unused bytes are
// padded with Pad. Normal addressing only (no extended/mixed address byte).
package isotp

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Protocol control information: the high nibble of byte 0.
const (
	pciSingle      = 0x0
	pciFirst       = 0x1
	pciConsecutive = 0x2
	pciFlow        = 0x3
)

// Flow status of a flow control frame.
const (
	FlowContinue = 0 // clear to send
	FlowWait     = 1 // wait for another flow control frame
	FlowOverflow = 2 // the message is too long for the receiver: abort
)

// Limits.
const (
	// FrameLen is the data length of every frame (ISO 15765-4: DLC 8).
	FrameLen = 8
	// MaxSingle is the longest payload of a single frame.
	MaxSingle = 7
	// MaxLen is the longest message a 12-bit first-frame length carries.
	MaxLen = 4095
	// Pad fills unused bytes.
	Pad = 0xCC
	// MaxWaits is how many FlowWait frames a sender accepts in a row
	// (N_WFTmax) before giving up.
	MaxWaits = 10
)

// Errors. Reassembly and transmit errors wrap ErrProtocol.
var (
	ErrProtocol = errors.New("iso-tp protocol error")
	ErrOverflow = errors.New("iso-tp receiver overflow")
	ErrTimeout  = errors.New("iso-tp flow control timeout")
)

// A Frame is the 8 data bytes of one CAN frame.
type Frame = [FrameLen]byte

func padded(b []byte) Frame {
	var f Frame
	for i := range f {
		f[i] = Pad
	}
	copy(f[:], b)
	return f
}

// Single returns the single frame carrying payload (1..7 bytes).
func Single(payload []byte) (Frame, error) {
	if len(payload) == 0 || len(payload) > MaxSingle {
		return Frame{}, fmt.Errorf("%w: single frame of %d bytes", ErrProtocol, len(payload))
	}
	return padded(append([]byte{byte(len(payload))}, payload...)), nil
}

// FlowControl returns a flow control frame.
func FlowControl(status, blockSize int, stmin byte) Frame {
	return padded([]byte{pciFlow<<4 | byte(status&0x0F), byte(blockSize), stmin})
}

// STmin encodes a separation time as a flow control byte: 0..127 ms, or
// 100..900 µs in steps of 100 µs.
func STmin(d time.Duration) byte {
	switch {
	case d <= 0:
		return 0
	case d < time.Millisecond:
		return 0xF0 + byte(max(d/(100*time.Microsecond), 1))
	case d > 127*time.Millisecond:
		return 127
	}
	return byte(d / time.Millisecond)
}

// SeparationTime decodes a flow control STmin byte; reserved values mean
// the longest time, 127 ms (ISO 15765-2).
func SeparationTime(b byte) time.Duration {
	switch {
	case b <= 0x7F:
		return time.Duration(b) * time.Millisecond
	case b >= 0xF1 && b <= 0xF9:
		return time.Duration(b-0xF0) * 100 * time.Microsecond
	}
	return 127 * time.Millisecond
}

// Flow is a decoded flow control frame.
type Flow struct {
	Status    int
	BlockSize int // 0: send everything without further flow control
	STmin     time.Duration
}

// ParseFlow decodes a flow control frame (ok false: not one).
func ParseFlow(data []byte) (Flow, bool) {
	if len(data) < 3 || data[0]>>4 != pciFlow {
		return Flow{}, false
	}
	st := int(data[0] & 0x0F)
	if st > FlowOverflow {
		return Flow{}, false
	}
	return Flow{Status: st, BlockSize: int(data[1]), STmin: SeparationTime(data[2])}, true
}

// Receiver reassembles the frames of one sender (one CAN identifier). The
// zero value accepts messages up to MaxLen bytes.
type Receiver struct {
	// Limit, if > 0, is the longest message accepted; a longer first
	// frame is answered with FlowOverflow.
	Limit int
	// BlockSize, if > 0, is the block size this receiver announces in its
	// flow control: Feed asks for another flow control frame after every
	// BlockSize consecutive frames.
	BlockSize int
	block     int
	buf       []byte
	want      int
	seq       byte
	busy      bool
}

// Result tells the caller what to do after Feed.
type Result int

// Results of Feed.
const (
	Nothing  Result = iota // frame consumed, message incomplete
	Complete               // a message is complete (Feed returned it)
	SendFlow               // a first frame or a full block arrived: send flow control (continue)
	Abort                  // a first frame too long: send flow control (overflow)
)

// Busy reports whether a multi-frame message is being reassembled.
func (r *Receiver) Busy() bool { return r.busy }

// Reset drops a message in progress (after a timeout).
func (r *Receiver) Reset() { r.busy, r.buf, r.want = false, r.buf[:0], 0 }

// Feed takes the data of one received frame. It returns the message when
// one is complete (valid until the next Feed). Flow control frames are not
// for the Receiver (they answer the caller's own transmissions): Feed
// ignores them. A malformed frame returns an error wrapping ErrProtocol and
// drops the message in progress; a single or first frame always starts a
// new message (ISO 15765-2: it replaces an unfinished one).
func (r *Receiver) Feed(data []byte) ([]byte, Result, error) {
	if len(data) == 0 {
		return nil, Nothing, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	switch data[0] >> 4 {
	case pciSingle:
		r.Reset()
		n := int(data[0] & 0x0F)
		if n == 0 || n > MaxSingle || n > len(data)-1 {
			return nil, Nothing, fmt.Errorf("%w: single frame length %d in %d bytes", ErrProtocol, n, len(data))
		}
		r.buf = append(r.buf[:0], data[1:1+n]...)
		return r.buf, Complete, nil
	case pciFirst:
		r.Reset()
		if len(data) < FrameLen {
			return nil, Nothing, fmt.Errorf("%w: first frame of %d bytes", ErrProtocol, len(data))
		}
		n := int(data[0]&0x0F)<<8 | int(data[1])
		if n <= MaxSingle {
			return nil, Nothing, fmt.Errorf("%w: first frame announces %d bytes", ErrProtocol, n)
		}
		if n > r.limit() {
			return nil, Abort, fmt.Errorf("%w: %d bytes, limit %d", ErrOverflow, n, r.limit())
		}
		r.busy, r.want, r.seq, r.block = true, n, 1, 0
		r.buf = append(r.buf[:0], data[2:FrameLen]...)
		return nil, SendFlow, nil
	case pciConsecutive:
		if !r.busy {
			return nil, Nothing, fmt.Errorf("%w: consecutive frame without a first frame", ErrProtocol)
		}
		if sn := data[0] & 0x0F; sn != r.seq {
			r.Reset()
			return nil, Nothing, fmt.Errorf("%w: consecutive frame %d, want %d", ErrProtocol, sn, r.seq)
		}
		r.seq = (r.seq + 1) & 0x0F
		need := r.want - len(r.buf)
		chunk := data[1:]
		if len(chunk) > need {
			chunk = chunk[:need]
		}
		r.buf = append(r.buf, chunk...)
		if len(r.buf) < r.want {
			if r.block++; r.BlockSize > 0 && r.block >= r.BlockSize {
				r.block = 0
				return nil, SendFlow, nil
			}
			return nil, Nothing, nil
		}
		r.busy = false
		return r.buf, Complete, nil
	case pciFlow:
		return nil, Nothing, nil
	}
	r.Reset()
	return nil, Nothing, fmt.Errorf("%w: frame type %#x", ErrProtocol, data[0]>>4)
}

func (r *Receiver) limit() int {
	if r.Limit > 0 && r.Limit < MaxLen {
		return r.Limit
	}
	return MaxLen
}

// A Link moves the frames of one ISO-TP connection for Transmit: Send puts
// a frame on the bus; Flow waits for the peer's next flow control frame
// (the caller routes frames from the peer's identifier to it).
type Link interface {
	Send(ctx context.Context, f Frame) error
	Flow(ctx context.Context, timeout time.Duration) (Flow, error)
}

// FlowTimeout is N_Bs, how long a sender waits for flow control.
const FlowTimeout = time.Second

// Transmit sends payload (1..MaxLen bytes) over l: a single frame, or a
// first frame and consecutive frames paced by the receiver's flow control
// (block size, STmin, wait frames, overflow). STmin is honoured by
// sleeping between consecutive frames.
func Transmit(ctx context.Context, l Link, payload []byte) error {
	if len(payload) <= MaxSingle {
		f, err := Single(payload)
		if err != nil {
			return err
		}
		return l.Send(ctx, f)
	}
	if len(payload) > MaxLen {
		return fmt.Errorf("%w: message of %d bytes", ErrProtocol, len(payload))
	}
	first := padded(append([]byte{pciFirst<<4 | byte(len(payload)>>8), byte(len(payload))}, payload[:6]...))
	if err := l.Send(ctx, first); err != nil {
		return err
	}
	rest := payload[6:]
	seq := byte(1)
	for len(rest) > 0 {
		fc, err := waitFlow(ctx, l)
		if err != nil {
			return err
		}
		for sent := 0; len(rest) > 0 && (fc.BlockSize == 0 || sent < fc.BlockSize); sent++ {
			if fc.STmin > 0 {
				t := time.NewTimer(fc.STmin)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
			n := min(len(rest), FrameLen-1)
			if err := l.Send(ctx, padded(append([]byte{pciConsecutive<<4 | seq}, rest[:n]...))); err != nil {
				return err
			}
			rest = rest[n:]
			seq = (seq + 1) & 0x0F
		}
	}
	return nil
}

// waitFlow returns the next clear-to-send flow control, after at most
// MaxWaits wait frames.
func waitFlow(ctx context.Context, l Link) (Flow, error) {
	for range MaxWaits + 1 {
		fc, err := l.Flow(ctx, FlowTimeout)
		if err != nil {
			return Flow{}, err
		}
		switch fc.Status {
		case FlowContinue:
			return fc, nil
		case FlowOverflow:
			return Flow{}, fmt.Errorf("transmit: %w", ErrOverflow)
		}
	}
	return Flow{}, fmt.Errorf("%w: more than %d wait frames", ErrProtocol, MaxWaits)
}

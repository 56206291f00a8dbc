// Package socketcan attaches tcu-agent to a Linux SocketCAN interface
// (can0, vcan0, ...) through a CAN_RAW socket.
//
// A Conn implements canbus.Bus: classic and CAN FD frames, standard and
// extended identifiers, kernel receive timestamps (SO_TIMESTAMPNS), kernel
// drop counting (SO_RXQ_OVFL), a large receive buffer (SO_RCVBUF) and
// controller error frames (CAN_RAW_ERR_FILTER) decoded into the bus state
// (error-active, warning, error-passive, bus-off).
//
// Open returns an error wrapping drivers.ErrNotReady when the interface is
// absent or down, and Receive/Send do the same when it goes away while
// open, so a caller can reopen with backoff. Reopener does exactly that and
// is itself a canbus.Bus that survives an interface going down or
// disappearing and coming back.
//
// On systems other than Linux, Open returns an error wrapping
// errors.ErrUnsupported.
package socketcan

import (
	"log/slog"
)

// Options configure a Conn.
type Options struct {
	// RcvBuf is the socket receive buffer in bytes (SO_RCVBUF; as root
	// SO_RCVBUFFORCE, above net.core.rmem_max). 0 keeps DefaultRcvBuf;
	// negative keeps the kernel default.
	RcvBuf int
	// FD enables CAN FD frames (CAN_RAW_FD_FRAMES).
	FD bool
	// ErrorFrames subscribes to controller error frames
	// (CAN_RAW_ERR_FILTER = CAN_ERR_MASK); they update State and Stats and
	// are never returned by Receive.
	ErrorFrames bool
	// OnState, if set, is called (from the receiving goroutine) when an
	// error frame changes the bus state. It must not block.
	OnState func(iface string, from, to State)
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
}

// DefaultRcvBuf is the receive buffer used when Options.RcvBuf is 0: about
// 4 s of a fully loaded 1 Mbit/s bus at the kernel's per-frame overhead.
const DefaultRcvBuf = 4 << 20

// State is the error state of the CAN controller as reported by error
// frames. Interfaces without error reporting (vcan) stay StateActive.
type State int32

// Controller states, in increasing severity.
const (
	StateActive  State = iota // error-active: normal operation
	StateWarning              // an error counter reached 96
	StatePassive              // an error counter exceeded 127
	StateBusOff               // the controller left the bus
)

// String returns the state's lower-case name.
func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateWarning:
		return "warning"
	case StatePassive:
		return "passive"
	case StateBusOff:
		return "bus-off"
	}
	return "unknown"
}

// Stats are a Conn's counters since Open.
type Stats struct {
	// RxFrames and TxFrames count data frames received and sent.
	RxFrames, TxFrames uint64
	// Drops is the kernel's count of frames dropped for this socket
	// because its receive queue was full (SO_RXQ_OVFL). The kernel reports
	// it with the next frame that is received, so it lags by one frame.
	Drops uint64
	// ErrorFrames counts controller error frames received.
	ErrorFrames uint64
	// BusOffs counts transitions into StateBusOff.
	BusOffs uint64
	// State is the current controller state.
	State State
	// TxErrors and RxErrors are the controller's error counters from the
	// last error frame that carried them (CAN_ERR_CNT).
	TxErrors, RxErrors uint8
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

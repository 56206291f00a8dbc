//go:build !linux

package socketcan

import (
	"context"
	"errors"
	"fmt"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// Conn is a SocketCAN connection; on this system it cannot be opened.
type Conn struct{}

var _ canbus.Bus = (*Conn)(nil)

// errUnsupported is returned by everything on systems without SocketCAN.
var errUnsupported = fmt.Errorf("socketcan: %w on this system", errors.ErrUnsupported)

// Open always fails with an error wrapping errors.ErrUnsupported.
func Open(iface string, opts Options) (*Conn, error) {
	return nil, fmt.Errorf("open %s: %w", iface, errUnsupported)
}

// Iface returns "".
func (c *Conn) Iface() string { return "" }

// Receive fails with errors.ErrUnsupported.
func (c *Conn) Receive(context.Context) (canbus.Frame, error) {
	return canbus.Frame{}, errUnsupported
}

// Send fails with errors.ErrUnsupported.
func (c *Conn) Send(context.Context, canbus.Frame) error { return errUnsupported }

// Close does nothing.
func (c *Conn) Close() error { return nil }

// State returns StateActive.
func (c *Conn) State() State { return StateActive }

// Dropped returns 0.
func (c *Conn) Dropped() uint64 { return 0 }

// Stats returns zero counters.
func (c *Conn) Stats() Stats { return Stats{} }

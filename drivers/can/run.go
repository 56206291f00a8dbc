package can

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// Run opens the transport and decodes frames until ctx is done. It returns
// an error wrapping drivers.ErrNotReady when the bus is absent.
func (d *Driver) Run(ctx context.Context, sink drivers.Sink) error {
	if d.dec == nil {
		return &drivers.FatalError{Err: fmt.Errorf("can driver %s: run before init", d.params.Name)}
	}
	bus, err := d.open(ctx)
	if err != nil {
		return err
	}
	d.bus.Store(&busRef{bus})
	defer func() {
		d.bus.Store(nil)
		_ = bus.Close()
		d.drops.Add(dropped(bus))
		if c, ok := bus.(interface{ Stats() socketcan.Stats }); ok {
			st := c.Stats()
			d.errFrames.Add(st.ErrorFrames)
			d.busOffs.Add(st.BusOffs)
		}
	}()
	// Closing the bus unblocks Receive on cancel.
	stop := context.AfterFunc(ctx, func() { _ = bus.Close() })
	defer stop()
	for {
		f, err := bus.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if gone(err) {
				err = fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
			}
			return fmt.Errorf("receive %s: %w", d.where(), err)
		}
		d.dec.Decode(&f, sink)
	}
}

// gone reports whether err means the bus went away (tcu-sim stopped): the
// agent then retries as for an absent device.
func gone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (d *Driver) where() string {
	if d.Transport == TransportVBus {
		return "vbus " + d.Address
	}
	return d.Interface
}

func (d *Driver) open(ctx context.Context) (canbus.Bus, error) {
	if d.Open != nil {
		return d.Open(ctx)
	}
	switch d.Transport {
	case TransportVBus:
		c, err := canbus.Dial(ctx, d.Address)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
				return nil, fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
			}
			return nil, err
		}
		return c, nil
	default:
		return openSocketCAN(ctx, d.Interface, d.socketOptions())
	}
}

// Transmit encodes signals through the DBC message and sends one frame on
// the bus Run has open. Signals not named are raw 0. It returns an error
// wrapping drivers.ErrNotReady when Run is not running (or the bus went
// away) and one wrapping a dbc error when the message or a value is bad.
func (d *Driver) Transmit(ctx context.Context, message string, signals map[string]float64) error {
	if d.db == nil {
		return fmt.Errorf("transmit %s: driver not initialised", message)
	}
	m, ok := d.db.Message(message)
	if !ok {
		return fmt.Errorf("transmit %s: %w", message, dbc.ErrNotFound)
	}
	data, err := m.Encode(signals)
	if err != nil {
		return fmt.Errorf("transmit: %w", err)
	}
	// FD when the DBC says so (VFrameFormat) or the payload needs it.
	f := canbus.Frame{ID: m.ID, Extended: m.Extended, FD: m.FD || len(data) > canbus.MaxClassicLen}
	f.Len = uint8(copy(f.Data[:], data))
	if f.FD {
		f.Len = fdLen(f.Len)
	}
	r := d.bus.Load()
	if r == nil {
		d.txErrors.Add(1)
		return fmt.Errorf("transmit %s on %s: %w: bus not open", message, d.where(), drivers.ErrNotReady)
	}
	if err := r.Send(ctx, f); err != nil {
		d.txErrors.Add(1)
		if errors.Is(err, net.ErrClosed) {
			err = fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
		}
		return fmt.Errorf("transmit %s on %s: %w", message, d.where(), err)
	}
	d.txFrames.Add(1)
	return nil
}

// fdLen rounds n up to a payload length a CAN FD frame can carry.
func fdLen(n uint8) uint8 {
	for _, l := range []uint8{8, 12, 16, 20, 24, 32, 48, 64} {
		if n <= l {
			return l
		}
	}
	return canbus.MaxFDLen
}

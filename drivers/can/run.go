package can

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// Run attaches to the bus and decodes frames until ctx is done. A bus that
// is absent or goes away (tcu-sim restarting, an interface going down) is
// not an error: Run reconnects with a short capped backoff (see
// canbus.Redialer and socketcan.Reopener), so frames flow and Transmit
// works again within a second of the bus returning, without the agent's
// driver restart backoff. Run returns an error only when reconnecting
// cannot help.
func (d *Driver) Run(ctx context.Context, sink drivers.Sink) error {
	if d.dec == nil {
		return &drivers.FatalError{Err: fmt.Errorf("can driver %s: run before init", d.params.Name)}
	}
	bus := d.attach()
	d.bus.Store(&busRef{bus})
	defer func() {
		d.bus.Store(nil)
		_ = bus.Close()
		d.drops.Add(dropped(bus))
		d.reconnects.Add(max(opens(bus), 1) - 1)
		if c, ok := bus.(interface{ Stats() socketcan.Stats }); ok {
			st := c.Stats()
			d.errFrames.Add(st.ErrorFrames)
			d.busOffs.Add(st.BusOffs)
		}
	}()
	// Closing the bus unblocks Receive on cancel.
	stop := context.AfterFunc(ctx, func() { _ = bus.Close() })
	defer stop()
	fs := make([]canbus.Frame, rxBatch)
	for {
		n, err := canbus.ReceiveBatch(ctx, bus, fs)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errors.ErrUnsupported) {
				return &drivers.FatalError{Err: fmt.Errorf("receive %s: %w", d.where(), err)}
			}
			return fmt.Errorf("receive %s: %w", d.where(), err)
		}
		for i := range fs[:n] {
			d.dec.Decode(&fs[i], sink)
		}
	}
}

// rxBatch is how many frames Run takes from the transport per call.
const rxBatch = 64

// gone reports whether err means the bus went away (tcu-sim stopped, an
// interface went down): the bus is then reconnected.
func gone(err error) bool {
	return errors.Is(err, drivers.ErrNotReady) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

func (d *Driver) where() string {
	if d.Transport == TransportVBus {
		return "vbus " + d.Address
	}
	return d.Interface
}

// attach returns the self-reconnecting bus of the configured transport.
func (d *Driver) attach() canbus.Bus {
	if d.Open == nil && d.Transport == TransportSocketCAN {
		return socketcan.Reopen(d.Interface, d.socketOptions(), socketcan.Backoff{Min: canbus.RedialMin, Max: canbus.RedialMax})
	}
	dial := d.Open
	if dial == nil {
		dial = func(ctx context.Context) (canbus.Bus, error) { return canbus.Dial(ctx, d.Address) }
	}
	return canbus.NewRedialer(canbus.RedialOptions{Dial: dial, Lost: gone, Name: d.where(), Logger: d.log})
}

// ActuationQuiet is how long after each transmitted frame other drivers
// polling the same bus (the obd driver) hold their requests.
const ActuationQuiet = time.Second

// busKey names the bus for canbus.Quiet.
func (d *Driver) busKey() string {
	if d.Transport == TransportVBus {
		return canbus.BusKey(TransportVBus, d.Address)
	}
	return canbus.BusKey(TransportSocketCAN, d.Interface)
}

// TransmitWait bounds how long Transmit waits for a bus that is being
// reconnected (the caller's context may end the wait sooner).
const TransmitWait = 2 * time.Second

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
	// An actuation is under way: pollers of this bus (OBD-II) keep off it.
	canbus.Quiet(d.busKey(), ActuationQuiet)
	sctx, cancel := context.WithTimeout(ctx, TransmitWait)
	defer cancel()
	if err := r.Send(sctx, f); err != nil {
		d.txErrors.Add(1)
		if errors.Is(err, net.ErrClosed) || (ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)) || gone(err) {
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

// Package can is the "can" driver: it reads one CAN bus (a SocketCAN
// interface or a tcu-sim virtual bus), decodes frames through a DBC file
// loaded at run time, and emits the configured signals under stable names
// with a per-signal sampling policy (see drivers/canmap). It also sends
// actuation frames encoded through the same DBC (drivers.Transmitter).
package can

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// Kind is the driver kind this package registers.
const Kind = "can"

// Transports.
const (
	// TransportSocketCAN reads a Linux SocketCAN interface (Interface).
	TransportSocketCAN = "socketcan"
	// TransportVBus reads a tcu-sim virtual bus served on a unix socket
	// (Address).
	TransportVBus = "vbus"
)

func init() {
	drivers.Register(Kind, func(p drivers.Params) drivers.Driver { return New(p) })
}

// Driver is the "can" driver. Its exported fields are its config; the
// agent decodes the driver's TOML table into them before calling Init.
type Driver struct {
	// Transport is TransportSocketCAN (default) or TransportVBus.
	Transport string `toml:"transport"`
	// Interface is the SocketCAN interface (default "can0").
	Interface string `toml:"interface"`
	// Address is the virtual bus's unix socket path.
	Address string `toml:"address"`
	// DBC is the DBC file, relative to the config file's directory.
	DBC string `toml:"dbc"`
	// Unmapped is canmap.UnmappedDrop (default) or canmap.UnmappedEmit.
	Unmapped string `toml:"unmapped"`
	// Signals maps DBC signals to names and sampling policies.
	Signals []canmap.Signal `toml:"signal"`

	// Open, when set, replaces the transport: Run reads from the bus it
	// returns (in-process wiring and tests). It is not config.
	Open func(ctx context.Context) (canbus.Bus, error) `toml:"-"`

	params drivers.Params
	log    *slog.Logger
	db     *dbc.Database
	dec    *canmap.Decoder
	bus    atomic.Pointer[busRef] // the open bus while Run runs, for Transmit

	drops      atomic.Uint64 // of buses from earlier Runs
	reconnects atomic.Uint64 // of buses from earlier Runs
	txFrames   atomic.Uint64
	txErrors   atomic.Uint64
	// Error counters of SocketCAN connections from earlier Runs.
	errFrames atomic.Uint64
	busOffs   atomic.Uint64
}

type busRef struct{ canbus.Bus }

var (
	_ drivers.Driver      = (*Driver)(nil)
	_ drivers.Transmitter = (*Driver)(nil)
)

// New returns a driver with its defaults set.
func New(p drivers.Params) *Driver {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{
		Transport: TransportSocketCAN,
		Interface: "can0",
		Unmapped:  canmap.UnmappedDrop,
		params:    p,
		log:       log,
	}
}

// Init validates the config and loads the DBC file (its only I/O). Unknown
// "MESSAGE.Signal" sources and bad policies are errors naming the entry.
func (d *Driver) Init() error {
	switch d.Transport {
	case TransportSocketCAN:
		if d.Interface == "" {
			return fmt.Errorf("can driver %s: transport %q needs interface", d.params.Name, d.Transport)
		}
	case TransportVBus:
		if d.Address == "" && d.Open == nil {
			return fmt.Errorf("can driver %s: transport %q needs address", d.params.Name, d.Transport)
		}
	default:
		return fmt.Errorf("can driver %s: transport %q: want %q or %q",
			d.params.Name, d.Transport, TransportSocketCAN, TransportVBus)
	}
	db, dec, err := canmap.Load(d.log, d.params.ConfigDir, d.DBC,
		canmap.Options{Signals: d.Signals, Unmapped: d.Unmapped, Source: d.params.Name})
	if err != nil {
		return fmt.Errorf("can driver %s: %w", d.params.Name, err)
	}
	d.db, d.dec = db, dec
	return nil
}

// SetLogger replaces the logger given in Params (the agent builds drivers
// while loading config, before its logger is final). Call it before Run.
func (d *Driver) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Stats are the driver's counters since it was created.
type Stats struct {
	// Frames counts frames received.
	Frames uint64
	// DecodeErrors counts frames of DBC messages that failed to decode.
	DecodeErrors uint64
	// UnknownIDs counts frames whose identifier is not in the DBC.
	UnknownIDs uint64
	// Samples counts samples emitted.
	Samples uint64
	// Drops counts frames lost before the driver read them (virtual bus
	// queue or kernel socket queue overflow).
	Drops uint64
	// TxFrames and TxErrors count Transmit results.
	TxFrames, TxErrors uint64
	// ErrorFrames and BusOffs count controller error frames and bus-off
	// events of the open SocketCAN interface (zero for other transports).
	ErrorFrames, BusOffs uint64
	// Connected is 1 while Run has the bus open, else 0 (the bus is absent
	// or being reconnected, or Run is not running).
	Connected int
	// Reconnects counts connections opened after the first one of a Run
	// (summed over Runs).
	Reconnects uint64
}

// Stats returns the driver's counters. It is safe to call at any time
// after Init.
func (d *Driver) Stats() Stats {
	var ds canmap.Stats
	if d.dec != nil {
		ds = d.dec.Stats()
	}
	drops := d.drops.Load()
	var sc socketcan.Stats
	connected, reconnects := 0, d.reconnects.Load()
	if r := d.bus.Load(); r != nil {
		drops += dropped(r.Bus)
		if c, ok := r.Bus.(interface{ Stats() socketcan.Stats }); ok {
			sc = c.Stats()
		}
		if c, ok := r.Bus.(interface{ Connected() bool }); ok && c.Connected() {
			connected = 1
		}
		reconnects += max(opens(r.Bus), 1) - 1
	}
	return Stats{
		ErrorFrames:  d.errFrames.Load() + sc.ErrorFrames,
		BusOffs:      d.busOffs.Load() + sc.BusOffs,
		Frames:       ds.Frames,
		DecodeErrors: ds.DecodeErrors,
		UnknownIDs:   ds.UnknownIDs,
		Samples:      ds.Samples,
		Drops:        drops,
		TxFrames:     d.txFrames.Load(),
		TxErrors:     d.txErrors.Load(),
		Connected:    connected,
		Reconnects:   reconnects,
	}
}

// LastSeen returns when a mapped signal was last decoded (reported or
// not: the basis for staleness checks).
func (d *Driver) LastSeen(name string) (at time.Time, ok bool) {
	if d.dec == nil {
		return time.Time{}, false
	}
	return d.dec.LastSeen(name)
}

func dropped(b canbus.Bus) uint64 {
	if dc, ok := b.(canbus.DropCounter); ok {
		return dc.Dropped()
	}
	return 0
}

// opens returns how many connections a self-reconnecting bus has opened.
func opens(b canbus.Bus) uint64 {
	switch c := b.(type) {
	case *canbus.Redialer:
		return c.Dials()
	case *socketcan.Reopener:
		return c.Opens()
	}
	return 0
}

var _ drivers.LinkReporter = (*Driver)(nil)

// Link reports whether Run has the bus open and, if not, why.
func (d *Driver) Link() (up bool, lastErr string) {
	r := d.bus.Load()
	if r == nil {
		return false, "not running"
	}
	if c, ok := r.Bus.(interface{ Connected() bool }); ok && c.Connected() {
		return true, ""
	}
	if e, ok := r.Bus.(interface{ LastError() string }); ok && e.LastError() != "" {
		return false, e.LastError()
	}
	return false, "connecting to " + d.where()
}

// SetSampling overrides the sampling policy of matching signals at run
// time (vehicle-state profiles); nil restores the configured policies.
func (d *Driver) SetSampling(ov []canmap.Override) {
	if d.dec != nil {
		d.dec.SetOverrides(ov)
	}
}

// Package obd is the "obd" driver: it polls a vehicle's OBD-II ECUs over
// ISO 15765-4 (diagnostics on CAN; SocketCAN or a tcu-sim virtual bus)
// and emits the answers as samples with SAE J1979 scaling. It sends
// functional requests (0x7DF, or 0x18DB33F1 with 29-bit identifiers),
// reads the physical responses (0x7E8..0x7EF / 0x18DAF1xx), reassembles
// multi-frame answers with its own ISO-TP (drivers/isotp: flow control,
// block size, STmin), discovers the supported PIDs (0x00, 0x20, 0x40 ...),
// reads the VIN (mode 09 PID 02) and then polls the configured PIDs, each
// at its own interval.
//
// It is polite on the bus: one request in flight, a P2 timeout per
// request (P2* after "response pending"), a pause between requests, and
// exponential back-off while no ECU answers (ignition off, no OBD port),
// and no requests while the can driver actuates on the same bus (a remote
// command's frames; canbus.Quiet).
package obd

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
)

// Kind is the driver kind this package registers.
const Kind = "obd"

// Transports (as the "can" driver's).
const (
	TransportSocketCAN = "socketcan"
	TransportVBus      = "vbus"
)

// Addressing modes.
const (
	Addr11 = "11bit"
	Addr29 = "29bit"
)

// SignalVIN is the VIN signal: Label holds the 17 characters, Value is 0.
const SignalVIN = "Vehicle.VehicleIdentification.VIN"

// ISO 15765-4 identifiers.
const (
	funcID11     = 0x7DF
	respBase11   = 0x7E8 // .. 0x7EF; physical request = response - 8
	funcID29     = 0x18DB33F1
	respPrefix29 = 0x18DAF100 // | ECU address; physical request 0x18DA<ecu>F1
)

// Defaults.
const (
	DefaultP2       = 50 * time.Millisecond  // P2CAN
	DefaultP2Star   = 5 * time.Second        // P2*CAN, after NRC 0x78
	DefaultGap      = 10 * time.Millisecond  // pause between requests
	DefaultBackoff  = time.Minute            // longest pause while no ECU answers
	firstBackoff    = time.Second            // first pause after silentLimit silent requests
	silentLimit     = 3                      // silent requests in a row before backing off
	consecutiveWait = 150 * time.Millisecond // N_Cr for 11/29-bit OBD (ISO 15765-4)
)

func init() {
	drivers.Register(Kind, func(p drivers.Params) drivers.Driver { return New(p) })
}

// PIDConfig is one polled PID.
type PIDConfig struct {
	// PID is the mode 01 PID (e.g. 0x0D).
	PID int `toml:"pid"`
	// Interval is how often it is polled (default 1s).
	Interval canmap.Duration `toml:"interval"`
	// Name overrides the standard signal name.
	Name string `toml:"name"`
}

// Driver is the "obd" driver; its exported fields are its config.
type Driver struct {
	Transport string `toml:"transport"`
	Interface string `toml:"interface"`
	Address   string `toml:"address"`
	// Addressing is Addr11 (default) or Addr29.
	Addressing string `toml:"addressing"`
	// P2 is the response timeout per request (default 50ms, P2CAN).
	P2 canmap.Duration `toml:"p2_timeout"`
	// Gap is the pause after each request (default 10ms).
	Gap canmap.Duration `toml:"request_gap"`
	// BackoffMax bounds the pause while no ECU answers (default 1m).
	BackoffMax canmap.Duration `toml:"backoff_max"`
	// BlockSize and STmin go into the flow control the driver sends for
	// multi-frame answers (defaults 0: all frames, no separation).
	BlockSize int             `toml:"block_size"`
	STmin     canmap.Duration `toml:"stmin"`
	// ReadVIN reads the VIN (mode 09 PID 02) once per Run (default true).
	ReadVIN bool `toml:"vin"`
	// PIDs are the polled PIDs; empty means DefaultPIDs.
	PIDs []PIDConfig `toml:"pid"`

	params drivers.Params
	log    *slog.Logger
	polls  []poll

	vinMu   sync.Mutex
	vin     string // guarded by vinMu
	running atomic.Bool
	bus     atomic.Pointer[busRef] // the bus while Run runs (Link)
	noVIN   atomic.Bool            // the ECUs answered without a usable VIN

	requests, responses, timeouts, errs, samples atomic.Uint64
	backoffs, holds, sendErrs                    atomic.Uint64
	supported                                    atomic.Uint64 // PIDs found supported
	silent                                       atomic.Int32  // 1 while backing off
}

// DefaultPIDs are polled when no pid is configured.
var DefaultPIDs = []PIDConfig{
	{PID: 0x0D, Interval: canmap.Duration(time.Second)},
	{PID: 0x0C, Interval: canmap.Duration(time.Second)},
	{PID: 0x05, Interval: canmap.Duration(10 * time.Second)},
	{PID: 0x2F, Interval: canmap.Duration(10 * time.Second)},
	{PID: 0x42, Interval: canmap.Duration(10 * time.Second)},
	{PID: 0xA6, Interval: canmap.Duration(time.Minute)},
}

type poll struct {
	pid      byte
	name     string
	interval time.Duration
}

var _ drivers.Driver = (*Driver)(nil)

// New returns a driver with its defaults set.
func New(p drivers.Params) *Driver {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{
		Transport: TransportSocketCAN, Interface: "can0", Addressing: Addr11,
		P2: canmap.Duration(DefaultP2), Gap: canmap.Duration(DefaultGap), BackoffMax: canmap.Duration(DefaultBackoff),
		ReadVIN: true, params: p, log: log,
	}
}

// SetLogger replaces the logger (see the can driver).
func (d *Driver) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Init validates the configuration.
func (d *Driver) Init() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("obd driver %s: "+format, append([]any{d.params.Name}, args...)...)
	}
	switch d.Transport {
	case TransportSocketCAN:
		if d.Interface == "" {
			return fail("transport %q needs interface", d.Transport)
		}
	case TransportVBus:
		if d.Address == "" {
			return fail("transport %q needs address", d.Transport)
		}
	default:
		return fail("transport %q: want %q or %q", d.Transport, TransportSocketCAN, TransportVBus)
	}
	if d.Addressing != Addr11 && d.Addressing != Addr29 {
		return fail("addressing %q: want %q or %q", d.Addressing, Addr11, Addr29)
	}
	if d.P2.Std() <= 0 || d.P2.Std() > 5*time.Second {
		return fail("p2_timeout %v: want 1ms..5s", d.P2.Std())
	}
	if d.Gap.Std() < 0 || d.BackoffMax.Std() < firstBackoff {
		return fail("request_gap must be >= 0 and backoff_max >= %v", firstBackoff)
	}
	if d.BlockSize < 0 || d.BlockSize > 255 || d.STmin.Std() < 0 || d.STmin.Std() > 127*time.Millisecond {
		return fail("block_size 0..255 and stmin 0..127ms")
	}
	cfg := d.PIDs
	if len(cfg) == 0 {
		cfg = DefaultPIDs
	}
	d.polls = d.polls[:0]
	seen := map[int]bool{}
	for i, p := range cfg {
		info, ok := LookupPID(byte(p.PID))
		switch {
		case p.PID <= 0 || p.PID > 0xFF || p.PID%0x20 == 0:
			return fail("pid[%d]: %#x is not a data PID of mode 01", i, p.PID)
		case !ok:
			return fail("pid[%d]: %#02x has no standard scaling here", i, p.PID)
		case seen[p.PID]:
			return fail("pid[%d]: %#02x listed twice", i, p.PID)
		case p.Interval.Std() < 0:
			return fail("pid[%d]: interval %v < 0", i, p.Interval.Std())
		}
		seen[p.PID] = true
		iv := p.Interval.Std()
		if iv == 0 {
			iv = time.Second
		}
		name := info.Name
		if p.Name != "" {
			name = p.Name
		}
		d.polls = append(d.polls, poll{pid: byte(p.PID), name: name, interval: iv})
	}
	return nil
}

// VIN returns the vehicle identification number read from the ECUs, or ""
// before one was read.
func (d *Driver) VIN() string {
	d.vinMu.Lock()
	defer d.vinMu.Unlock()
	return d.vin
}

// VINPending reports whether a VIN is expected soon: the driver is
// configured to read it, is running, has not read it yet and its ECUs are
// not silent (ignition off). Provisioning waits a little for it.
func (d *Driver) VINPending() bool {
	return d.ReadVIN && d.running.Load() && d.VIN() == "" && d.silent.Load() == 0 && !d.noVIN.Load()
}

// Stats are the driver's counters.
type Stats struct {
	// Requests sent, Responses received (complete messages), Timeouts
	// (requests no ECU answered within P2), Errors (malformed answers,
	// negative responses, send failures).
	Requests, Responses, Timeouts, Errors uint64
	// Samples emitted.
	Samples uint64
	// Backoffs counts pauses entered because no ECU answered.
	Backoffs uint64
	// Supported is the number of mode 01 PIDs the ECUs report supported.
	Supported uint64
	// Silent is 1 while backing off.
	Silent int
	// Holds counts pauses for an actuation on the same bus.
	Holds uint64
	// SendErrors counts requests the bus refused (also in Errors).
	SendErrors uint64
}

// Stats returns the counters.
func (d *Driver) Stats() Stats {
	return Stats{
		Requests: d.requests.Load(), Responses: d.responses.Load(), Timeouts: d.timeouts.Load(),
		Errors: d.errs.Load(), Samples: d.samples.Load(), Backoffs: d.backoffs.Load(),
		Supported: d.supported.Load(), Silent: int(d.silent.Load()), Holds: d.holds.Load(),
		SendErrors: d.sendErrs.Load(),
	}
}

type busRef struct{ canbus.Bus }

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
	return false, "connecting"
}

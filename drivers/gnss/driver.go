// Package gnss reads a GNSS receiver's NMEA 0183 output from a serial
// port and emits position, speed, course, altitude, time and fix quality
// as samples.
//
// The parsing is pure and separate from I/O: ScanSentences splits a byte
// stream into candidate sentences (skipping binary noise and partial
// lines), ParseSentence verifies checksums, ParseGGA/RMC/GSA/VTG/GLL/GSV/
// ZDA decode fields for every talker (GP, GN, GL, GA, BD, GB, GQ...), and
// a Decoder merges the sentences of one epoch into a Fix the way gpsd
// does. The driver kind "gnss" gates fixes on mode and HDOP before
// emitting position samples, and exposes whether GNSS time is valid
// (ClockSynced) for consumers that need a trusted clock.
package gnss

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.bug.st/serial"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// Sample names emitted by the driver. Speed is in km/h like VSS's
// Vehicle.Speed; Timestamp is the GNSS UTC time in Unix seconds.
const (
	SignalLatitude  = "Vehicle.CurrentLocation.Latitude"
	SignalLongitude = "Vehicle.CurrentLocation.Longitude"
	SignalAltitude  = "Vehicle.CurrentLocation.Altitude"
	SignalHeading   = "Vehicle.CurrentLocation.Heading"
	SignalTimestamp = "Vehicle.CurrentLocation.Timestamp"
	SignalSpeed     = "Vehicle.Speed.GNSS"
	SignalFixType   = "Vehicle.CurrentLocation.GNSSReceiver.FixType"
	SignalSats      = "Vehicle.CurrentLocation.GNSSReceiver.Satellites"
	SignalHDOP      = "Vehicle.CurrentLocation.GNSSReceiver.HDOP"
	// SignalFixStatus is the fix status (Status: 0 no fix, 1 fix, 2 DGPS,
	// 3 RTK fixed, 4 RTK float, 5 dead reckoning, 6 GNSS+DR, 7 time
	// only, 8 simulated, 9 PPS) with its name as label, every epoch.
	SignalFixStatus = "Vehicle.CurrentLocation.GNSSReceiver.FixStatus"
)

// What to do with positions whose status is not a real measurement
// (simulated, no fix, time only): the invalid_fixes key.
const (
	InvalidDrop = "drop" // no position samples (default)
	InvalidFlag = "flag" // position samples, with the FixStatus sample saying what they are
)

// clockValidFor is how long a valid GNSS time keeps ClockSynced true
// without a newer one.
const clockValidFor = 10 * time.Second

func init() {
	drivers.Register("gnss", func(p drivers.Params) drivers.Driver { return New(p) })
}

// Driver is the "gnss" driver. Its exported fields are its configuration.
type Driver struct {
	// Device is the serial device, e.g. /dev/ttyUSB0 or /dev/serial0.
	Device string `toml:"device"`
	// Baud is the line speed (default 9600, the NMEA 0183 standard).
	Baud int `toml:"baud"`
	// MinFix is the weakest fix that yields position samples: "2d"
	// (default) or "3d".
	MinFix string `toml:"min_fix"`
	// MaxHDOP, when > 0, suppresses position samples from fixes whose
	// HDOP is larger or unknown.
	MaxHDOP float64 `toml:"max_hdop"`
	// InvalidFixes is InvalidDrop (default) or InvalidFlag: what to do
	// with positions from a receiver in simulator/demo mode or under a
	// no-fix status. They are never published as plain real positions.
	InvalidFixes string `toml:"invalid_fixes"`

	name    string
	log     *slog.Logger
	minMode Mode
	open    func(device string, baud int) (io.ReadCloser, error)
	now     func() time.Time
	clock   atomic.Pointer[clockReading]
	duty    atomic.Pointer[duty]
	dutyCh  chan struct{} // SetDutyCycle wakes Run

	sentences, rejected, fixes atomic.Uint64
}

// Stats are the driver's counters since it was created (all runs).
type Stats struct {
	// Frames counts NMEA sentences read with a valid checksum.
	Frames uint64
	// DecodeErrors counts sentences the decoder could not use.
	DecodeErrors uint64
	// Fixes counts fixes turned into samples.
	Fixes uint64
}

// Stats returns the counters.
func (d *Driver) Stats() Stats {
	return Stats{Frames: d.sentences.Load(), DecodeErrors: d.rejected.Load(), Fixes: d.fixes.Load()}
}

type clockReading struct {
	gnss  time.Time // GNSS UTC time of the fix
	local time.Time // local (monotonic) time it was received
}

var _ drivers.Driver = (*Driver)(nil)

// New returns a driver with its defaults.
func New(p drivers.Params) *Driver {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{Baud: 9600, MinFix: "2d", InvalidFixes: InvalidDrop, name: p.Name, log: log, open: openSerial, now: time.Now, dutyCh: make(chan struct{}, 1)}
}

// Init validates the configuration without touching the device.
func (d *Driver) Init() error {
	var errs []error
	if d.Device == "" {
		errs = append(errs, errors.New("device: required; the receiver's serial device, e.g. /dev/ttyUSB0"))
	}
	if d.Baud <= 0 {
		errs = append(errs, fmt.Errorf("baud: %d must be positive, e.g. 9600 or 115200", d.Baud))
	}
	switch strings.ToLower(d.MinFix) {
	case "2d":
		d.minMode = Mode2D
	case "3d":
		d.minMode = Mode3D
	default:
		errs = append(errs, fmt.Errorf("min_fix: %q not one of \"2d\", \"3d\"", d.MinFix))
	}
	if d.InvalidFixes != InvalidDrop && d.InvalidFixes != InvalidFlag {
		errs = append(errs, fmt.Errorf("invalid_fixes: %q not one of %q, %q", d.InvalidFixes, InvalidDrop, InvalidFlag))
	}
	if d.MaxHDOP < 0 {
		errs = append(errs, fmt.Errorf("max_hdop: %v must be ≥ 0 (0 disables the check)", d.MaxHDOP))
	}
	return errors.Join(errs...)
}

// openSerial opens a serial device; an absent device is ErrNotReady.
func openSerial(device string, baud int) (io.ReadCloser, error) {
	p, err := serial.Open(device, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		var pe *serial.PortError
		if errors.Is(err, fs.ErrNotExist) || (errors.As(err, &pe) && pe.Code() == serial.PortNotFound) {
			return nil, fmt.Errorf("open %s: %w: %w", device, drivers.ErrNotReady, err)
		}
		return nil, fmt.Errorf("open %s: %w", device, err)
	}
	return p, nil
}

// Run reads the receiver until ctx ends (then it returns nil). It returns
// an error wrapping drivers.ErrNotReady when the device is absent or goes
// away, so the agent reopens it with backoff. Under a duty cycle
// (SetDutyCycle) it opens the port once per period and reads it until the
// first usable fix or the window's end, then closes it.
func (d *Driver) Run(ctx context.Context, sink drivers.Sink) error {
	for {
		dc := d.dutyCycle()
		start := d.now()
		if err := d.read(ctx, sink, dc.window); err != nil || ctx.Err() != nil {
			return err
		}
		if dc.period <= 0 || d.dutyCycle() != dc {
			continue // the duty cycle changed while reading
		}
		wait := time.NewTimer(max(dc.period-d.now().Sub(start), 0))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil
		case <-d.dutyCh:
		case <-wait.C:
		}
		wait.Stop()
	}
}

// duty is a read duty cycle: at most window every period; zero period is
// continuous reading.
type duty struct{ window, period time.Duration }

// SetDutyCycle makes Run read the receiver for at most window (until its
// first usable fix) every period, the port closed in between; a zero
// period reads continuously. It takes effect at once. A serial NMEA
// receiver has no standard power-down command, so this bounds the agent's
// wake-ups and the positions it reports, not the receiver's own power
// (which keeps tracking, so each window starts hot).
func (d *Driver) SetDutyCycle(window, period time.Duration) {
	if period <= 0 || window <= 0 {
		window, period = 0, 0
	}
	d.duty.Store(&duty{window: min(window, period), period: period})
	select {
	case d.dutyCh <- struct{}{}:
	default:
	}
}

func (d *Driver) dutyCycle() duty {
	if p := d.duty.Load(); p != nil {
		return *p
	}
	return duty{}
}

// read opens the port and reads it until ctx ends, the window (if > 0)
// ends or a usable fix arrives within one, or the duty cycle changes. It
// returns an error only for a port that cannot be opened or read.
func (d *Driver) read(ctx context.Context, sink drivers.Sink, window time.Duration) error {
	wctx, cancel := context.WithCancel(ctx)
	if window > 0 {
		wctx, cancel = context.WithTimeout(ctx, window)
	}
	defer cancel()
	port, err := d.open(d.Device, d.Baud)
	if err != nil {
		return err
	}
	// Closing the port unblocks the read below when the window ends.
	stop := context.AfterFunc(wctx, func() { _ = port.Close() })
	defer func() {
		if stop() {
			_ = port.Close()
		}
	}()
	watched := make(chan struct{})
	go func() { // ends with wctx (cancelled when read returns)
		defer close(watched)
		select {
		case <-d.dutyCh:
			cancel()
		case <-wctx.Done():
		}
	}()
	defer func() { cancel(); <-watched }()
	if window == 0 {
		d.log.Info("gnss receiver open", "device", d.Device, "baud", d.Baud)
	}
	rd := NewReader(port)
	var dec Decoder
	for {
		s, err := rd.Next()
		if wctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read %s: %w: %w", d.Device, drivers.ErrNotReady, err)
		}
		d.sentences.Add(1)
		f, ok, ferr := dec.Feed(s)
		if ferr != nil {
			d.rejected.Add(1)
		}
		if ok {
			d.fixes.Add(1)
			if d.emit(f, sink) && window > 0 {
				return nil // this window's position is in
			}
		}
	}
}

// emit turns one fix into samples, gating position on mode and HDOP; it
// reports whether the fix gave a position.
func (d *Driver) emit(f Fix, sink drivers.Sink) bool {
	now := d.now()
	put := func(name string, v float64, label string) {
		sink.Emit(drivers.Sample{Name: name, Value: v, Label: label, Time: now, Source: d.name})
	}
	put(SignalFixType, float64(f.Mode), fixLabel(f.Mode))
	put(SignalFixStatus, float64(f.Status), f.Status.String())
	if f.HasSats {
		put(SignalSats, float64(f.Sats), "")
	}
	if f.HasHDOP {
		put(SignalHDOP, f.HDOP, "")
	}
	if f.TimeValid && f.Status != StatusSimulated {
		d.clock.Store(&clockReading{gnss: f.Time, local: now})
		put(SignalTimestamp, float64(f.Time.UnixNano())/1e9, "")
	}
	if !d.usable(f) {
		return false
	}
	put(SignalLatitude, f.Lat, "")
	put(SignalLongitude, f.Lon, "")
	if f.HasAlt {
		put(SignalAltitude, f.Alt, "")
	}
	if f.HasSpeed {
		put(SignalSpeed, f.Speed*3.6, "")
	}
	if f.HasCourse {
		put(SignalHeading, f.Course, "")
	}
	return true
}

// usable applies the min_fix and max_hdop gates.
func (d *Driver) usable(f Fix) bool {
	min := d.minMode
	if min == ModeUnknown {
		min = Mode2D
	}
	if !f.HasPos || f.Mode < min {
		return false
	}
	if !f.Status.Real() && d.InvalidFixes != InvalidFlag {
		return false
	}
	return d.MaxHDOP <= 0 || (f.HasHDOP && f.HDOP <= d.MaxHDOP)
}

// fixLabel names a mode as VSS's GNSSReceiver.FixType enumeration does.
func fixLabel(m Mode) string {
	switch m {
	case Mode2D:
		return "TWO_D"
	case Mode3D:
		return "THREE_D"
	}
	return "NONE"
}

// ClockSynced reports whether a valid GNSS time (RMC with status A and a
// date, or ZDA) arrived within the last 10 seconds.
func (d *Driver) ClockSynced() bool {
	_, ok := d.GNSSTime()
	return ok
}

// GNSSTime returns the current UTC time according to the receiver (the
// last valid GNSS time plus the local time elapsed since), and whether it
// is valid (see ClockSynced).
func (d *Driver) GNSSTime() (time.Time, bool) {
	c := d.clock.Load()
	if c == nil {
		return time.Time{}, false
	}
	el := d.now().Sub(c.local)
	if el < 0 || el > clockValidFor {
		return time.Time{}, false
	}
	return c.gnss.Add(el), true
}

package candump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
)

// Kind is the driver kind this package registers.
const Kind = "candump"

// Timestamp modes of the replayed samples.
const (
	// TimeReplay stamps samples with the wall-clock time of the replay.
	TimeReplay = "replay"
	// TimeOriginal keeps the log's timestamps.
	TimeOriginal = "original"
)

func init() {
	drivers.Register(Kind, func(p drivers.Params) drivers.Driver { return New(p) })
}

// Driver replays a candump -l log as if it were a live bus. Its exported
// fields are its config.
type Driver struct {
	// File is the log, relative to the config file's directory.
	File string `toml:"file"`
	// Speed is the replay speed factor (1 = real time, 10 = ten times
	// faster); 0 replays as fast as possible.
	Speed float64 `toml:"speed"`
	// Loop restarts the log at its end; otherwise the driver idles after
	// the last frame until it is stopped.
	Loop bool `toml:"loop"`
	// Interface replays only frames logged on this interface ("" = all).
	Interface string `toml:"interface"`
	// Timestamps is TimeReplay (default) or TimeOriginal.
	Timestamps string `toml:"timestamps"`
	// DBC is the DBC file, relative to the config file's directory.
	DBC string `toml:"dbc"`
	// Unmapped is canmap.UnmappedDrop (default) or canmap.UnmappedEmit.
	Unmapped string `toml:"unmapped"`
	// Signals maps DBC signals to names and sampling policies.
	Signals []canmap.Signal `toml:"signal"`

	params drivers.Params
	log    *slog.Logger
	dec    *canmap.Decoder
}

var _ drivers.Driver = (*Driver)(nil)

// New returns a driver with its defaults set.
func New(p drivers.Params) *Driver {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{Speed: 1, Timestamps: TimeReplay, Unmapped: canmap.UnmappedDrop, params: p, log: log}
}

// Init validates the config and loads the DBC (the log is opened by Run).
func (d *Driver) Init() error {
	switch {
	case d.File == "":
		return fmt.Errorf("candump driver %s: file is not set", d.params.Name)
	case d.Speed < 0 || math.IsNaN(d.Speed) || math.IsInf(d.Speed, 0):
		return fmt.Errorf("candump driver %s: speed %v must be a finite number >= 0", d.params.Name, d.Speed)
	case d.Timestamps != TimeReplay && d.Timestamps != TimeOriginal:
		return fmt.Errorf("candump driver %s: timestamps %q: want %q or %q", d.params.Name, d.Timestamps, TimeReplay, TimeOriginal)
	}
	_, dec, err := canmap.Load(d.log, d.params.ConfigDir, d.DBC,
		canmap.Options{Signals: d.Signals, Unmapped: d.Unmapped, Source: d.params.Name})
	if err != nil {
		return fmt.Errorf("candump driver %s: %w", d.params.Name, err)
	}
	d.dec = dec
	return nil
}

// SetLogger replaces the logger given in Params. Call it before Run.
func (d *Driver) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Stats returns the decoder's counters.
func (d *Driver) Stats() canmap.Stats {
	if d.dec == nil {
		return canmap.Stats{}
	}
	return d.dec.Stats()
}

// LastSeen returns when a mapped signal was last decoded.
func (d *Driver) LastSeen(name string) (time.Time, bool) {
	if d.dec == nil {
		return time.Time{}, false
	}
	return d.dec.LastSeen(name)
}

func (d *Driver) path() string {
	if filepath.IsAbs(d.File) {
		return d.File
	}
	return filepath.Join(d.params.ConfigDir, d.File)
}

// Run replays the log until ctx is done and returns nil then. A missing
// log is drivers.ErrNotReady.
func (d *Driver) Run(ctx context.Context, sink drivers.Sink) error {
	if d.dec == nil {
		return &drivers.FatalError{Err: fmt.Errorf("candump driver %s: run before init", d.params.Name)}
	}
	for {
		n, err := d.replayOnce(ctx, sink)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if !d.Loop || n == 0 {
			d.log.Info("candump replay finished", "file", d.File, "frames", n)
			<-ctx.Done()
			return nil
		}
	}
}

// replayOnce replays the log from its start and returns the number of
// frames replayed.
func (d *Driver) replayOnce(ctx context.Context, sink drivers.Sink) (int, error) {
	f, err := os.Open(d.path())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
		}
		return 0, fmt.Errorf("replay candump: %w", err)
	}
	defer func() { _ = f.Close() }()
	r := NewReader(f)
	var (
		rec   Record
		first time.Time
		start = time.Now()
		n     int
		timer = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	for {
		if err := r.Next(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				if r.Skipped() > 0 {
					d.log.Warn("candump lines skipped", "file", d.File, "skipped", r.Skipped(), "first", r.FirstSkip())
				}
				return n, nil
			}
			return n, fmt.Errorf("replay candump: %w", err)
		}
		if d.Interface != "" && rec.Interface != d.Interface {
			continue
		}
		if first.IsZero() {
			first = rec.Time
		}
		due := start
		if d.Speed > 0 {
			due = start.Add(time.Duration(float64(rec.Time.Sub(first)) / d.Speed))
			if err := sleepUntil(ctx, timer, due); err != nil {
				return n, nil
			}
		} else if ctx.Err() != nil {
			return n, nil
		}
		if d.Timestamps == TimeReplay {
			if d.Speed == 0 {
				due = time.Now()
			}
			rec.Frame.Time = due
		}
		d.dec.Decode(&rec.Frame, sink)
		n++
	}
}

// sleepUntil waits for t or ctx, reusing timer.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	timer.Reset(wait)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// SetSampling overrides the sampling policy of matching signals at run
// time (vehicle-state profiles); nil restores the configured policies.
func (d *Driver) SetSampling(ov []canmap.Override) {
	if d.dec != nil {
		d.dec.SetOverrides(ov)
	}
}

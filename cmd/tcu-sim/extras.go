package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/candump"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// embeddedDBC is a copy of configs/vehicle.dbc (a test keeps them equal),
// used when the repository's file cannot be found.
//
//go:embed vehicle.dbc
var embeddedDBC []byte

// loadDBC loads path, or when it is empty the repository's
// configs/vehicle.dbc (searched upwards from the working directory and the
// executable), or else the embedded copy. It returns where it came from.
func loadDBC(path string) (*dbc.Database, string, error) {
	if path == "" {
		path = findRepoDBC()
	}
	if path == "" {
		db, _, err := dbc.Parse("vehicle.dbc (built in)", embeddedDBC)
		return db, "built-in vehicle.dbc", err
	}
	db, _, err := dbc.Load(path)
	if err != nil {
		return nil, "", err
	}
	return db, path, nil
}

func findRepoDBC() string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for range 5 {
			p := filepath.Join(dir, "configs", "vehicle.dbc")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			dir = filepath.Dir(dir)
		}
	}
	return ""
}

// startLoad adds filler traffic on its own bus endpoint.
func startLoad(ctx context.Context, g *errgroup.Group, o options, attach func() (canbus.Bus, error),
	msgs []*dbc.Message, existing float64, log *slog.Logger) error {
	bus, err := attach()
	if err != nil {
		return err
	}
	var exclude []uint32
	for _, m := range msgs {
		if !m.Extended {
			exclude = append(exclude, m.ID)
		}
	}
	l, err := sim.NewLoad(sim.LoadOptions{Bus: bus, Percent: o.load, Bitrate: o.bitrate, Exclude: exclude, Existing: existing, Seed: o.seed})
	if err != nil {
		_ = bus.Close()
		return err
	}
	log.Info("bus load started", "percent", o.load, "bitrate", o.bitrate,
		"frames_per_s", int(l.Rate()), "ids", l.Messages())
	g.Go(func() error {
		defer func() { _ = bus.Close() }()
		return l.Run(ctx)
	})
	return nil
}

// startRecorder writes every frame seen on its own endpoint to a candump
// -l file. It flushes at least every 200 ms and at the end.
func startRecorder(ctx context.Context, g *errgroup.Group, path, iface string, attach func() (canbus.Bus, error),
	log *slog.Logger) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	bus, err := attach()
	if err != nil {
		_ = f.Close()
		return err
	}
	w := candump.NewWriter(f, iface)
	log.Info("recording", "file", path)
	// Stops when ctx is done.
	g.Go(func() error {
		defer func() { _ = f.Close() }()
		defer func() { _ = bus.Close() }()
		stop := context.AfterFunc(ctx, func() { _ = bus.Close() })
		defer stop()
		return record(ctx, bus, w, f)
	})
	return nil
}

func record(ctx context.Context, bus canbus.Bus, w *candump.Writer, f *os.File) error {
	lastFlush := time.Now()
	for {
		fr, err := bus.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if err := w.Flush(); err != nil {
					return fmt.Errorf("record: %w", err)
				}
				return f.Sync()
			}
			return fmt.Errorf("record: %w", err)
		}
		if fr.Time.IsZero() {
			fr.Time = time.Now()
		}
		if err := w.Write(&fr); err != nil {
			return fmt.Errorf("record: %w", err)
		}
		if time.Since(lastFlush) > 200*time.Millisecond {
			lastFlush = time.Now()
			if err := w.Flush(); err != nil {
				return fmt.Errorf("record: %w", err)
			}
		}
	}
}

// startReplay puts a candump -l log on the bus instead of the vehicle
// model, looping if asked.
func startReplay(ctx context.Context, g *errgroup.Group, o options, attach func() (canbus.Bus, error),
	log *slog.Logger) error {
	f, err := os.Open(o.replay)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	bus, err := attach()
	if err != nil {
		_ = f.Close()
		return err
	}
	g.Go(func() error {
		defer func() { _ = f.Close() }()
		defer func() { _ = bus.Close() }()
		for {
			n, err := candump.Play(ctx, f, bus, candump.PlayOptions{Speed: o.replaySpeed})
			if err != nil || ctx.Err() != nil || !o.replayLoop || n == 0 {
				if err == nil && ctx.Err() == nil {
					log.Info("replay finished", "file", o.replay, "frames", n)
				}
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
		}
	})
	return nil
}

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// startNMEA opens a pseudo-terminal and writes the vehicle's GNSS
// receiver output (RMC, GGA, GSA, VTG once a second) to it, moving at the
// simulated vehicle's speed. link, if set, is a symlink to the slave
// device (a stable path for the agent's config).
func startNMEA(ctx context.Context, g *errgroup.Group, link string, v *sim.Vehicle, log *slog.Logger) error {
	master, slave, err := nmeasim.OpenPTY()
	if err != nil {
		return err
	}
	if link != "" {
		_ = os.Remove(link)
		if err := os.Symlink(slave, link); err != nil {
			_ = master.Close()
			return err
		}
	}
	log.Info("nmea pty ready", "device", slave, "link", link)
	stop := context.AfterFunc(ctx, func() { _ = master.Close() })
	// Drains the master's read side (terminal echo) until it is closed.
	g.Go(func() error {
		_, _ = io.Copy(io.Discard, master)
		return nil
	})
	// Stops when ctx is done.
	g.Go(func() error {
		defer stop()
		defer func() { _ = master.Close() }()
		if link != "" {
			defer func() { _ = os.Remove(link) }()
		}
		feedNMEA(ctx, master, v, log)
		return nil
	})
	return nil
}

// feedNMEA writes one epoch a second. An epoch nobody reads within half a
// second is dropped, so a reader that attaches later gets current fixes.
func feedNMEA(ctx context.Context, w *os.File, v *sim.Vehicle, log *slog.Logger) {
	gen := nmeasim.Generator{Talker: "GN", V: nmeasim.Vehicle{
		Time: time.Now().UTC(), Lat: 48.137154, Lon: 11.576124, Alt: 519.4, Course: 72, Sats: 9, HDOP: 0.9,
	}}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	failing := false
	for {
		st := v.State()
		gen.V.Speed = st.Speed / 3.6
		gen.V.TurnRate = 0
		if st.Speed > 0 && st.Speed < 60 {
			gen.V.TurnRate = 1.5 // city streets bend
		}
		gen.V.Time = time.Now().UTC()
		_ = w.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		err := writeEpoch(w, gen.Epoch())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			log.Warn("nmea write failed", "err", err)
		case err == nil && failing:
			log.Info("nmea write recovered")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gen.Step(time.Second)
	}
}

func writeEpoch(w io.Writer, sentences []string) error {
	for _, s := range sentences {
		if _, err := io.WriteString(w, s); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return errors.New("no reader: epoch dropped")
			}
			return err
		}
	}
	return nil
}

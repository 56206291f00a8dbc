package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/obd"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// obdOptions are the simulated OBD-II ECU's flags.
type obdOptions struct {
	enabled  bool
	extended bool
	silent   bool
	delay    time.Duration
	vin      string
}

func (o *obdOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.enabled, "obd", false, "also answer OBD-II requests (ISO 15765-4) as the engine ECU")
	fs.BoolVar(&o.extended, "obd-29bit", false, "with --obd: 29-bit identifiers (0x18DB33F1 / 0x18DAF110) instead of 0x7DF / 0x7E8")
	fs.DurationVar(&o.delay, "obd-delay", 0, "with --obd: answer each request after this long (a slow ECU; the tester's P2 is 50ms)")
	fs.BoolVar(&o.silent, "obd-silent", false, "with --obd: receive requests but never answer (ignition off, absent ECU)")
	fs.StringVar(&o.vin, "vin", sim.DefaultVIN, "with --obd: the VIN answered to mode 09 PID 02")
}

func (o *obdOptions) validate() error {
	if o.delay < 0 {
		return fmt.Errorf("--obd-delay %v: want >= 0", o.delay)
	}
	if _, err := obd.ParseVIN([]byte(o.vin)); err != nil {
		return fmt.Errorf("--vin %q: %w", o.vin, err)
	}
	if !o.enabled && (o.extended || o.silent || o.delay > 0) {
		return errors.New("--obd-29bit, --obd-delay and --obd-silent need --obd")
	}
	return nil
}

// startECU runs the OBD-II engine ECU on its own endpoint; it answers with
// the vehicle model's state (a parked vehicle when replaying a log).
func startECU(ctx context.Context, g *errgroup.Group, o obdOptions, attach func() (canbus.Bus, error), v *sim.Vehicle, log *slog.Logger) error {
	bus, err := attach()
	if err != nil {
		return err
	}
	var state func() sim.State
	if v != nil {
		state = v.State
	}
	ecu, err := sim.NewECU(sim.ECUOptions{
		Bus: bus, State: state, VIN: o.vin, Extended: o.extended, Logger: log,
		Knobs: sim.ECUKnobs{Delay: o.delay, Silent: o.silent},
	})
	if err != nil {
		_ = bus.Close()
		return err
	}
	g.Go(func() error {
		defer func() { _ = bus.Close() }()
		return ecu.Run(ctx)
	})
	log.Info("obd-ii ecu started", "vin", o.vin, "29bit", o.extended, "delay", o.delay, "silent", o.silent)
	return nil
}

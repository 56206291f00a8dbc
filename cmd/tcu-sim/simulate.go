package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// simulate runs the vehicle (or a replay) and the load and recorder until
// ctx is done.
func simulate(ctx context.Context, o options, log *slog.Logger) error {
	db, src, err := loadDBC(o.dbc)
	if err != nil {
		return err
	}
	for _, m := range o.mute {
		if _, ok := db.Message(m); !ok {
			return fmt.Errorf("--mute %s: no such message in %s", m, src)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	defer func() {
		cancel() // on an early return, stop what was started
		_ = g.Wait()
	}()
	attach, serve, where, err := openBus(ctx, g, o)
	if err != nil {
		return err
	}
	var v *sim.Vehicle
	existing := 0.0
	if o.replay != "" {
		if err := startReplay(ctx, g, o, attach, log); err != nil {
			return err
		}
	} else {
		if v, err = startVehicle(ctx, g, o, db, attach, log); err != nil {
			return err
		}
		existing = v.FrameRate()
	}
	if o.obd.enabled {
		if err := startECU(ctx, g, o.obd, attach, v, log); err != nil {
			return err
		}
	}
	if o.load > 0 {
		if err := startLoad(ctx, g, o, attach, db.Messages, existing, log); err != nil {
			return err
		}
	}
	if o.record != "" {
		iface := "vcan0"
		if o.socketcan != "" {
			iface = o.socketcan
		}
		if err := startRecorder(ctx, g, o.record, iface, attach, log); err != nil {
			return err
		}
	}
	// Only now let others onto the bus: every endpoint of ours (the
	// recorder included) is attached, so no early frame is missed.
	serve()
	log.Info("tcu-sim started", "bus", where, "dbc", src, "replay", o.replay, "scenario", o.scenario,
		"hold", holdName(o.hold), "body_delay", o.bodyDelay, "ignore_commands", o.ignore, "fail_commands", o.fail)
	err = g.Wait()
	if v != nil {
		log.Info("tcu-sim stopped", "commands", v.State().Commands)
	} else {
		log.Info("tcu-sim stopped")
	}
	return err
}

// startVehicle runs the vehicle model (and its GNSS receiver) on its own
// endpoint.
func startVehicle(ctx context.Context, g *errgroup.Group, o options, db *dbc.Database,
	attach func() (canbus.Bus, error), log *slog.Logger) (*sim.Vehicle, error) {
	bus, err := attach()
	if err != nil {
		return nil, err
	}
	v, err := sim.New(sim.Options{
		Bus: bus, DB: db, Logger: log, Scenario: o.scenario, BodyDelay: o.bodyDelay, Seed: o.seed,
		Knobs: sim.Knobs{Ignore: o.ignore, Fail: o.fail, Hold: o.hold, Speed: o.speed, Mute: o.mute, SleepAfter: o.sleepAfter, NoWake: o.noWake, Drain: o.drain},
	})
	if err != nil {
		_ = bus.Close()
		return nil, err
	}
	g.Go(func() error {
		defer func() { _ = bus.Close() }()
		return v.Run(ctx)
	})
	if o.nmea {
		if err := startNMEA(ctx, g, o.nmeaLink, v, log); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// openBus opens the bus and returns how to attach endpoints to it, and
// serve, which lets other processes onto a virtual bus (call it once this
// process's endpoints are attached).
func openBus(ctx context.Context, g *errgroup.Group, o options) (attach func() (canbus.Bus, error), serve func(), where string, err error) {
	if o.socketcan != "" {
		attach := func() (canbus.Bus, error) { return socketcan.Open(o.socketcan, socketcan.Options{}) }
		return attach, func() {}, "socketcan " + o.socketcan, nil
	}
	l, err := listenUnix(o.vbus)
	if err != nil {
		return nil, nil, "", err
	}
	v := canbus.NewVirtual()
	start := make(chan struct{})
	g.Go(func() error {
		defer func() { _ = os.Remove(o.vbus) }()
		select {
		case <-start:
		case <-ctx.Done(): // an early return before serve
			return l.Close()
		}
		return canbus.Serve(ctx, l, v)
	})
	serve = sync.OnceFunc(func() { close(start) })
	return func() (canbus.Bus, error) { return v.Attach(), nil }, serve, "vbus " + o.vbus, nil
}

// listenUnix listens on path, replacing a stale socket left by a crashed
// run but refusing to steal one that is in use.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("serve vbus: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		if err != nil {
			return nil, fmt.Errorf("serve vbus: %w", err)
		}
		return l, nil
	}
	if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
		_ = c.Close()
		return nil, fmt.Errorf("serve vbus %s: another tcu-sim is serving it", path)
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("serve vbus: remove stale socket: %w", err)
	}
	l, err = net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("serve vbus: %w", err)
	}
	return l, nil
}

func holdName(h sim.Hold) string {
	switch h {
	case sim.HoldParked:
		return "parked"
	case sim.HoldMoving:
		return "moving"
	}
	return "none"
}

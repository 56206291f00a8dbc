// Command tcu-sim is a simulated vehicle for developing and testing
// tcu-agent without a car: it drives a CAN bus (a virtual bus served on a
// unix socket, or a SocketCAN interface) with realistic traffic encoded
// through configs/vehicle.dbc, answers BODY_COMMAND lock and immobiliser
// requests like a body controller, can load the bus to a chosen percentage
// and can record all traffic as a candump -l log.
//
//	tcu-sim --vbus /tmp/tcu-sim/vbus.sock --scenario city --record drive.log
//
// The drive-park scenario drives one trip and parks; with --sleep-after the
// bus then falls asleep (no frames) until the TCU sends a frame (a remote
// command wakes it, or the agent's [[commands.wake]] frame before an
// interlocked one; --no-wake makes it miss every wake-up), and --drain
// discharges the 12 V battery while parked:
//
//	tcu-sim --scenario drive-park --sleep-after 2m --drain 0.5
//
// It logs to stderr (one line per lock-state change, nothing per frame) and
// exits 0 on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// DefaultVBus is where the virtual bus is served by default.
const DefaultVBus = "/tmp/tcu-sim/vbus.sock"

// version is set at link time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	vbus, socketcan, dbc, scenario, record string
	nmeaLink, replay                       string
	replaySpeed                            float64
	replayLoop                             bool
	mute                                   []string
	nmea                                   bool
	hold                                   sim.Hold
	speed                                  float64
	bodyDelay                              time.Duration
	sleepAfter                             time.Duration
	drain                                  float64
	ignore, fail, noWake                   bool
	load                                   float64
	bitrate                                int
	seed                                   uint64
	verbose                                bool
	obd                                    obdOptions
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tcu-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.vbus, "vbus", DefaultVBus, "serve a virtual CAN bus on this unix socket")
	fs.StringVar(&o.socketcan, "socketcan", "", "use this SocketCAN interface (e.g. vcan0) instead of a virtual bus")
	fs.StringVar(&o.dbc, "dbc", "", "vehicle DBC (default: configs/vehicle.dbc of the repository, else the built-in copy)")
	fs.StringVar(&o.scenario, "scenario", sim.ScenarioParked, "drive cycle: parked, city, highway or drive-park (one trip, then parked)")
	fs.DurationVar(&o.sleepAfter, "sleep-after", 0, "put the bus to sleep (no frames) after standing this long with the ignition off; a frame from the TCU wakes it (0 = never)")
	fs.BoolVar(&o.noWake, "no-wake", false, "a sleeping bus ignores the TCU's frames and stays asleep (a missed wake-up)")
	fs.Float64Var(&o.drain, "drain", 0, "discharge the 12 V battery by this many volts per hour while the ignition is off")
	fs.DurationVar(&o.bodyDelay, "body-delay", sim.DefaultBodyDelay, "body controller response time")
	fs.BoolVar(&o.ignore, "ignore-commands", false, "never answer BODY_COMMAND requests")
	fs.BoolVar(&o.fail, "fail-commands", false, "answer lock requests with the FAULT state")
	fs.Float64Var(&o.load, "load", 0, "fill this percentage of the bus with filler traffic (0-100)")
	fs.IntVar(&o.bitrate, "bitrate", 500000, "bus bitrate for --load, bit/s")
	fs.StringVar(&o.record, "record", "", "write all bus traffic to this candump -l file")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for signal noise and the filler ID mix")
	fs.BoolVar(&o.nmea, "nmea-pty", false, "also act as a GNSS receiver: write NMEA to a pseudo-terminal (path is logged)")
	fs.StringVar(&o.nmeaLink, "nmea-link", "", "with --nmea-pty: create this symlink to the pseudo-terminal (e.g. /tmp/tcu-sim/gnss)")
	fs.StringVar(&o.replay, "replay", "", "put this candump -l log on the bus instead of running the vehicle model")
	fs.Float64Var(&o.replaySpeed, "replay-speed", 1, "replay speed factor (0 = as fast as possible)")
	fs.BoolVar(&o.replayLoop, "replay-loop", false, "restart the replay at the end of the log")
	mute := fs.String("mute", "", "comma-separated messages never to send (an ECU gone silent), e.g. POWERTRAIN")
	hold := fs.String("hold", "none", "pin the motion regardless of the scenario: none, parked or moving (at --speed)")
	fs.Float64Var(&o.speed, "speed", 50, "speed in km/h for --hold moving")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	o.obd.flags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *mute != "" {
		o.mute = strings.Split(*mute, ",")
	}
	switch *hold {
	case "none":
		o.hold = sim.HoldNone
	case "parked":
		o.hold = sim.HoldParked
	case "moving":
		o.hold = sim.HoldMoving
	default:
		return o, fmt.Errorf("--hold %q: want none, parked or moving", *hold)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, o.validate()
}

// validate checks the ranges and combinations of the options.
func (o *options) validate() error {
	switch {
	case o.speed < 0 || o.speed > 300:
		return fmt.Errorf("--speed %v: want 0..300 km/h", o.speed)
	case o.load < 0 || o.load > 100:
		return fmt.Errorf("--load %v: want 0..100", o.load)
	case o.load > 0 && o.bitrate <= 0:
		return fmt.Errorf("--bitrate %d: want a positive bitrate", o.bitrate)
	case o.replaySpeed < 0:
		return fmt.Errorf("--replay-speed %v: want >= 0", o.replaySpeed)
	case o.replay != "" && o.nmea:
		return errors.New("--nmea-pty needs the vehicle model; it cannot be combined with --replay")
	case o.bodyDelay < 0:
		return fmt.Errorf("--body-delay %v: want >= 0", o.bodyDelay)
	case o.sleepAfter < 0:
		return fmt.Errorf("--sleep-after %v: want >= 0", o.sleepAfter)
	case o.drain < 0 || o.drain > 3600:
		return fmt.Errorf("--drain %v: want 0..3600 V/h", o.drain)
	}
	if err := o.obd.validate(); err != nil {
		return err
	}
	return nil
}

// runMain handles what prints to stdout (--version or version, -h or
// --help alone), then runs the simulator.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 1 {
		switch args[0] {
		case "version", "--version", "-version":
			if len(args) > 1 {
				fmt.Fprintf(stderr, "tcu-sim: unexpected argument %q\n", args[1])
				return 2
			}
			fmt.Fprintln(stdout, "tcu-sim", version)
			return 0
		case "-h", "--help", "-help", "help":
			if len(args) == 1 {
				_, _ = parseFlags([]string{"-h"}, stdout)
				return 0
			}
		}
	}
	return run(ctx, args, stderr)
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "tcu-sim: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := simulate(ctx, o, log); err != nil {
		log.Error("tcu-sim failed", "err", err)
		return 1
	}
	return 0
}

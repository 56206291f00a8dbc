// Package sim is a simulated vehicle on a CAN bus: an engine controller
// driving a realistic drive cycle (parked, ignition on, accelerate, cruise,
// brake, park) and a body controller that answers BODY_COMMAND actuation
// frames (door locks, immobiliser) after a realistic delay, with knobs to
// ignore or fail commands and to hold the vehicle parked or moving. Every
// frame is encoded through the DBC (configs/vehicle.dbc), never assembled
// by hand. Load adds filler traffic up to a chosen bus load.
//
// It backs cmd/tcu-sim and the agent's end-to-end tests.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// Scenarios.
const (
	// ScenarioParked keeps the vehicle parked with the ignition off.
	ScenarioParked = "parked"
	// ScenarioCity loops a city drive cycle (stops, 50 km/h).
	ScenarioCity = "city"
	// ScenarioHighway loops a highway drive cycle (120 km/h).
	ScenarioHighway = "highway"
	// ScenarioDrivePark drives one city trip, then stays parked with the
	// ignition off (combine with Knobs.SleepAfter and Knobs.Drain for a
	// bus that falls asleep and a battery that discharges).
	ScenarioDrivePark = "drive-park"
)

// DefaultBodyDelay is how long the body controller takes to move the locks
// or the immobiliser after a command.
const DefaultBodyDelay = 300 * time.Millisecond

// Options configure a Vehicle.
type Options struct {
	// Bus is where the vehicle sends and receives; the caller owns it.
	Bus canbus.Bus
	// DB is the vehicle's DBC (configs/vehicle.dbc or a superset).
	DB *dbc.Database
	// Logger gets one line per lock or immobiliser change; nil discards.
	Logger *slog.Logger
	// Scenario is ScenarioParked (default), ScenarioCity or
	// ScenarioHighway.
	Scenario string
	// BodyDelay is the initial Knobs.Delay; 0 means DefaultBodyDelay.
	BodyDelay time.Duration
	// Knobs are the initial knobs (Delay is overridden by BodyDelay when
	// that is set).
	Knobs Knobs
	// Seed makes the noise on analogue signals reproducible.
	Seed uint64
}

// Hold pins the vehicle's motion regardless of the scenario.
type Hold int

// Holds.
const (
	// HoldNone follows the scenario.
	HoldNone Hold = iota
	// HoldParked stops the vehicle at once: speed 0, gear P (the ignition
	// is left as it is).
	HoldParked
	// HoldMoving drives at Knobs.Speed at once: ignition ON, gear D.
	HoldMoving
)

// Knobs change the vehicle's behaviour while it runs.
type Knobs struct {
	// Ignore makes the body controller never answer commands.
	Ignore bool
	// Fail makes lock commands end in the FAULT lock state and immobiliser
	// commands change nothing.
	Fail bool
	// Delay is the body controller's response time.
	Delay time.Duration
	// Hold pins the motion; Speed (km/h) is the speed of HoldMoving.
	Hold  Hold
	Speed float64
	// Mute names messages the vehicle stops sending ("POWERTRAIN"), as
	// when an ECU goes silent: their signals go stale at the TCU.
	Mute []string
	// Asleep is a bus asleep: the ECUs send nothing. Any frame on the bus
	// (a command from the TCU) wakes it, as a CAN transceiver's wake-up
	// does, and clears Asleep.
	Asleep bool
	// NoWake makes a sleeping bus ignore frames from the TCU: it stays
	// asleep and the body controller does not act (a transceiver that
	// misses the wake-up).
	NoWake bool
	// SleepAfter, when > 0, puts the bus to sleep once the vehicle has
	// stood with the ignition off and no frame from the TCU for this long.
	SleepAfter time.Duration
	// Drain is how fast the 12 V battery discharges while the ignition is
	// off, in volts per hour (a parked car's quiescent load; real cars
	// lose well under 0.01 V/h, tests use much more). A running engine
	// recharges it at once.
	Drain float64
}

// Vehicle is a simulated vehicle. Create it with New and start it with Run.
type Vehicle struct {
	bus      canbus.Bus
	db       *dbc.Database
	log      *slog.Logger
	scenario string
	cmdMsg   *dbc.Message
	statMsg  *dbc.Message
	cyclic   []*cyclicMsg

	mu      sync.Mutex
	knobs   Knobs      // guarded by mu
	st      State      // guarded by mu
	drive   driveCtl   // guarded by mu
	pending []pending  // guarded by mu
	rng     *rand.Rand // guarded by mu
	drained float64    // guarded by mu; volts lost to Knobs.Drain
	quiet   time.Time  // guarded by mu; since when parked with no TCU frame
	running atomic.Bool
}

// New validates opts and returns a vehicle at rest: parked, ignition off,
// doors closed and unlocked, immobiliser off.
func New(opts Options) (*Vehicle, error) {
	if opts.Bus == nil || opts.DB == nil {
		return nil, errors.New("new vehicle: bus and dbc are required")
	}
	switch opts.Scenario {
	case "":
		opts.Scenario = ScenarioParked
	case ScenarioParked, ScenarioCity, ScenarioHighway, ScenarioDrivePark:
	default:
		return nil, fmt.Errorf("new vehicle: scenario %q: want parked, city, highway or drive-park", opts.Scenario)
	}
	cmd, ok1 := opts.DB.Message("BODY_COMMAND")
	stat, ok2 := opts.DB.Message("BODY_STATUS")
	if !ok1 || !ok2 {
		return nil, errors.New("new vehicle: dbc lacks BODY_COMMAND or BODY_STATUS")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := opts.Knobs
	if opts.BodyDelay > 0 {
		k.Delay = opts.BodyDelay
	}
	if k.Delay <= 0 {
		k.Delay = DefaultBodyDelay
	}
	v := &Vehicle{
		bus: opts.Bus, db: opts.DB, log: log, scenario: opts.Scenario,
		cmdMsg: cmd, statMsg: stat, knobs: k,
		st:  initialState(),
		rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
	}
	v.cyclic = v.cyclicMessages()
	return v, nil
}

// FrameRate returns the frames per second the vehicle sends periodically.
func (v *Vehicle) FrameRate() float64 {
	r := 0.0
	for _, c := range v.cyclic {
		r += float64(time.Second) / float64(c.msg.CycleTime)
	}
	return r
}

// SetKnobs replaces the knobs. A zero Delay keeps the current delay.
func (v *Vehicle) SetKnobs(k Knobs) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k.Delay <= 0 {
		k.Delay = v.knobs.Delay
	}
	v.knobs = k
}

// Knobs returns the current knobs.
func (v *Vehicle) Knobs() Knobs {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.knobs
}

// State returns a snapshot of the vehicle's state.
func (v *Vehicle) State() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st
}

// Update changes the state under the vehicle's lock (tests: open a door,
// drain the battery). The change is on the bus with the next frames.
func (v *Vehicle) Update(fn func(*State)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(&v.st)
}

// Run drives the vehicle until ctx is done and returns nil then, or an
// error when the bus fails. A vehicle runs once at a time.
func (v *Vehicle) Run(ctx context.Context) error {
	if !v.running.CompareAndSwap(false, true) {
		return errors.New("vehicle is already running")
	}
	defer v.running.Store(false)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Stops when ctx is done or the bus fails.
	wg.Go(func() {
		if err := v.receive(ctx); err != nil {
			cancel(err)
		}
	})
	err := v.loop(ctx)
	cancel(err)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// tick is the model's step.
const tick = 5 * time.Millisecond

func (v *Vehicle) loop(ctx context.Context) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			dt := now.Sub(last)
			last = now
			frames := v.step(now, dt)
			for i := range frames {
				if err := v.bus.Send(ctx, frames[i]); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("vehicle send: %w", err)
				}
			}
		}
	}
}

// step advances the model by dt and returns the frames due at now.
func (v *Vehicle) step(now time.Time, dt time.Duration) []canbus.Frame {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applyPendingLocked(now)
	v.moveLocked(now, dt)
	v.sleepLocked(now)
	if v.knobs.Asleep {
		return nil
	}
	return v.dueFramesLocked(now)
}

// sleepLocked puts the bus to sleep after Knobs.SleepAfter of standing
// with the ignition off and no frame from the TCU.
func (v *Vehicle) sleepLocked(now time.Time) {
	if v.st.Ignition != IgnitionOff || v.st.Speed > 0 {
		v.quiet = time.Time{}
		return
	}
	if v.quiet.IsZero() {
		v.quiet = now
	}
	if k := v.knobs.SleepAfter; k > 0 && !v.knobs.Asleep && now.Sub(v.quiet) >= k {
		v.knobs.Asleep = true
		v.st.Phase = "asleep"
		v.log.Info("bus asleep: the vehicle stopped sending", "after", k)
	}
}

// wake is a frame from the TCU: it wakes a sleeping bus and restarts the
// sleep timer. It reports false when the bus stays asleep (Knobs.NoWake):
// nothing on it hears the frame.
func (v *Vehicle) wake(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.knobs.Asleep && v.knobs.NoWake {
		return false
	}
	v.quiet = now
	if v.knobs.Asleep {
		v.knobs.Asleep = false
		v.st.Wakeups++
		v.log.Info("bus woken by a frame from the TCU")
	}
	return true
}

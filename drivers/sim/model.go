package sim

import (
	"math"
	"time"
)

// Lock states (BODY_STATUS.DoorLockState).
const (
	Unlocked = 0
	Locked   = 1
	Fault    = 2
)

// Gears (POWERTRAIN.Gear).
const (
	GearP = 0
	GearR = 1
	GearN = 2
	GearD = 3
)

// Ignition states (POWERTRAIN.IgnitionState).
const (
	IgnitionOff   = 0
	IgnitionAcc   = 1
	IgnitionOn    = 2
	IgnitionStart = 3
)

// State is the simulated vehicle's state, in the DBC's physical units.
type State struct {
	// Speed in km/h.
	Speed float64
	// Gear is GearP..GearD.
	Gear int
	// Ignition is IgnitionOff..IgnitionStart.
	Ignition int
	// RPM is the engine speed.
	RPM float64
	// Lock is Unlocked, Locked or Fault.
	Lock int
	// Doors are open flags: driver, passenger, rear left, rear right.
	Doors [4]bool
	// Trunk is open.
	Trunk bool
	// Immobilized means ignition is disabled (ImmobilizerActive = 1).
	Immobilized bool
	// Odometer in km.
	Odometer float64
	// Fuel level in percent.
	Fuel float64
	// Battery voltage in V.
	Battery float64
	// Cabin and Ambient temperatures in °C.
	Cabin, Ambient float64
	// Phase names the drive-cycle phase ("parked", "cruise", ...).
	Phase string
	// Commands counts BODY_COMMAND frames received.
	Commands int
	// Wakeups counts wake-ups of a sleeping bus by a TCU frame.
	Wakeups int
}

func initialState() State {
	return State{
		Gear: GearP, Ignition: IgnitionOff, Lock: Unlocked,
		Odometer: 12345.6, Fuel: 68, Battery: 12.6, Cabin: 21, Ambient: 15,
		Phase: "parked",
	}
}

// A drive phase of the scenario.
type phase int

const (
	phParked phase = iota
	phCrank
	phAccel
	phCruise
	phBrake
	phStop
)

var phaseNames = [...]string{"parked", "crank", "accelerate", "cruise", "brake", "stop"}

// driveCtl is the scenario's position in its drive cycle.
type driveCtl struct {
	phase phase
	since time.Time // when phase began
	lap   int       // accelerate-cruise-brake laps in this trip
	trips int       // trips completed
}

// cycle describes a scenario's drive cycle.
type cycle struct {
	parked, cruise, stop time.Duration
	target               float64 // km/h
	accel, brake         float64 // m/s²
	laps                 int
	once                 bool // one trip, then parked for good
}

var cycles = map[string]cycle{
	ScenarioCity:    {parked: 8 * time.Second, cruise: 8 * time.Second, stop: 4 * time.Second, target: 50, accel: 2.0, brake: 3.0, laps: 3},
	ScenarioHighway: {parked: 8 * time.Second, cruise: 40 * time.Second, stop: 5 * time.Second, target: 120, accel: 1.5, brake: 2.5, laps: 1},
	ScenarioDrivePark: {parked: 3 * time.Second, cruise: 5 * time.Second, stop: 2 * time.Second, target: 50, accel: 2.5, brake: 3.0, laps: 1,
		once: true},
}

// moveLocked advances motion, engine and slow analogue values by dt.
func (v *Vehicle) moveLocked(now time.Time, dt time.Duration) {
	s := &v.st
	switch v.knobs.Hold {
	case HoldParked:
		s.Speed, s.Gear, s.Phase = 0, GearP, "held parked"
	case HoldMoving:
		s.Ignition, s.Gear, s.Speed, s.Phase = IgnitionOn, GearD, math.Max(0, math.Min(v.knobs.Speed, 300)), "held moving"
	default:
		v.driveLocked(now, dt)
	}
	km := s.Speed * dt.Hours()
	s.Odometer += km
	s.Fuel = math.Max(0, s.Fuel-km*0.12)
	s.RPM = rpm(s)
	if s.Ignition == IgnitionOff {
		v.drained += v.knobs.Drain * dt.Hours()
	} else if s.RPM > 0 {
		v.drained = 0 // the alternator recharges
	}
	s.Battery = max(battery(s)-v.drained, 9) + (v.rng.Float64()-0.5)*0.02
}

// driveLocked runs the scenario's drive cycle.
func (v *Vehicle) driveLocked(now time.Time, dt time.Duration) {
	s, d := &v.st, &v.drive
	c, ok := cycles[v.scenario]
	if !ok { // parked scenario
		s.Speed, s.Gear, s.Ignition = 0, GearP, IgnitionOff
		d.phase, s.Phase = phParked, phaseNames[phParked]
		return
	}
	if d.since.IsZero() {
		d.since = now
	}
	if p, ok := v.phaseStepLocked(c, now.Sub(d.since), dt); ok {
		d.phase, d.since = p, now
	}
	s.Phase = phaseNames[d.phase]
}

// phaseStepLocked advances the current phase, which has lasted in, by dt
// and returns the next phase when it is over.
func (v *Vehicle) phaseStepLocked(c cycle, in, dt time.Duration) (phase, bool) {
	s, d := &v.st, &v.drive
	dv := func(a float64) float64 { return a * 3.6 * dt.Seconds() } // m/s² -> km/h
	switch {
	case d.phase == phParked:
		s.Speed, s.Gear, s.Ignition = 0, GearP, IgnitionOff
		v.doorsLocked(in)
		if c.once && d.trips > 0 {
			break
		}
		if in >= c.parked {
			d.lap = 0
			return phCrank, true
		}
	case d.phase == phCrank:
		switch {
		case in < time.Second, s.Immobilized: // the immobilised engine will not start
			s.Ignition = IgnitionAcc
		case in < 1600*time.Millisecond:
			s.Ignition = IgnitionStart
		default:
			s.Ignition, s.Gear = IgnitionOn, GearD
			return phAccel, true
		}
	case s.Immobilized && (d.phase == phAccel || d.phase == phCruise):
		return phBrake, true // the engine was cut: coast to a stop
	case d.phase == phAccel:
		s.Speed = math.Min(c.target, s.Speed+dv(c.accel))
		if s.Speed >= c.target {
			return phCruise, true
		}
	case d.phase == phCruise:
		s.Speed = c.target + 2*math.Sin(in.Seconds()/3) // a real driver wobbles
		if in >= c.cruise {
			return phBrake, true
		}
	case d.phase == phBrake:
		a := c.brake
		if s.Immobilized {
			a = 1.0
		}
		if s.Speed = math.Max(0, s.Speed-dv(a)); s.Speed == 0 {
			d.lap++
			return phStop, true
		}
	case d.phase == phStop && in >= c.stop:
		if d.lap >= c.laps || s.Immobilized {
			s.Gear, s.Ignition = GearP, IgnitionOff
			d.trips++
			return phParked, true
		}
		return phAccel, true
	}
	return d.phase, false
}

// doorsLocked opens the driver's door for a moment after parking and
// before leaving, if the car is unlocked (someone gets out, then in).
func (v *Vehicle) doorsLocked(in time.Duration) {
	c := cycles[v.scenario]
	open := v.st.Lock == Unlocked &&
		(in > 2*time.Second && in < 4*time.Second || in > c.parked-3*time.Second && in < c.parked-time.Second)
	v.st.Doors[0] = open
}

// gearBands are the upper speeds (km/h) of the virtual gearbox's gears and
// the engine speed per km/h in each.
var gearBands = [...]struct{ upTo, perKmh float64 }{
	{20, 100}, {35, 60}, {55, 42}, {80, 32}, {110, 26}, {math.Inf(1), 22},
}

func rpm(s *State) float64 {
	switch {
	case s.Ignition == IgnitionStart:
		return 250
	case s.Ignition != IgnitionOn || s.Immobilized && s.Speed == 0:
		return 0
	case s.Speed < 1:
		return 800
	}
	for _, g := range gearBands {
		if s.Speed <= g.upTo {
			return math.Max(800, math.Min(6000, s.Speed*g.perKmh))
		}
	}
	return 800
}

func battery(s *State) float64 {
	switch {
	case s.Ignition == IgnitionStart:
		return 10.8
	case s.Ignition == IgnitionOn && s.RPM > 0:
		return 14.1
	case s.Ignition == IgnitionOff:
		return 12.6
	}
	return 12.3
}

package sim

import (
	"slices"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// cyclicMsg is a message the vehicle sends periodically.
type cyclicMsg struct {
	msg     *dbc.Message
	next    time.Time
	counter int
	values  map[string]float64 // reused between frames
}

// simSenders are the DBC nodes the simulator plays.
var simSenders = map[string]bool{"BCM": true, "ECM": true}

// cyclicMessages lists the DBC's periodic messages sent by the simulated
// ECUs whose content the model knows.
func (v *Vehicle) cyclicMessages() []*cyclicMsg {
	var out []*cyclicMsg
	var probe State
	for _, m := range v.db.Messages {
		if m.CycleTime <= 0 || !simSenders[m.Sender] {
			continue
		}
		c := &cyclicMsg{msg: m, values: map[string]float64{}}
		if !fill(c, &probe) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// sendNow makes the named message due immediately (event-triggered send on
// a state change, as body controllers do).
func (v *Vehicle) sendNow(name string) {
	for _, c := range v.cyclic {
		if c.msg.Name == name {
			c.next = time.Time{}
		}
	}
}

// dueFramesLocked encodes every message that is due at now.
func (v *Vehicle) dueFramesLocked(now time.Time) []canbus.Frame {
	var out []canbus.Frame
	for _, c := range v.cyclic {
		if now.Before(c.next) || slices.Contains(v.knobs.Mute, c.msg.Name) {
			continue
		}
		if c.next.IsZero() || now.Sub(c.next) > c.msg.CycleTime {
			c.next = now // first frame, or resynchronise after a stall
		}
		c.next = c.next.Add(c.msg.CycleTime)
		fill(c, &v.st)
		c.counter++
		data, err := c.msg.Encode(c.values)
		if err != nil {
			continue // the model keeps values in range; skip rather than send garbage
		}
		f := canbus.Frame{ID: c.msg.ID, Extended: c.msg.Extended}
		f.Len = uint8(copy(f.Data[:], data))
		out = append(out, f)
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// fill sets c.values from s for the messages the model knows and reports
// whether it knows c's message.
func fill(c *cyclicMsg, s *State) bool {
	x := c.values
	switch c.msg.Name {
	case "POWERTRAIN":
		x["VehicleSpeed"], x["Gear"], x["IgnitionState"], x["EngineRPM"] =
			clamp(s.Speed, 0, 300), float64(s.Gear), float64(s.Ignition), s.RPM
	case "BODY_STATUS":
		x["DoorLockState"] = float64(s.Lock)
		x["DriverDoorOpen"], x["PassengerDoorOpen"] = b2f(s.Doors[0]), b2f(s.Doors[1])
		x["RearLeftDoorOpen"], x["RearRightDoorOpen"] = b2f(s.Doors[2]), b2f(s.Doors[3])
		x["TrunkOpen"], x["ImmobilizerActive"] = b2f(s.Trunk), b2f(s.Immobilized)
		x["BodyCounter"] = float64(c.counter % 16)
	case "ODOMETER":
		x["Odometer"], x["FuelLevel"] = s.Odometer, clamp(s.Fuel, 0, 100)
	case "BATTERY":
		x["BatteryVoltage"] = clamp(s.Battery, 0, 65)
	case "CLIMATE":
		x["CabinTemperature"], x["AmbientTemperature"], x["HvacFanSpeed"] = s.Cabin, s.Ambient, 3
	default:
		return false
	}
	return true
}

func clamp(x, lo, hi float64) float64 { return max(lo, min(hi, x)) }

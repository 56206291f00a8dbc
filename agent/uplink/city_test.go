package uplink

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
)

// citySignal is one signal of the city stream: the demo config's signals
// (configs/demo.toml, with their deadbands, minimum intervals and
// heartbeats) plus CAN filler signals, every one configured as an event.
type citySignal struct {
	name, source string
	factor       float64       // DBC scaling of the raw value
	deadband     float64       // absolute change that counts
	minInterval  time.Duration // at most one sample per interval
	heartbeat    time.Duration // re-sent unchanged after this (0 = never)
	value        func(t float64, r *rand.Rand) int64
	last         float64
	sent         time.Time
	seen         bool
}

// cityStream returns n records as the telemetry pipeline writes them for
// a city drive (60 s cycle: 10 s accelerating to 50 km/h, 25 s cruising,
// 10 s braking, 15 s stopped) with every signal an event signal: one
// event record per change that passes the signal's filters, one
// telemetry record per second with the signals that changed. Filler
// signals are 16 CAN messages × 2 signals at 100 ms: a counter and a
// noisy sensor; with noisy the sensors are uniformly random 12-bit values
// instead (a pessimistic case for any compressor). Deterministic.
func cityStream(n int, noisy bool) []Record {
	r := rand.New(rand.NewPCG(20, 26))
	speed := func(t float64) float64 {
		switch c := math.Mod(t, 60); {
		case c < 10:
			return 5 * c
		case c < 35:
			return 50 + 2*math.Sin(c)
		case c < 45:
			return 50 - 5*(c-35)
		}
		return 0
	}
	sigs := []*citySignal{
		{name: "Vehicle.Speed", source: "POWERTRAIN.VehicleSpeed", factor: 0.01, deadband: 0.5, minInterval: 200 * time.Millisecond, heartbeat: time.Second,
			value: func(t float64, r *rand.Rand) int64 { return int64(speed(t)*100) + r.Int64N(5) }},
		{name: "Vehicle.Powertrain.Transmission.SelectedGear", source: "POWERTRAIN.Gear", factor: 1, heartbeat: time.Second,
			value: func(t float64, _ *rand.Rand) int64 { return min(int64(speed(t)/12)+1, 5) }},
		{name: "Vehicle.LowVoltageSystemState", source: "POWERTRAIN.IgnitionState", factor: 1, heartbeat: time.Second,
			value: func(float64, *rand.Rand) int64 { return 3 }},
		{name: "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked", source: "BODY_STATUS.DoorLockState", factor: 1, heartbeat: time.Second,
			value: func(float64, *rand.Rand) int64 { return 1 }},
		{name: "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen", source: "BODY_STATUS.DriverDoorOpen", factor: 1,
			value: func(t float64, _ *rand.Rand) int64 { return b2i(math.Mod(t, 600) > 590) }},
		{name: "Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen", source: "BODY_STATUS.PassengerDoorOpen", factor: 1,
			value: func(t float64, _ *rand.Rand) int64 { return b2i(math.Mod(t, 900) > 895) }},
		{name: "Vehicle.Cabin.Door.Row2.DriverSide.IsOpen", source: "BODY_STATUS.RearLeftDoorOpen", factor: 1,
			value: func(float64, *rand.Rand) int64 { return 0 }},
		{name: "Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen", source: "BODY_STATUS.RearRightDoorOpen", factor: 1,
			value: func(float64, *rand.Rand) int64 { return 0 }},
		{name: "Vehicle.Body.Trunk.Rear.IsOpen", source: "BODY_STATUS.TrunkOpen", factor: 1,
			value: func(float64, *rand.Rand) int64 { return 0 }},
		{name: "Vehicle.Immobilizer.IsEngaged", source: "BODY_STATUS.ImmobilizerActive", factor: 1, heartbeat: time.Second,
			value: func(float64, *rand.Rand) int64 { return 0 }},
		{name: "Vehicle.TraveledDistance", source: "ODOMETER.Odometer", factor: 0.1, deadband: 0.1,
			value: func(t float64, _ *rand.Rand) int64 { return 1234567 + int64(t*0.083) }},
		{name: "Vehicle.Powertrain.FuelSystem.RelativeLevel", source: "ODOMETER.FuelLevel", factor: 0.5, deadband: 0.5, heartbeat: time.Minute,
			value: func(t float64, _ *rand.Rand) int64 { return 140 - int64(t/90) }},
		{name: "Vehicle.LowVoltageBattery.CurrentVoltage", source: "BATTERY.BatteryVoltage", factor: 0.01, deadband: 0.05, heartbeat: time.Minute,
			value: func(t float64, r *rand.Rand) int64 { return 1380 + int64(10*math.Sin(t/7)) + r.Int64N(8) }},
	}
	for m := range 16 {
		id := 0x300 + 0x11*m
		sigs = append(sigs,
			&citySignal{name: fmt.Sprintf("Filler.M%03X.Counter", id), source: fmt.Sprintf("FILLER_%03X.Counter", id), factor: 1, minInterval: 100 * time.Millisecond,
				value: func(t float64, _ *rand.Rand) int64 { return int64(t*10) % 16 }},
			&citySignal{name: fmt.Sprintf("Filler.M%03X.Sensor", id), source: fmt.Sprintf("FILLER_%03X.Sensor", id), factor: 0.1, deadband: 0.2, minInterval: 100 * time.Millisecond,
				value: func(t float64, r *rand.Rand) int64 {
					if noisy {
						return r.Int64N(4096)
					}
					return 200 + int64(50*math.Sin(t/float64(m+3))) + r.Int64N(5)
				}})
	}
	start := time.UnixMilli(1_764_930_000_000)
	var out []Record
	var seq uint64 = 1_000_000
	add := func(class Class, kind string, at time.Time, body any) {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		data, err := record.Record{Kind: kind, Time: at, Body: b}.Marshal()
		if err != nil {
			panic(err)
		}
		seq++
		out = append(out, Record{Seq: seq, Class: class, Time: at, Data: data})
	}
	type eventBody struct { // as agent/telemetry writes it
		Signal   string   `json:"signal"`
		Value    float64  `json:"value"`
		Previous *float64 `json:"previous,omitempty"`
		Source   string   `json:"source,omitempty"`
	}
	changed := map[string]float64{}
	for step := 0; len(out) < n; step++ {
		now := start.Add(time.Duration(step) * 10 * time.Millisecond)
		t := float64(step) / 100
		for _, s := range sigs {
			if s.seen && now.Sub(s.sent) < s.minInterval {
				continue
			}
			v := float64(s.value(t, r)) * s.factor
			due := !s.seen || math.Abs(v-s.last) >= math.Max(s.deadband, 1e-9) || (s.heartbeat > 0 && now.Sub(s.sent) >= s.heartbeat)
			if !due {
				continue
			}
			ev := eventBody{Signal: s.name, Value: v, Source: s.source}
			if s.seen {
				prev := s.last
				ev.Previous = &prev
			}
			s.last, s.sent, s.seen = v, now, true
			changed[s.name] = v
			add(ClassEvent, record.KindEvent, now, ev)
		}
		if step%100 == 99 && len(changed) > 0 {
			add(ClassTelemetry, record.KindTelemetry, now, map[string]any{"signals": changed})
			changed = map[string]float64{}
		}
	}
	return out[:n]
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// CityStream exports cityStream to the package's external tests.
func CityStream(n int) []Record { return cityStream(n, false) }

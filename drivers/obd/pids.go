package obd

import (
	"fmt"
)

// A PIDInfo describes one standard mode 01 PID: its SAE J1979 scaling and
// the signal name it is emitted under.
type PIDInfo struct {
	PID byte
	// Name is the VSS-style signal name.
	Name string
	// Unit is informational (docs, logs).
	Unit string
	// Len is the number of data bytes (A, B, C, D) the formula uses.
	Len int
	// Decode applies the J1979 formula to exactly Len bytes.
	Decode func(b []byte) float64
}

func u16(b []byte) float64 { return float64(uint16(b[0])<<8 | uint16(b[1])) }

// Standard mode 01 PIDs (SAE J1979 / ISO 15031-5). Names follow VSS's
// Vehicle.OBD branch; the odometer is VSS's Vehicle.TraveledDistance.
var standardPIDs = map[byte]PIDInfo{
	0x04: {0x04, "Vehicle.OBD.EngineLoad", "%", 1, func(b []byte) float64 { return float64(b[0]) * 100 / 255 }},
	0x05: {0x05, "Vehicle.OBD.CoolantTemperature", "°C", 1, func(b []byte) float64 { return float64(b[0]) - 40 }},
	0x0B: {0x0B, "Vehicle.OBD.MAP", "kPa", 1, func(b []byte) float64 { return float64(b[0]) }},
	0x0C: {0x0C, "Vehicle.OBD.EngineSpeed", "rpm", 2, func(b []byte) float64 { return u16(b) / 4 }},
	0x0D: {0x0D, "Vehicle.OBD.Speed", "km/h", 1, func(b []byte) float64 { return float64(b[0]) }},
	0x0F: {0x0F, "Vehicle.OBD.IntakeTemp", "°C", 1, func(b []byte) float64 { return float64(b[0]) - 40 }},
	0x10: {0x10, "Vehicle.OBD.MAF", "g/s", 2, func(b []byte) float64 { return u16(b) / 100 }},
	0x11: {0x11, "Vehicle.OBD.ThrottlePosition", "%", 1, func(b []byte) float64 { return float64(b[0]) * 100 / 255 }},
	0x1F: {0x1F, "Vehicle.OBD.RunTime", "s", 2, u16},
	0x21: {0x21, "Vehicle.OBD.DistanceWithMIL", "km", 2, u16},
	0x2F: {0x2F, "Vehicle.OBD.FuelLevel", "%", 1, func(b []byte) float64 { return float64(b[0]) * 100 / 255 }},
	0x31: {0x31, "Vehicle.OBD.DistanceSinceDTCClear", "km", 2, u16},
	0x33: {0x33, "Vehicle.OBD.BarometricPressure", "kPa", 1, func(b []byte) float64 { return float64(b[0]) }},
	0x42: {0x42, "Vehicle.OBD.ControlModuleVoltage", "V", 2, func(b []byte) float64 { return u16(b) / 1000 }},
	0x46: {0x46, "Vehicle.OBD.AmbientAirTemperature", "°C", 1, func(b []byte) float64 { return float64(b[0]) - 40 }},
	0x5C: {0x5C, "Vehicle.OBD.OilTemperature", "°C", 1, func(b []byte) float64 { return float64(b[0]) - 40 }},
	0x5E: {0x5E, "Vehicle.OBD.FuelRate", "L/h", 2, func(b []byte) float64 { return u16(b) / 20 }},
	0xA6: {0xA6, "Vehicle.TraveledDistance", "km", 4, func(b []byte) float64 {
		return float64(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) / 10
	}},
}

// LookupPID returns the description of a standard mode 01 PID.
func LookupPID(pid byte) (PIDInfo, bool) {
	p, ok := standardPIDs[pid]
	return p, ok
}

// DecodePID decodes the data bytes of a mode 01 response for pid (the
// bytes after 0x41 and the PID). Extra bytes are ignored (several ECUs pad
// differently); too few are an error.
func DecodePID(pid byte, data []byte) (float64, error) {
	p, ok := standardPIDs[pid]
	if !ok {
		return 0, fmt.Errorf("pid %#02x: no standard scaling", pid)
	}
	if len(data) < p.Len {
		return 0, fmt.Errorf("pid %#02x: %d data bytes, want %d", pid, len(data), p.Len)
	}
	return p.Decode(data[:p.Len]), nil
}

// SupportedPIDs decodes a "PIDs supported [base+1 .. base+0x20]" bitmap
// (the answer to PID base = 0x00, 0x20, 0x40, ...): bit 7 of A is PID
// base+1, bit 0 of D is base+0x20 (which says whether the next range is
// supported). It calls fn for each supported PID.
func SupportedPIDs(base byte, data []byte, fn func(pid byte)) error {
	if len(data) < 4 {
		return fmt.Errorf("supported pids %#02x: %d data bytes, want 4", base, len(data))
	}
	if base%0x20 != 0 {
		return fmt.Errorf("supported pids: %#02x is not a range base", base)
	}
	for i := range 32 {
		if data[i/8]&(0x80>>(i%8)) != 0 {
			pid := int(base) + i + 1
			if pid <= 0xFF {
				fn(byte(pid))
			}
		}
	}
	return nil
}

// VINLen is the length of a vehicle identification number.
const VINLen = 17

// ParseVIN decodes a mode 09 PID 02 response payload (after 0x49 0x02):
// an optional message count byte, then the 17 characters; ECUs pad with
// NUL or spaces before or after. It returns an error unless exactly 17
// characters remain and all are VIN characters (ISO 3779: digits and
// capital letters except I, O and Q).
func ParseVIN(data []byte) (string, error) {
	pad := func(c byte) bool { return c == 0x00 || c == ' ' || c == 0xFF }
	for len(data) > 0 && pad(data[0]) {
		data = data[1:]
	}
	for len(data) > 0 && pad(data[len(data)-1]) {
		data = data[:len(data)-1]
	}
	if len(data) == VINLen+1 && data[0] == 0x01 { // the message count byte
		data = data[1:]
	}
	for len(data) > 0 && (pad(data[0]) || data[0] == 0x01) {
		data = data[1:]
	}
	s := string(data)
	if len(s) != VINLen {
		return "", fmt.Errorf("vin: %d characters, want %d", len(s), VINLen)
	}
	for i := range len(s) {
		c := s[i]
		ok := c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != 'I' && c != 'O' && c != 'Q'
		if !ok {
			return "", fmt.Errorf("vin: character %q at %d is not a VIN character", c, i)
		}
	}
	return s, nil
}

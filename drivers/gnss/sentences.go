package gnss

import (
	"errors"
	"fmt"
	"time"
)

// knot is one knot in m/s.
const knot = 1852.0 / 3600

// GGA is a Global Positioning System Fix Data sentence.
type GGA struct {
	Time TimeOfDay
	// Lat and Lon are degrees (south and west negative); HasPos reports
	// whether the sentence carried them.
	Lat, Lon float64
	HasPos   bool
	// Quality is the fix quality: 0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK
	// fixed, 5 RTK float, 6 dead reckoning, 7 manual, 8 simulator;
	// HasQuality is false when the field is empty.
	Quality    int
	HasQuality bool
	// Sats is the number of satellites used.
	Sats    int
	HasSats bool
	HDOP    float64
	HasHDOP bool
	// Alt is the altitude above mean sea level in metres.
	Alt    float64
	HasAlt bool
}

// RMC is a Recommended Minimum Specific GNSS Data sentence.
type RMC struct {
	Time TimeOfDay
	// Valid is the status field: A or D (valid) rather than V, and an FAA
	// mode other than N where the sentence has one.
	Valid bool
	// FAA is the FAA mode indicator (NMEA 2.3+; 0 when the sentence has
	// no such field, ' ' when it is empty).
	FAA      byte
	Lat, Lon float64
	HasPos   bool
	// Speed is the speed over ground in m/s.
	Speed    float64
	HasSpeed bool
	// Course is the course over ground in degrees from true north.
	Course    float64
	HasCourse bool
	// Date is the UTC date (midnight).
	Date    time.Time
	HasDate bool
}

// GSA is a GNSS DOP and Active Satellites sentence.
type GSA struct {
	// FixType is 1 (no fix), 2 (2D) or 3 (3D); 0 when empty.
	FixType int
	// Sats counts the satellite IDs listed as used.
	Sats             int
	PDOP, HDOP, VDOP float64
	HasHDOP          bool
}

// VTG is a Course Over Ground and Ground Speed sentence.
type VTG struct {
	Course    float64
	HasCourse bool
	// Speed is in m/s.
	Speed    float64
	HasSpeed bool
	// Valid is false when the FAA mode says N (not valid).
	Valid bool
}

// GLL is a Geographic Position sentence.
type GLL struct {
	Time     TimeOfDay
	Lat, Lon float64
	HasPos   bool
	Valid    bool
	// FAA is the FAA mode indicator (0 when absent, ' ' when empty).
	FAA byte
}

// GNS is a GNSS Fix Data sentence (NMEA 4.0+).
type GNS struct {
	Time     TimeOfDay
	Lat, Lon float64
	HasPos   bool
	// Mode is the mode indicator string, one FAA letter per
	// constellation (GPS first).
	Mode string
	// Sats is the number of satellites used.
	Sats    int
	HasSats bool
	HDOP    float64
	HasHDOP bool
	// Alt is the altitude above mean sea level in metres.
	Alt    float64
	HasAlt bool
	// NavStatus is the NMEA 4.1 navigational status (S safe, C caution,
	// U unsafe, V not valid; 0 when absent).
	NavStatus byte
}

// GSV is one GNSS Satellites in View sentence of a group.
type GSV struct {
	// Count and Index are the number of sentences in the group and this
	// sentence's 1-based index; InView is the total satellites in view.
	Count, Index, InView int
}

// ZDA is a Time and Date sentence.
type ZDA struct {
	Time TimeOfDay
	// Date is the UTC date (midnight); HasDate is false when empty.
	Date    time.Time
	HasDate bool
}

// firstErr returns the first non-nil error of the field parses.
func firstErr(s *Sentence, errs ...error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s%s: %w", s.Talker, s.Type, err)
	}
	return nil
}

// ParseGGA decodes a GGA sentence.
func ParseGGA(s Sentence) (GGA, error) {
	var g GGA
	var e [6]error
	g.Time, e[0] = parseTimeOfDay(s.field(0))
	lat, okLat, e1 := parseLatLon(s.field(1), s.field(2), 90)
	lon, okLon, e2 := parseLatLon(s.field(3), s.field(4), 180)
	g.Lat, g.Lon, g.HasPos = lat, lon, okLat && okLon
	g.Quality, g.HasQuality, e[1] = optInt(s.field(5))
	g.Sats, g.HasSats, e[2] = optInt(s.field(6))
	g.HDOP, g.HasHDOP, e[3] = optFloat(s.field(7))
	g.Alt, g.HasAlt, e[4] = optFloat(s.field(8))
	return g, firstErr(&s, e[0], e1, e2, e[1], e[2], e[3], e[4])
}

// ParseRMC decodes an RMC sentence.
func ParseRMC(s Sentence) (RMC, error) {
	var r RMC
	var e [6]error
	r.Time, e[0] = parseTimeOfDay(s.field(0))
	r.Valid = (s.field(1) == "A" || s.field(1) == "D") && s.field(11) != "N"
	r.FAA = faaAt(&s, 11)
	lat, okLat, e1 := parseLatLon(s.field(2), s.field(3), 90)
	lon, okLon, e2 := parseLatLon(s.field(4), s.field(5), 180)
	r.Lat, r.Lon, r.HasPos = lat, lon, okLat && okLon
	var kn float64
	kn, r.HasSpeed, e[1] = optFloat(s.field(6))
	r.Speed = kn * knot
	r.Course, r.HasCourse, e[2] = optFloat(s.field(7))
	r.Date, r.HasDate, e[3] = parseDate(s.field(8))
	if !r.Valid {
		// Receivers without a fix send placeholder coordinates.
		r.Lat, r.Lon, r.Speed, r.Course = 0, 0, 0, 0
		r.HasPos, r.HasSpeed, r.HasCourse = false, false, false
		e1, e2 = nil, nil
	}
	return r, firstErr(&s, e[0], e1, e2, e[1], e[2], e[3])
}

// ParseGSA decodes a GSA sentence.
func ParseGSA(s Sentence) (GSA, error) {
	var g GSA
	var e [4]error
	g.FixType, _, e[0] = optInt(s.field(1))
	for i := 2; i < 14 && i < len(s.Fields); i++ {
		if s.Fields[i] != "" {
			g.Sats++
		}
	}
	g.PDOP, _, e[1] = optFloat(s.field(14))
	g.HDOP, g.HasHDOP, e[2] = optFloat(s.field(15))
	g.VDOP, _, e[3] = optFloat(s.field(16))
	return g, firstErr(&s, e[0], e[1], e[2], e[3])
}

// ParseVTG decodes a VTG sentence, both the NMEA 2.3+ form with unit
// letters and the older bare form.
func ParseVTG(s Sentence) (VTG, error) {
	var v VTG
	var e [3]error
	if s.field(1) == "T" || s.field(1) == "" && s.field(3) == "M" {
		v.Course, v.HasCourse, e[0] = optFloat(s.field(0))
		var kn, kmh float64
		var okKn, okKmh bool
		kn, okKn, e[1] = optFloat(s.field(4))
		kmh, okKmh, e[2] = optFloat(s.field(6))
		switch {
		case okKn:
			v.Speed, v.HasSpeed = kn*knot, true
		case okKmh:
			v.Speed, v.HasSpeed = kmh/3.6, true
		}
		v.Valid = s.field(8) != "N"
	} else {
		var kn float64
		v.Course, v.HasCourse, e[0] = optFloat(s.field(0))
		kn, v.HasSpeed, e[1] = optFloat(s.field(2))
		v.Speed = kn * knot
		v.Valid = true
	}
	return v, firstErr(&s, e[0], e[1], e[2])
}

// ParseGLL decodes a GLL sentence.
func ParseGLL(s Sentence) (GLL, error) {
	var g GLL
	lat, okLat, e1 := parseLatLon(s.field(0), s.field(1), 90)
	lon, okLon, e2 := parseLatLon(s.field(2), s.field(3), 180)
	g.Lat, g.Lon, g.HasPos = lat, lon, okLat && okLon
	var e3 error
	g.Time, e3 = parseTimeOfDay(s.field(4))
	g.Valid = s.field(5) == "A" && s.field(6) != "N"
	g.FAA = faaAt(&s, 6)
	if !g.Valid {
		g.Lat, g.Lon, g.HasPos = 0, 0, false
	}
	return g, firstErr(&s, e1, e2, e3)
}

// ParseGSV decodes the header of a GSV sentence.
func ParseGSV(s Sentence) (GSV, error) {
	var g GSV
	var e [3]error
	g.Count, _, e[0] = optInt(s.field(0))
	g.Index, _, e[1] = optInt(s.field(1))
	g.InView, _, e[2] = optInt(s.field(2))
	return g, firstErr(&s, e[0], e[1], e[2])
}

// ParseZDA decodes a ZDA sentence.
func ParseZDA(s Sentence) (ZDA, error) {
	var z ZDA
	var e [4]error
	z.Time, e[0] = parseTimeOfDay(s.field(0))
	d, okD, e1 := optInt(s.field(1))
	m, okM, e2 := optInt(s.field(2))
	y, okY, e3 := optInt(s.field(3))
	e[1], e[2], e[3] = e1, e2, e3
	if okD && okM && okY && d >= 1 && d <= 31 && m >= 1 && m <= 12 && y > 1900 {
		z.Date, z.HasDate = time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC), true
	}
	return z, firstErr(&s, e[0], e[1], e[2], e[3])
}

// faaAt returns the FAA mode letter in field i: 0 when the sentence has no
// such field, ' ' when it is empty.
func faaAt(s *Sentence, i int) byte {
	switch {
	case i >= len(s.Fields):
		return 0
	case s.Fields[i] == "":
		return ' '
	}
	return s.Fields[i][0]
}

// ParseGNS decodes a GNS sentence.
func ParseGNS(s Sentence) (GNS, error) {
	var g GNS
	var e [5]error
	g.Time, e[0] = parseTimeOfDay(s.field(0))
	lat, okLat, e1 := parseLatLon(s.field(1), s.field(2), 90)
	lon, okLon, e2 := parseLatLon(s.field(3), s.field(4), 180)
	g.Lat, g.Lon, g.HasPos = lat, lon, okLat && okLon
	g.Mode = s.field(5)
	g.Sats, g.HasSats, e[1] = optInt(s.field(6))
	g.HDOP, g.HasHDOP, e[2] = optFloat(s.field(7))
	g.Alt, g.HasAlt, e[3] = optFloat(s.field(8))
	if ns := s.field(12); ns != "" {
		g.NavStatus = ns[0]
	}
	return g, firstErr(&s, e[0], e1, e2, e[1], e[2], e[3])
}

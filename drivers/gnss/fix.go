package gnss

import "time"

// Mode is the fix mode, numbered as gpsd's TPV "mode".
type Mode int

// Fix modes.
const (
	ModeUnknown Mode = 0
	ModeNoFix   Mode = 1
	Mode2D      Mode = 2
	Mode3D      Mode = 3
)

// A Fix is what a receiver reported for one measurement epoch (all
// sentences carrying the same UTC time of day).
type Fix struct {
	// Time is the UTC time of the epoch; zero until a date is known (from
	// RMC or ZDA).
	Time time.Time
	// TimeOfDay is the epoch's UTC time of day.
	TimeOfDay TimeOfDay
	// TimeValid reports that Time came with a valid fix (RMC status A) or
	// a ZDA, so it can discipline a clock.
	TimeValid bool
	Mode      Mode
	// Lat and Lon are degrees, south and west negative.
	Lat, Lon float64
	HasPos   bool
	// Alt is metres above mean sea level (3D fixes only).
	Alt    float64
	HasAlt bool
	// Speed is the speed over ground in m/s.
	Speed    float64
	HasSpeed bool
	// Course is the course over ground in degrees from true north.
	Course    float64
	HasCourse bool
	// Sats is the number of satellites used in the fix.
	Sats    int
	HasSats bool
	HDOP    float64
	HasHDOP bool
	// Quality is the GGA fix quality (0 when there was no GGA).
	Quality int
	// Status qualifies the fix as gpsd's TPV "status" does (DGPS, RTK,
	// dead reckoning, simulated...). Positions whose status is not Real
	// are flagged or dropped by the driver, never published as real.
	Status Status
}

// epoch accumulates the sentences of one measurement epoch.
type epoch struct {
	fix       Fix
	timed     bool // a sentence with a time of day was seen
	gsaMode   Mode // best GSA fix type in the epoch
	gga       bool
	ggaQual   int
	ggaAlt    bool // the GGA had an altitude
	ggaNoSats bool // the GGA said 0 satellites used
	rmc       bool
	rmcOK     bool
	gll       bool
	gllOK     bool
	dateSet   bool
	zda       bool
	gns       bool // a GNS with a valid mode
	gnsAlt    bool
	gnsSats   int
	// simulated: a GGA quality 8 or FAA mode S was seen in the epoch.
	simulated bool
	// validAfterGGA: a valid RMC, GLL or GNS with a position came after
	// the epoch's GGA (gpsd lets the later sentence decide the mode).
	validAfterGGA bool
}

// Decoder assembles sentences into one Fix per epoch. It is a pure state
// machine: feed it sentences in receive order. The zero value is ready.
type Decoder struct {
	cur      epoch
	date     time.Time // last known UTC date
	hasDate  bool
	lastDay  time.Duration
	lastMode Mode // last GSA fix type, for epochs without GSA
	end      epochEnd
	status   Status // fix status; like gpsd's, it persists across epochs

	// Counters of what was not used.
	Unknown int // well-formed sentences of types the decoder ignores
	Invalid int // sentences whose fields did not parse
}

// Feed adds one sentence and returns a fix (ok true) when an epoch is
// complete: when the sentence is the one that ended the previous epochs
// (learned from the stream, as gpsd does), or else when it starts a new
// epoch (then the fix is the previous epoch's).
func (d *Decoder) Feed(s Sentence) (Fix, bool, error) {
	tod, err := d.sentenceTime(s)
	if err != nil {
		d.Invalid++
		return Fix{}, false, err
	}
	var out Fix
	var ok bool
	if tod.Valid {
		if d.end.stale(tod) {
			// A timed sentence of an epoch already emitted early: the
			// learned end was wrong. Stop ending epochs early; drop it
			// rather than emit a second fix for the same time.
			return Fix{}, false, nil
		}
		if d.cur.timed && tod.D != d.cur.fix.TimeOfDay.D {
			d.end.learn()
			out, ok = d.finish()
		}
		if !d.cur.timed {
			d.cur.timed = true
			d.cur.fix.TimeOfDay = tod
		}
	}
	if err := d.apply(s); err != nil {
		d.Invalid++
		return out, ok, err
	}
	if d.end.seen(s) && !ok && d.cur.timed {
		tod := d.cur.fix.TimeOfDay
		out, ok = d.finish()
		d.end.closed(tod)
	}
	return out, ok, nil
}

// Flush returns the fix of the epoch in progress (at end of input).
func (d *Decoder) Flush() (Fix, bool) { return d.finish() }

// sentenceTime returns the time of day a sentence carries, if any.
func (d *Decoder) sentenceTime(s Sentence) (TimeOfDay, error) {
	if s.Talker == "P" {
		return TimeOfDay{}, nil
	}
	switch s.Type {
	case "GGA", "RMC", "ZDA", "GNS":
		return parseTimeOfDay(s.field(0))
	case "GLL":
		return parseTimeOfDay(s.field(4))
	}
	return TimeOfDay{}, nil
}

// apply merges one sentence into the current epoch.
func (d *Decoder) apply(s Sentence) error {
	if s.Talker == "P" {
		d.Unknown++
		return nil
	}
	switch s.Type {
	case "GGA":
		return d.applyGGA(s)
	case "RMC":
		return d.applyRMC(s)
	case "GSA":
		return d.applyGSA(s)
	case "VTG":
		return d.applyVTG(s)
	case "GLL":
		return d.applyGLL(s)
	case "ZDA":
		return d.applyZDA(s)
	case "GNS":
		return d.applyGNS(s)
	case "GSV":
		_, err := ParseGSV(s)
		return err
	}
	d.Unknown++
	return nil
}

func (d *Decoder) applyGGA(s Sentence) error {
	g, err := ParseGGA(s)
	if err != nil {
		return err
	}
	e := &d.cur
	e.gga, e.ggaQual = true, g.Quality
	e.ggaAlt, e.ggaNoSats = g.HasAlt, g.HasSats && g.Sats == 0
	e.fix.Quality = g.Quality
	if g.HasQuality {
		if st, ok := ggaStatus(g.Quality); ok {
			d.status = st
		}
	}
	if g.Quality == 8 {
		e.simulated = true
	}
	if g.Quality > 0 && g.HasPos {
		e.fix.Lat, e.fix.Lon, e.fix.HasPos = g.Lat, g.Lon, true
		e.fix.Alt, e.fix.HasAlt = g.Alt, g.HasAlt
	}
	if g.HasSats {
		e.fix.Sats, e.fix.HasSats = g.Sats, true
	}
	if g.HasHDOP {
		e.fix.HDOP, e.fix.HasHDOP = g.HDOP, true
	}
	return nil
}

func (d *Decoder) applyRMC(s Sentence) error {
	r, err := ParseRMC(s)
	if err != nil {
		return err
	}
	e := &d.cur
	e.rmc, e.rmcOK = true, r.Valid
	// Like gpsd, take the date only from a valid RMC: receivers without a
	// fix (or in demo mode) send placeholder dates.
	if r.HasDate && r.Valid && r.Time.Valid {
		d.date, d.hasDate, d.lastDay = r.Date, true, r.Time.D
		e.dateSet = true
	}
	switch {
	case r.FAA == 'S':
		e.simulated = true
		d.status = StatusSimulated
	case !r.Valid:
		d.status = StatusNoFix
	case r.FAA != 0:
		d.status = faaStatus(r.FAA)
	default:
		d.status = StatusFix
	}
	if r.Valid && r.HasPos {
		e.fix.Lat, e.fix.Lon, e.fix.HasPos = r.Lat, r.Lon, true
		e.validAfterGGA = e.gga
	}
	if r.HasSpeed {
		e.fix.Speed, e.fix.HasSpeed = r.Speed, true
	}
	if r.HasCourse {
		e.fix.Course, e.fix.HasCourse = r.Course, true
	}
	return nil
}

func (d *Decoder) applyGSA(s Sentence) error {
	g, err := ParseGSA(s)
	if err != nil {
		return err
	}
	e := &d.cur
	if m := Mode(g.FixType); m > e.gsaMode && m <= Mode3D {
		e.gsaMode = m
	}
	if g.HasHDOP && !e.fix.HasHDOP {
		e.fix.HDOP, e.fix.HasHDOP = g.HDOP, true
	}
	return nil
}

func (d *Decoder) applyVTG(s Sentence) error {
	v, err := ParseVTG(s)
	if err != nil {
		return err
	}
	e := &d.cur
	if v.Valid && v.HasSpeed {
		e.fix.Speed, e.fix.HasSpeed = v.Speed, true
	}
	if v.Valid && v.HasCourse {
		e.fix.Course, e.fix.HasCourse = v.Course, true
	}
	return nil
}

func (d *Decoder) applyGLL(s Sentence) error {
	g, err := ParseGLL(s)
	if err != nil {
		return err
	}
	e := &d.cur
	e.gll, e.gllOK = true, g.Valid
	switch {
	case g.FAA == 'S':
		e.simulated = true
		d.status = StatusSimulated
	case !g.Valid:
	case g.FAA != 0:
		d.status = faaStatus(g.FAA)
	}
	if g.Valid && g.HasPos {
		e.validAfterGGA = e.gga
	}
	if g.HasPos && !e.fix.HasPos {
		e.fix.Lat, e.fix.Lon, e.fix.HasPos = g.Lat, g.Lon, true
	}
	return nil
}

func (d *Decoder) applyZDA(s Sentence) error {
	z, err := ParseZDA(s)
	if err != nil {
		return err
	}
	if z.HasDate {
		d.date, d.hasDate, d.lastDay = z.Date, true, z.Time.D
		d.cur.dateSet, d.cur.zda = true, true
	}
	return nil
}

func (d *Decoder) applyGNS(s Sentence) error {
	g, err := ParseGNS(s)
	if err != nil {
		return err
	}
	e := &d.cur
	if g.Mode == "" || g.Mode[0] == 'N' || g.NavStatus == 'U' || g.NavStatus == 'V' {
		return nil
	}
	st := faaStatus(g.Mode[0])
	if st == StatusSimulated {
		e.simulated = true
	}
	d.status = st
	if !g.HasPos {
		return nil
	}
	e.gns = true
	if !e.fix.HasPos {
		e.fix.Lat, e.fix.Lon, e.fix.HasPos = g.Lat, g.Lon, true
	}
	if g.HasAlt && !e.fix.HasAlt {
		e.fix.Alt, e.fix.HasAlt, e.gnsAlt = g.Alt, true, true
	}
	if g.HasSats && !e.fix.HasSats {
		e.fix.Sats, e.fix.HasSats = g.Sats, true
	}
	e.gnsSats = g.Sats
	if g.HasHDOP && !e.fix.HasHDOP {
		e.fix.HDOP, e.fix.HasHDOP = g.HDOP, true
	}
	return nil
}

// finish completes the current epoch and starts an empty one.
func (d *Decoder) finish() (Fix, bool) {
	e := d.cur
	d.cur = epoch{}
	d.end.reset()
	if !e.timed {
		return Fix{}, false
	}
	f := e.fix
	f.Mode = d.mode(&e)
	f.Status = d.status
	if e.simulated {
		// A receiver in simulator/demo mode: keep the position it made
		// up (gpsd reports it with status 8) but never as a real one.
		f.Status = StatusSimulated
		if f.HasPos && f.Mode < Mode2D {
			f.Mode = Mode2D
			if e.ggaAlt || e.gnsAlt {
				f.Mode = Mode3D
			}
		}
	}
	if f.HasPos && f.Mode >= Mode2D && !f.Status.Real() && !e.simulated && f.Status != StatusTime {
		// A position gpsd believes (mode 2D/3D) under a stale status
		// (e.g. the last GGA said quality 0): a fix in this epoch.
		f.Status = StatusFix
	}
	if e.gsaMode != ModeUnknown {
		d.lastMode = e.gsaMode
	}
	if f.Mode < Mode2D {
		f.HasPos, f.HasAlt = false, false
	}
	if f.Mode < Mode3D {
		f.HasAlt = false
	}
	if d.hasDate {
		day := d.date
		// The epoch may be just past midnight of the last date seen.
		if !e.dateSet && f.TimeOfDay.D < d.lastDay-12*time.Hour {
			day = day.AddDate(0, 0, 1)
		}
		f.Time = day.Add(f.TimeOfDay.D)
		f.TimeValid = (e.rmc && e.rmcOK && e.dateSet) || e.zda
	}
	return f, true
}

// mode decides the epoch's fix mode the way gpsd does: a GGA decides when
// present (quality 0 or no satellites used: no fix; an altitude: 3D;
// otherwise 2D), then the best GSA fix type, then RMC/GLL status with the
// last GSA mode.
func (d *Decoder) mode(e *epoch) Mode {
	invalid := (e.rmc && !e.rmcOK) || (e.gll && !e.gllOK)
	valid := (e.rmc && e.rmcOK) || (e.gll && e.gllOK)
	switch {
	case e.gga && e.ggaQual > 0 && e.ggaNoSats && e.validAfterGGA:
		// Receivers that report 0 satellites used in GGA (some Garmins)
		// but a valid GLL/RMC after it: as in gpsd, the later sentence
		// decides; the GGA's altitude makes it 3D.
		if e.ggaAlt {
			return Mode3D
		}
		return Mode2D
	case e.gga && (e.ggaQual == 0 || e.ggaNoSats):
		return ModeNoFix
	case !e.gga && e.gns && e.gnsAlt && e.gnsSats > 3:
		return Mode3D
	case !e.gga && e.gns && e.gsaMode == ModeUnknown:
		return Mode2D
	case e.gga && e.ggaAlt:
		return Mode3D
	case e.gga:
		return Mode2D
	case e.gsaMode != ModeUnknown:
		if invalid && !valid {
			return ModeNoFix
		}
		return e.gsaMode
	case invalid && !valid:
		return ModeNoFix
	case valid && d.lastMode >= Mode2D:
		return d.lastMode
	case valid:
		return Mode2D
	}
	return ModeUnknown
}

// Status is the fix status, numbered as gpsd's TPV "status".
type Status int

// Fix statuses.
const (
	StatusNoFix     Status = 0 // no fix, or not valid (GGA 0, RMC/GLL status V, FAA mode N)
	StatusFix       Status = 1 // autonomous fix
	StatusDGPS      Status = 2 // differential (GGA 2, FAA D or P)
	StatusRTKFixed  Status = 3 // RTK with fixed integers (GGA 4, FAA R)
	StatusRTKFloat  Status = 4 // RTK float (GGA 5, FAA F)
	StatusDR        Status = 5 // dead reckoning (GGA 6, FAA E)
	StatusGNSSDR    Status = 6 // GNSS plus dead reckoning
	StatusTime      Status = 7 // time only / manual input (GGA 7)
	StatusSimulated Status = 8 // simulator or demo mode (GGA 8, FAA S)
	StatusPPS       Status = 9 // P(Y) code / PPS fix (GGA 3)
)

var statusNames = [...]string{"NO_FIX", "FIX", "DGPS", "RTK_FIXED", "RTK_FLOAT", "DEAD_RECKONING", "GNSS_DR", "TIME_ONLY", "SIMULATED", "PPS"}

// String returns the status's upper-case name (the status signal's label).
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "UNKNOWN"
}

// Real reports whether a fix with this status is a real position
// measurement (autonomous, differential, RTK, PPS or dead reckoning) rather
// than none, a time-only/manual one or a simulator's.
func (s Status) Real() bool {
	switch s {
	case StatusFix, StatusDGPS, StatusRTKFixed, StatusRTKFloat, StatusDR, StatusGNSSDR, StatusPPS:
		return true
	}
	return false
}

// ggaStatus maps a GGA fix quality to a status (ok false: unknown value).
func ggaStatus(q int) (Status, bool) {
	switch q {
	case 0:
		return StatusNoFix, true
	case 1:
		return StatusFix, true
	case 2:
		return StatusDGPS, true
	case 3:
		return StatusPPS, true
	case 4:
		return StatusRTKFixed, true
	case 5:
		return StatusRTKFloat, true
	case 6:
		return StatusDR, true
	case 7:
		return StatusTime, true
	case 8:
		return StatusSimulated, true
	}
	return 0, false
}

// faaStatus maps an FAA mode indicator to a status. Unlike gpsd (which
// calls a simulator fix "no fix"), S is StatusSimulated, so that a
// receiver in demo mode is flagged rather than believed.
func faaStatus(c byte) Status {
	switch c {
	case ' ', 'N':
		return StatusNoFix
	case 'D', 'P':
		return StatusDGPS
	case 'E':
		return StatusDR
	case 'F':
		return StatusRTKFloat
	case 'R':
		return StatusRTKFixed
	case 'S':
		return StatusSimulated
	}
	return StatusFix // A and anything else
}

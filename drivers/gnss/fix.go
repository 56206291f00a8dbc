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
	case "GGA", "RMC", "ZDA":
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
	if r.HasDate {
		d.date, d.hasDate, d.lastDay = r.Date, true, r.Time.D
		e.dateSet = true
	}
	if r.Valid && r.HasPos {
		e.fix.Lat, e.fix.Lon, e.fix.HasPos = r.Lat, r.Lon, true
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
	case e.gga && (e.ggaQual == 0 || e.ggaNoSats):
		return ModeNoFix
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

package gnss

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Tolerances of the comparison with gpsd (docs/gnss.md).
const (
	tolDeg   = 1e-6 // latitude / longitude, degrees (≈ 0.1 m)
	tolAlt   = 0.1  // metres
	tolSpeed = 0.01 // m/s
)

// gpsdScore counts how the decoder's fixes agree with gpsd's TPV reports
// of one capture.
type gpsdScore struct {
	// Epochs is the number of gpsd report cycles with a position: the
	// last TPV of each distinct time that has one, plus each untimed
	// position report.
	Epochs int
	// Matched epochs have a fix at the same time of day (untimed: any
	// fix) with the same position.
	Matched int
	// Missed = Epochs - Matched.
	Missed int
	// Fixes is the number of fixes with a real position (Status.Real: what
	// the driver publishes by default); Extra of them match no gpsd
	// position report of that time. Flagged counts fixes whose position
	// carries a status that is not real (simulated, no fix, time only).
	Fixes, Extra, Flagged int
	// StatusDiff counts matched epochs where gpsd's status (DGPS, RTK,
	// dead reckoning, simulated) differs from the fix's.
	StatusDiff int
	// ModeDiff, AltDiff and SpeedDiff count matched epochs whose mode,
	// altitude or speed differ beyond the tolerance.
	ModeDiff, AltDiff, SpeedDiff int
	// NMEA is false for captures without NMEA fixes (binary protocols).
	NMEA    bool
	details []string
}

func (s *gpsdScore) note(format string, args ...any) {
	if len(s.details) < 20 {
		s.details = append(s.details, fmt.Sprintf(format, args...))
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// tpvStatus maps gpsd's TPV status (absent = 1, a plain fix) to Status.
func tpvStatus(v tpv) Status {
	if v.Status == nil {
		return StatusFix
	}
	return Status(*v.Status)
}

// scoreCapture decodes capture and scores it against capture.chk.
func scoreCapture(t *testing.T, capture string) gpsdScore {
	t.Helper()
	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fixes []Fix
	if _, _, err := DecodeAll(f, func(fx Fix) { fixes = append(fixes, fx) }); err != nil {
		t.Fatal(err)
	}
	tpvs := readTPVs(t, capture+".chk")
	tod := func(v tpv) (time.Duration, bool) {
		if v.Time == "" {
			return 0, false
		}
		ts, err := time.Parse(time.RFC3339Nano, v.Time)
		if err != nil {
			return 0, false
		}
		return ts.Sub(ts.Truncate(24 * time.Hour)), true
	}
	hasPos := func(v tpv) bool { return v.Mode >= 2 && v.Lat != nil && v.Lon != nil }
	last := map[string]int{}
	for i, v := range tpvs {
		last[v.Time] = i
	}
	var s gpsdScore
	s.NMEA = len(fixes) > 0
	byTOD := map[time.Duration]Fix{}
	for _, fx := range fixes {
		if fx.TimeOfDay.Valid {
			byTOD[fx.TimeOfDay.D] = fx
		}
	}
	for i, v := range tpvs {
		if !hasPos(v) {
			continue
		}
		d, timed := tod(v)
		if timed && last[v.Time] != i {
			continue // a partial mid-cycle report
		}
		s.Epochs++
		var got Fix
		ok := false
		if timed {
			got, ok = byTOD[d]
			ok = ok && got.HasPos && near(got.Lat, *v.Lat, tolDeg) && near(got.Lon, *v.Lon, tolDeg)
		} else {
			for _, fx := range fixes {
				if fx.HasPos && near(fx.Lat, *v.Lat, tolDeg) && near(fx.Lon, *v.Lon, tolDeg) {
					got, ok = fx, true
					break
				}
			}
		}
		if !ok {
			s.Missed++
			s.note("missed TPV %d %q %.6f,%.6f mode %d (fix: %+v)", i, v.Time, *v.Lat, *v.Lon, v.Mode, shortFix(byTOD[d]))
			continue
		}
		s.Matched++
		if tpvStatus(v) != got.Status {
			s.StatusDiff++
			s.note("status TPV %d %q: %v, want %v", i, v.Time, got.Status, tpvStatus(v))
		}
		if timed && Mode(v.Mode) != got.Mode {
			s.ModeDiff++
			s.note("mode TPV %d %q: %d, want %d", i, v.Time, got.Mode, v.Mode)
		}
		if timed && v.Alt != nil && (!got.HasAlt || !near(got.Alt, *v.Alt, tolAlt)) {
			s.AltDiff++
			s.note("alt TPV %d %q: %v/%v, want %v", i, v.Time, got.Alt, got.HasAlt, *v.Alt)
		}
		if timed && v.Speed != nil && (!got.HasSpeed || !near(got.Speed, *v.Speed, tolSpeed)) {
			s.SpeedDiff++
			s.note("speed TPV %d %q: %v, want %v", i, v.Time, got.Speed, *v.Speed)
		}
	}
	for j, fx := range fixes {
		if !fx.HasPos {
			continue
		}
		if !fx.Status.Real() {
			s.Flagged++
			continue
		}
		s.Fixes++
		if j == len(fixes)-1 {
			continue // flushed at end of input: gpsd never completed it
		}
		found := false
		for _, v := range tpvs {
			if !hasPos(v) || !near(fx.Lat, *v.Lat, tolDeg) || !near(fx.Lon, *v.Lon, tolDeg) {
				continue
			}
			if d, timed := tod(v); !timed || !fx.TimeOfDay.Valid || d == fx.TimeOfDay.D {
				found = true
				break
			}
		}
		if !found {
			s.Extra++
			s.note("extra fix %v %.6f,%.6f %+v", fx.TimeOfDay.D, fx.Lat, fx.Lon, shortFix(fx))
		}
	}
	return s
}

func shortFix(f Fix) string {
	return fmt.Sprintf("tod=%v mode=%d status=%v pos=%v", f.TimeOfDay.D, f.Mode, f.Status, f.HasPos)
}

// gpsdTable scores every capture in dir and returns a Markdown table.
func gpsdTable(t *testing.T, dir string, verbose bool) (string, gpsdScore) {
	caps := gpsdCaptures(t, dir)
	sort.Strings(caps)
	var b strings.Builder
	b.WriteString("| capture | gpsd epochs | matched | missed | fixes | extra | flagged | status diff | mode diff | alt diff | speed diff |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var tot gpsdScore
	var binary []string
	for _, c := range caps {
		s := scoreCapture(t, c)
		if !s.NMEA {
			binary = append(binary, filepath.Base(c))
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", filepath.Base(c),
			s.Epochs, s.Matched, s.Missed, s.Fixes, s.Extra, s.Flagged, s.StatusDiff, s.ModeDiff, s.AltDiff, s.SpeedDiff)
		if verbose {
			for _, d := range s.details {
				t.Logf("%s: %s", filepath.Base(c), d)
			}
		}
		tot.Epochs += s.Epochs
		tot.Matched += s.Matched
		tot.Missed += s.Missed
		tot.Fixes += s.Fixes
		tot.Extra += s.Extra
		tot.Flagged += s.Flagged
		tot.StatusDiff += s.StatusDiff
		tot.ModeDiff += s.ModeDiff
		tot.AltDiff += s.AltDiff
		tot.SpeedDiff += s.SpeedDiff
	}
	fmt.Fprintf(&b, "| **total** | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n",
		tot.Epochs, tot.Matched, tot.Missed, tot.Fixes, tot.Extra, tot.Flagged, tot.StatusDiff, tot.ModeDiff, tot.AltDiff, tot.SpeedDiff)
	if len(binary) > 0 {
		fmt.Fprintf(&b, "\nNo NMEA fixes (binary protocols, out of scope): %s\n", strings.Join(binary, ", "))
	}
	return b.String(), tot
}

// TestGpsdTable prints the comparison table of docs/gnss.md for the
// captures in GNSS_GPSD_DIR (default: testdata/gpsd, the shared gpsd
// captures).
func TestGpsdTable(t *testing.T) {
	dir := os.Getenv("GNSS_GPSD_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "gpsd") // the shared captures, copied
	}
	if len(gpsdCaptures(t, dir)) == 0 {
		t.Skipf("no gpsd captures in %s", dir)
	}
	table, tot := gpsdTable(t, dir, os.Getenv("GNSS_GPSD_VERBOSE") != "")
	t.Logf("\n%s", table)
	// The one miss on the shared captures is knownDifference's: a GGA of
	// quality 0 whose position gpsd reports and the decoder does not.
	if os.Getenv("GNSS_GPSD_DIR") == "" && (tot.Missed > 1 || tot.Extra > 0 || tot.StatusDiff > 0) {
		t.Errorf("shared captures: %d missed, %d extra, %d status differences; want at most 1, 0, 0", tot.Missed, tot.Extra, tot.StatusDiff)
	}
}

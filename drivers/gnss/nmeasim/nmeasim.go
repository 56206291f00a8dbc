// Package nmeasim generates the NMEA 0183 output of a GNSS receiver in a
// moving vehicle (RMC, GGA, GSA, VTG once per epoch), for tcu-sim and for
// tests of the gnss driver. It can open a pseudo-terminal pair so the
// driver reads it as it would a serial receiver.
package nmeasim

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// earthRadius is the WGS-84 mean radius in metres (good enough to move a
// simulated vehicle).
const earthRadius = 6371008.8

// knot is one knot in m/s.
const knot = 1852.0 / 3600

// Vehicle is the simulated receiver's state. Speed is m/s over ground,
// Course degrees from true north, TurnRate degrees per second.
type Vehicle struct {
	Time     time.Time
	Lat, Lon float64
	Alt      float64
	Speed    float64
	Course   float64
	TurnRate float64
	// Sats and HDOP are reported in GGA/GSA.
	Sats int
	HDOP float64
	// NoFix makes the receiver report that it has no fix (RMC status V,
	// GGA quality 0, GSA mode 1).
	NoFix bool
}

// Generator produces sentences for a Vehicle.
type Generator struct {
	// Talker is the talker ID ("GP", "GN", ...); default "GN".
	Talker string
	V      Vehicle
}

// Step advances the vehicle by dt along its course (great circle step).
func (g *Generator) Step(dt time.Duration) {
	v := &g.V
	s := dt.Seconds()
	d := v.Speed * s / earthRadius
	lat, lon, brg := rad(v.Lat), rad(v.Lon), rad(v.Course)
	lat2 := math.Asin(math.Sin(lat)*math.Cos(d) + math.Cos(lat)*math.Sin(d)*math.Cos(brg))
	lon2 := lon + math.Atan2(math.Sin(brg)*math.Sin(d)*math.Cos(lat), math.Cos(d)-math.Sin(lat)*math.Sin(lat2))
	v.Lat, v.Lon = deg(lat2), math.Mod(deg(lon2)+540, 360)-180
	v.Course = math.Mod(v.Course+v.TurnRate*s+360, 360)
	v.Time = v.Time.Add(dt)
}

func rad(d float64) float64 { return d * math.Pi / 180 }
func deg(r float64) float64 { return r * 180 / math.Pi }

// Epoch returns the sentences of the current epoch, each "$...*HH\r\n",
// in the order u-blox receivers use: RMC, VTG, GGA, GSA.
func (g *Generator) Epoch() []string {
	t := g.Talker
	if t == "" {
		t = "GN"
	}
	v := g.V
	utc := v.Time.UTC()
	hms := fmt.Sprintf("%02d%02d%02d.%02d", utc.Hour(), utc.Minute(), utc.Second(), utc.Nanosecond()/1e7)
	lat, ns := coord(v.Lat, 2, "N", "S")
	lon, ew := coord(v.Lon, 3, "E", "W")
	status, qual, mode, faa := "A", 1, 3, "A"
	if v.NoFix {
		status, qual, mode, faa = "V", 0, 1, "N"
	}
	kn := v.Speed / knot
	return []string{
		Sentence(fmt.Sprintf("%sRMC,%s,%s,%s,%s,%s,%s,%.3f,%.2f,%s,,,%s", t, hms, status, lat, ns, lon, ew, kn, v.Course, utc.Format("020106"), faa)),
		Sentence(fmt.Sprintf("%sVTG,%.2f,T,,M,%.3f,N,%.3f,K,%s", t, v.Course, kn, v.Speed*3.6, faa)),
		Sentence(fmt.Sprintf("%sGGA,%s,%s,%s,%s,%s,%d,%02d,%.2f,%.1f,M,0.0,M,,", t, hms, lat, ns, lon, ew, qual, v.Sats, v.HDOP, v.Alt)),
		Sentence(fmt.Sprintf("%sGSA,A,%d,%s,%.2f,%.2f,%.2f", t, mode, prns(v.Sats), v.HDOP*1.4, v.HDOP, v.HDOP*1.1)),
	}
}

// coord formats degrees as NMEA ddmm.mmmmm (width = degree digits).
func coord(d float64, width int, pos, neg string) (string, string) {
	h := pos
	if d < 0 {
		d, h = -d, neg
	}
	whole := math.Floor(d)
	min := (d - whole) * 60
	if min >= 59.999995 { // avoid printing 60.00000
		whole, min = whole+1, 0
	}
	return fmt.Sprintf("%0*d%08.5f", width, int(whole), min), h
}

// prns lists n satellite IDs in the 12 GSA slots.
func prns(n int) string {
	f := make([]string, 12)
	for i := 0; i < n && i < 12; i++ {
		f[i] = fmt.Sprintf("%02d", i+1)
	}
	return strings.Join(f, ",")
}

// Sentence frames body as "$body*HH\r\n" with its checksum.
func Sentence(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X\r\n", body, sum)
}

// Run writes one epoch to w every interval, advancing the vehicle by
// interval, until ctx ends (returns nil) or a write fails.
func (g *Generator) Run(ctx context.Context, w io.Writer, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, s := range g.Epoch() {
			if _, err := io.WriteString(w, s); err != nil {
				return fmt.Errorf("write nmea: %w", err)
			}
		}
		g.Step(interval)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

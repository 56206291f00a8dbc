package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/gnss"
)

func init() {
	register(subcommand{name: "nmea", summary: "decode an NMEA capture as the GNSS driver would",
		operands: "FILE", minArgs: 1, maxArgs: 1,
		description: "Decodes a GNSS receiver capture (raw serial bytes; \"-\" reads stdin) and prints\none JSON object per fix: time (RFC 3339 UTC), lat, lon (degrees), alt (m),\nspeed (m/s), course (degrees), mode (1 no fix, 2 2D, 3 3D), status (as gpsd's:\nonly from 2 DGPS on; 8 = simulated, never a real position). A summary goes to stderr.",
		setup:       func(*flag.FlagSet) runFunc { return runNMEA }})
}

// nmeaFix is one line of `tcu-agent nmea` output. Fields the receiver did
// not report for the epoch are omitted; time is omitted until a date is
// known.
type nmeaFix struct {
	Time   string   `json:"time,omitempty"`
	Lat    *float64 `json:"lat,omitempty"`
	Lon    *float64 `json:"lon,omitempty"`
	Alt    *float64 `json:"alt,omitempty"`
	Speed  *float64 `json:"speed,omitempty"`
	Course *float64 `json:"course,omitempty"`
	Mode   int      `json:"mode"`
	// Status is gpsd's TPV status, printed as gpsd does only from 2 on
	// (2 DGPS, 3 RTK fixed, 4 RTK float, 5 dead reckoning, 7 time only,
	// 8 simulated, 9 PPS; docs/gnss.md).
	Status int `json:"status,omitempty"`
}

// runNMEA prints one JSON object per fix (epoch) of the capture FILE ("-"
// for stdin) on stdout, and a summary on stderr.
func runNMEA(_ context.Context, args []string, stdout, stderr io.Writer) error {
	in := io.Reader(os.Stdin)
	if name := args[0]; name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	var encErr error
	fixes := 0
	rd, _, err := gnss.DecodeAll(in, func(f gnss.Fix) {
		fixes++
		if encErr == nil {
			encErr = enc.Encode(toNMEAFix(f))
		}
	})
	if err == nil {
		err = encErr
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("decode %s: %w", args[0], err)
	}
	fmt.Fprintf(stderr, "nmea: %d sentences, %d rejected (checksum or syntax), %d fixes\n", rd.Sentences, rd.Rejected, fixes)
	return nil
}

func toNMEAFix(f gnss.Fix) nmeaFix {
	opt := func(v float64, ok bool) *float64 {
		if !ok {
			return nil
		}
		return &v
	}
	out := nmeaFix{
		Lat:    opt(f.Lat, f.HasPos),
		Lon:    opt(f.Lon, f.HasPos),
		Alt:    opt(f.Alt, f.HasAlt),
		Speed:  opt(f.Speed, f.HasSpeed),
		Course: opt(f.Course, f.HasCourse),
		Mode:   int(f.Mode),
	}
	if f.Status >= gnss.StatusDGPS {
		out.Status = int(f.Status)
	}
	if !f.Time.IsZero() {
		out.Time = f.Time.UTC().Format(time.RFC3339Nano)
	}
	return out
}

package gnss

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrChecksum classifies sentences whose checksum is missing or wrong.
var ErrChecksum = errors.New("nmea checksum mismatch")

// ErrSyntax classifies sentences that are not well-formed NMEA 0183.
var ErrSyntax = errors.New("nmea syntax error")

// maxSentence bounds a sentence: NMEA says 82 bytes, real receivers
// (u-blox PUBX, MediaTek PMTKCHN) send more.
const maxSentence = 255

// A Sentence is one checksum-verified NMEA 0183 sentence.
type Sentence struct {
	// Talker is the two-letter source ("GP", "GN", "GL", "GA", "BD",
	// "GB", "GQ"), or "P" for proprietary sentences.
	Talker string
	// Type is the sentence formatter ("GGA", "RMC"), or the whole address
	// after "P" for proprietary ones.
	Type string
	// Fields are the comma-separated data fields after the address.
	Fields []string
}

// ParseSentence parses one sentence such as
// "$GNRMC,171926.00,A,4404.14063,N,...*76" (trailing CR/LF allowed). The
// checksum is required and verified.
func ParseSentence(line []byte) (Sentence, error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 7 || (line[0] != '$' && line[0] != '!') {
		return Sentence{}, fmt.Errorf("%w: no start delimiter", ErrSyntax)
	}
	if len(line) > maxSentence {
		return Sentence{}, fmt.Errorf("%w: %d bytes is too long", ErrSyntax, len(line))
	}
	star := bytes.LastIndexByte(line, '*')
	if star < 0 || star != len(line)-3 {
		return Sentence{}, fmt.Errorf("%w: no checksum", ErrChecksum)
	}
	want, err := strconv.ParseUint(string(line[star+1:]), 16, 8)
	if err != nil {
		return Sentence{}, fmt.Errorf("%w: bad checksum digits %q", ErrChecksum, line[star+1:])
	}
	body := line[1:star]
	var sum byte
	for _, c := range body {
		if c < 0x20 || c > 0x7e {
			return Sentence{}, fmt.Errorf("%w: non-printable byte %#x", ErrSyntax, c)
		}
		sum ^= c
	}
	if sum != byte(want) {
		return Sentence{}, fmt.Errorf("%w: computed %02X, sentence says %02X", ErrChecksum, sum, want)
	}
	parts := strings.Split(string(body), ",")
	addr := parts[0]
	switch {
	case len(addr) >= 2 && addr[0] == 'P':
		return Sentence{Talker: "P", Type: addr[1:], Fields: parts[1:]}, nil
	case len(addr) == 5:
		return Sentence{Talker: addr[:2], Type: addr[2:], Fields: parts[1:]}, nil
	}
	return Sentence{}, fmt.Errorf("%w: address %q", ErrSyntax, addr)
}

// field returns field i or "" when the sentence is shorter.
func (s *Sentence) field(i int) string {
	if i < len(s.Fields) {
		return s.Fields[i]
	}
	return ""
}

// TimeOfDay is a UTC time of day from an NMEA hhmmss.ss field.
type TimeOfDay struct {
	// D is the offset from midnight; Valid is false for an empty field.
	D     time.Duration
	Valid bool
}

func parseTimeOfDay(s string) (TimeOfDay, error) {
	if s == "" {
		return TimeOfDay{}, nil
	}
	if len(s) < 6 {
		return TimeOfDay{}, fmt.Errorf("%w: time %q", ErrSyntax, s)
	}
	h, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[2:4])
	sec, err3 := strconv.ParseFloat(s[4:], 64)
	if err := errors.Join(err1, err2, err3); err != nil || h > 23 || m > 59 || sec < 0 || sec >= 61 {
		return TimeOfDay{}, fmt.Errorf("%w: time %q", ErrSyntax, s)
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*1e6+0.5)*time.Microsecond
	return TimeOfDay{D: d, Valid: true}, nil
}

// parseDate parses ddmmyy (RMC) into a UTC midnight; years 80-99 are 19xx.
func parseDate(s string) (time.Time, bool, error) {
	if s == "" {
		return time.Time{}, false, nil
	}
	if len(s) != 6 {
		return time.Time{}, false, fmt.Errorf("%w: date %q", ErrSyntax, s)
	}
	d, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[2:4])
	y, err3 := strconv.Atoi(s[4:6])
	if err := errors.Join(err1, err2, err3); err != nil || d < 1 || d > 31 || m < 1 || m > 12 {
		return time.Time{}, false, fmt.Errorf("%w: date %q", ErrSyntax, s)
	}
	if y < 80 {
		y += 2000
	} else {
		y += 1900
	}
	return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC), true, nil
}

// parseLatLon parses ddmm.mmmm / dddmm.mmmm with its hemisphere letter
// into signed degrees. ok is false for empty fields.
func parseLatLon(v, hemi string, maxDeg float64) (deg float64, ok bool, err error) {
	if v == "" || hemi == "" {
		return 0, false, nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || !(x >= 0) || math.IsInf(x, 0) {
		return 0, false, fmt.Errorf("%w: coordinate %q", ErrSyntax, v)
	}
	whole := float64(int64(x / 100))
	deg = whole + (x-whole*100)/60
	if deg > maxDeg || x-whole*100 >= 60 {
		return 0, false, fmt.Errorf("%w: coordinate %q out of range", ErrSyntax, v)
	}
	switch hemi {
	case "N", "E":
	case "S", "W":
		deg = -deg
	default:
		return 0, false, fmt.Errorf("%w: hemisphere %q", ErrSyntax, hemi)
	}
	return deg, true, nil
}

// optFloat parses an optional decimal field.
func optFloat(s string) (float64, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("%w: number %q", ErrSyntax, s)
	}
	return v, true, nil
}

// optInt parses an optional integer field.
func optInt(s string) (int, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, false, fmt.Errorf("%w: integer %q", ErrSyntax, s)
	}
	return v, true, nil
}

// Package candump reads and writes can-utils `candump -l` log files
// ("(1436509052.249713) vcan0 044#2A366C2A", CAN FD as "123##1AABB") and
// is the "candump" driver: it replays such a file (bench replays, bug
// reports) at a chosen speed, optionally looping, decoding frames through a
// DBC exactly as the "can" driver does (drivers/canmap).
package candump

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// Record is one line of a candump log.
type Record struct {
	// Time is the logged receive time.
	Time time.Time
	// Interface is the logged interface name ("can0").
	Interface string
	// Frame is the frame; its Time equals Record.Time.
	Frame canbus.Frame
}

// Parse errors; test with errors.Is.
var (
	// ErrSyntax means the line is not a candump -l line.
	ErrSyntax = errors.New("candump syntax")
	// ErrUnsupported means the line is a remote (RTR) or error frame,
	// which canbus.Frame does not represent.
	ErrUnsupported = errors.New("unsupported candump frame")
)

// ParseLine parses one candump -l line (without its newline) into r.
func ParseLine(line []byte, r *Record) error {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) < 2 || line[0] != '(' {
		return fmt.Errorf("%w: line does not start with (timestamp)", ErrSyntax)
	}
	end := indexByte(line, ')')
	if end < 0 {
		return fmt.Errorf("%w: unterminated timestamp", ErrSyntax)
	}
	ts, err := parseTime(line[1:end])
	if err != nil {
		return err
	}
	rest := line[end+1:]
	if len(rest) < 2 || rest[0] != ' ' {
		return fmt.Errorf("%w: no interface after timestamp", ErrSyntax)
	}
	rest = rest[1:]
	sp := indexByte(rest, ' ')
	if sp <= 0 {
		return fmt.Errorf("%w: no frame after interface", ErrSyntax)
	}
	iface, frame := rest[:sp], rest[sp+1:]
	if end := indexByte(frame, ' '); end >= 0 { // newer can-utils may append fields
		frame = frame[:end]
	}
	var f canbus.Frame
	if err := parseFrame(frame, &f); err != nil {
		return err
	}
	f.Time = ts
	if r.Interface != string(iface) { // reuse the string when unchanged
		r.Interface = string(iface)
	}
	r.Time, r.Frame = ts, f
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parseTime parses "seconds.fraction" (microseconds in candump; up to
// nanoseconds accepted).
func parseTime(b []byte) (time.Time, error) {
	dot := indexByte(b, '.')
	if dot <= 0 || dot == len(b)-1 || len(b)-dot-1 > 9 {
		return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrSyntax, b)
	}
	sec, err := strconv.ParseInt(string(b[:dot]), 10, 64)
	if err != nil || sec < 0 || sec > 1<<33 {
		return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrSyntax, b)
	}
	var ns int64
	digits := b[dot+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrSyntax, b)
		}
		ns = ns*10 + int64(c-'0')
	}
	for range 9 - len(digits) {
		ns *= 10
	}
	return time.Unix(sec, ns), nil
}

// parseFrame parses "ID#DATA", "ID##FDATA" and the RTR form "ID#R".
func parseFrame(b []byte, f *canbus.Frame) error {
	hash := indexByte(b, '#')
	if hash != 3 && hash != 8 {
		return fmt.Errorf("%w: frame %q: want 3 or 8 hex digits before #", ErrSyntax, b)
	}
	id, ok := hexVal(b[:hash])
	if !ok {
		return fmt.Errorf("%w: frame %q: bad identifier", ErrSyntax, b)
	}
	f.Extended = hash == 8
	if f.Extended && id > canbus.MaxExtendedID {
		return fmt.Errorf("%w: frame %q: error frame or flag bits", ErrUnsupported, b)
	}
	f.ID = uint32(id)
	data := b[hash+1:]
	if len(data) > 0 && data[0] == '#' { // CAN FD: ##<flags nibble><data>
		if len(data) < 2 {
			return fmt.Errorf("%w: frame %q: fd frame without flags", ErrSyntax, b)
		}
		if _, ok := hexVal(data[1:2]); !ok {
			return fmt.Errorf("%w: frame %q: bad fd flags", ErrSyntax, b)
		}
		f.FD = true
		data = data[2:]
	} else if len(data) > 0 && (data[0] == 'R' || data[0] == 'r') {
		return fmt.Errorf("%w: frame %q: remote frame", ErrUnsupported, b)
	}
	if u := indexByte(data, '_'); u >= 0 && !f.FD { // len8_dlc suffix "_D"
		data = data[:u]
	}
	n := 0
	for i := 0; i < len(data); {
		if data[i] == '.' {
			i++
			continue
		}
		if i+1 >= len(data) || n >= canbus.MaxFDLen {
			return fmt.Errorf("%w: frame %q: bad data length", ErrSyntax, b)
		}
		v, ok := hexVal(data[i : i+2])
		if !ok {
			return fmt.Errorf("%w: frame %q: bad data byte", ErrSyntax, b)
		}
		f.Data[n] = byte(v)
		n++
		i += 2
	}
	f.Len = uint8(n)
	if err := f.Validate(); err != nil {
		return fmt.Errorf("%w: frame %q: %w", ErrSyntax, b, err)
	}
	return nil
}

func hexVal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

const hexDigits = "0123456789ABCDEF"

// AppendLine appends r as a candump -l line, with its newline, to dst.
// FD frames are written with the BRS flag set ("##1").
func AppendLine(dst []byte, r *Record) []byte {
	t := r.Time
	if t.IsZero() {
		t = r.Frame.Time
	}
	dst = append(dst, '(')
	dst = appendPadded(dst, t.Unix(), 10)
	dst = append(dst, '.')
	dst = appendPadded(dst, int64(t.Nanosecond()/1000), 6)
	dst = append(dst, ") "...)
	dst = append(dst, r.Interface...)
	dst = append(dst, ' ')
	f := &r.Frame
	width := 3
	if f.Extended {
		width = 8
	}
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[f.ID>>(4*i)&0xF])
	}
	dst = append(dst, '#')
	if f.FD {
		dst = append(dst, '#', '1')
	}
	for _, c := range f.Payload() {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return append(dst, '\n')
}

func appendPadded(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

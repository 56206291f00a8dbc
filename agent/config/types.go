package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s", "72h") in the config file.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"250ms\", \"30s\", \"2h\")", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Size is a byte count written as "64MiB", "512KiB", "1GB" or a plain number.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// UnmarshalText parses a size with an optional unit.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(str, u.suffix) {
			str, mult = strings.TrimSpace(strings.TrimSuffix(str, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q (want e.g. \"64MiB\", \"512KiB\", \"1GB\")", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText formats s in the largest exact binary unit.
func (s Size) MarshalText() ([]byte, error) {
	n := int64(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return []byte(strconv.FormatInt(n/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(n, 10) + "B"), nil
}

// AutoSize is a Size that may also be "auto" (0): the component picks a
// value itself (e.g. proportional to the file system).
type AutoSize int64

// UnmarshalText parses "auto" or a size.
func (s *AutoSize) UnmarshalText(b []byte) error {
	if strings.TrimSpace(string(b)) == "auto" {
		*s = 0
		return nil
	}
	var sz Size
	if err := sz.UnmarshalText(b); err != nil {
		return fmt.Errorf("invalid size %q (want \"auto\" or e.g. \"8MiB\")", b)
	}
	*s = AutoSize(sz)
	return nil
}

// MarshalText formats s as "auto" or a size.
func (s AutoSize) MarshalText() ([]byte, error) {
	if s == 0 {
		return []byte("auto"), nil
	}
	return Size(s).MarshalText()
}

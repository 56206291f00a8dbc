package config

import (
	"fmt"
	"strings"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s", "72h") in the config file; negative durations are rejected.
type Duration = units.Duration

// Size is a byte count written as "64MiB", "512KiB", "1GB" or a plain number.
type Size = units.Size

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

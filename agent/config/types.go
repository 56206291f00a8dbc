package config

import "github.com/tcu-agent/tcu-agent/internal/units"

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s", "72h") in the config file; negative durations are rejected.
type Duration = units.Duration

// Size is a byte count written as "64MiB", "512KiB", "1GB" or a plain number.
type Size = units.Size

package config

import (
	"errors"
	"regexp"
	"sort"
	"strings"
)

// validate checks values after decoding; every problem is recorded.
func (d *decoder) validate(c *Config, ext Extensions) {
	if c.Agent.StateDir == "" {
		d.errorf("agent.state_dir", "state_dir must not be empty")
	}
	switch c.Agent.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		d.errorf("agent.log_level", "log_level %q not one of debug, info, warn, error", c.Agent.LogLevel)
	}
	if c.Agent.LogFormat != "text" && c.Agent.LogFormat != "json" {
		d.errorf("agent.log_format", "log_format %q not one of text, json", c.Agent.LogFormat)
	}
	switch c.Buffer.Sync {
	case "always", "group", "none":
	default:
		d.errorf("buffer.sync", "sync %q not one of always, group, none", c.Buffer.Sync)
	}
	if c.Buffer.MaxBytes < 1<<20 {
		d.errorf("buffer.max_bytes", "max_bytes %d too small; at least 1MiB", c.Buffer.MaxBytes)
	}
	if w := c.Buffer.GroupWindow.Std(); w > 50e6 {
		d.errorf("buffer.group_window", "group_window %s too long; at most 50ms", w)
	}
	if w := c.Buffer.GroupMaxWindow.Std(); w > 2e9 || w < 0 {
		d.errorf("buffer.group_max_window", "group_max_window %s out of range; 0 to 2s", w)
	}
	if w := c.Buffer.IdleClose.Std(); w != 0 && w < 1e9 {
		d.errorf("buffer.idle_close", "idle_close %s out of range; 0 (never) or at least 1s", w)
	}
	if c.Buffer.GroupFill < 0 {
		d.errorf("buffer.group_fill", "group_fill %d negative", c.Buffer.GroupFill)
	}
	if c.Telemetry.Interval.Std() < 1e7 {
		d.errorf("telemetry.interval", "interval %s too short; at least 10ms", c.Telemetry.Interval.Std())
	}
	if c.Telemetry.MaxPending <= 0 {
		d.errorf("telemetry.max_pending", "max_pending must be positive")
	}
	names := make([]string, 0, len(ext))
	for n := range ext {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !c.Present[n] {
			continue
		}
		v, ok := ext[n].(Validator)
		if !ok {
			continue
		}
		if err := v.Validate(); err != nil {
			for _, e := range unjoin(err) {
				d.errorf(keyOf(n, e.Error()), "[%s] %v", n, e)
			}
		}
	}
}

// keyOf returns the key path a section's validation message starts with
// ("mqtt.keep_alive: ..."), or the section itself.
func keyOf(section, msg string) string {
	if m := leadingKeyRe.FindStringSubmatch(msg); m != nil && strings.HasPrefix(m[1], section) {
		return m[1]
	}
	return section
}

var leadingKeyRe = regexp.MustCompile(`^([A-Za-z0-9_.\[\]]+): `)

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// IsConfigError reports whether err is (or joins) configuration errors.
func IsConfigError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Package config loads and validates the tcu-agent TOML configuration.
//
// The file is versioned (`version = 1`) and decoded strictly: an unknown key
// or a bad value is an error naming file:line and the key. Sections owned by
// other packages (the MQTT session, provisioning, commands) and each
// `[[driver]]` table are decoded into structs those packages provide, with
// the same strictness and the same file:line reporting; this package does not
// import them.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// CurrentVersion is the only config schema version this build accepts.
const CurrentVersion = 1

// Config is a loaded, validated configuration.
type Config struct {
	// File is the path the configuration was loaded from.
	File string
	// Dir is File's directory; relative paths are resolved against it.
	Dir string

	Version   int       `toml:"version"`
	Agent     Agent     `toml:"agent"`
	Buffer    Buffer    `toml:"buffer"`
	Telemetry Telemetry `toml:"telemetry"`
	Health    Health    `toml:"health"`

	// Drivers are the configured [[driver]] instances, initialised.
	Drivers []Driver `toml:"-"`
	// Present lists the top-level sections the file contains; absent
	// extension sections keep their defaults and are not validated.
	Present map[string]bool `toml:"-"`
}

// Agent is the [agent] section.
type Agent struct {
	// ThingName is the device's thing name when it is not provisioned
	// (development, static identity). A provisioned identity overrides it.
	ThingName string `toml:"thing_name"`
	// StateDir holds the queue, the identity and the command ledger.
	StateDir string `toml:"state_dir"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// LogFormat is "text" (logfmt-like key=value) or "json" (one JSON
	// object per line).
	LogFormat string `toml:"log_format"`
}

// Buffer is the [buffer] section (the durable store-and-forward queue).
type Buffer struct {
	MaxBytes    Size     `toml:"max_bytes"`
	MaxRecords  int64    `toml:"max_records"`
	Sync        string   `toml:"sync"`
	GroupWindow Duration `toml:"group_window"`
	// GroupMaxWindow and GroupFill make the group window adaptive
	// (buffer.Options): it runs on past group_window, up to
	// group_max_window, until group_fill bytes of records are pending.
	GroupMaxWindow Duration `toml:"group_max_window"`
	GroupFill      Size     `toml:"group_fill"`
	LiveWindow     Duration `toml:"live_window"`
	// TelemetryTTL drops periodic telemetry older than this (0 = keep).
	TelemetryTTL Duration `toml:"telemetry_ttl"`
	// MinFree is the free-space floor of the state_dir's file system
	// below which the buffer sheds; 0 ("auto") lets the buffer pick one
	// proportional to the file system's size.
	MinFree AutoSize `toml:"min_free"`
	// IdleClose closes the store after it has not been used for this
	// long and reopens it on the next use (buffer.Options.IdleClose): a
	// parked vehicle's agent then costs no store wake-ups. 0 = never.
	IdleClose Duration `toml:"idle_close"`
}

// Telemetry is the [telemetry] section.
type Telemetry struct {
	// Interval is how often the latest value of every signal that changed
	// is written as one telemetry record.
	Interval Duration `toml:"interval"`
	// Events lists signal names whose every change is also written as an
	// event record (higher priority than telemetry).
	Events []string `toml:"events"`
	// MaxPending bounds samples held in memory between two intervals;
	// beyond it samples are dropped and counted.
	MaxPending int `toml:"max_pending"`
}

// Health is the [health] section.
type Health struct {
	// CtlSocket is the local control socket for `tcu-agent status`.
	CtlSocket string `toml:"ctl_socket"`
	// MetricsAddr is the Prometheus endpoint (loopback only); empty = off.
	MetricsAddr string `toml:"metrics_addr"`
}

// Driver is one configured [[driver]] table.
type Driver struct {
	Name string
	Kind string
	// Line is where the driver's table starts in the file.
	Line   int
	Driver drivers.Driver
	// Table is the driver's table as decoded from TOML (name and kind
	// included): the agent compares it to tell a changed driver from an
	// unchanged one when a configuration is applied at run time.
	Table map[string]any
}

// Default returns the built-in defaults; the file is decoded over them.
func Default() Config {
	return Config{
		Version: CurrentVersion,
		Agent:   Agent{StateDir: "/var/lib/tcu-agent", LogLevel: "info", LogFormat: "text"},
		Buffer: Buffer{
			MaxBytes: 64 << 20, Sync: "group",
			GroupWindow: Duration(20e6), GroupMaxWindow: Duration(500e6), GroupFill: 64 << 10,
			LiveWindow: Duration(10e9), IdleClose: Duration(60e9),
		},
		Telemetry: Telemetry{Interval: Duration(1e9), MaxPending: 10000},
		Health:    Health{CtlSocket: "/run/tcu-agent/ctl.sock"},
	}
}

// Validator is implemented by section structs that can check their values.
type Validator interface{ Validate() error }

// Extensions maps a top-level section name to a pointer the section is
// decoded into (pre-filled with that package's defaults).
type Extensions map[string]any

// Load reads, decodes and validates path. Every problem found is returned
// (joined), each as an *Error naming file:line.
func Load(path string, ext Extensions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, ext)
}

// Parse is Load on data already read; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte, ext Extensions) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	d := &decoder{file: path, dir: filepath.Dir(abs), data: data, idx: indexKeys(data)}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, d.syntaxError(err)
	}
	cfg := Default()
	cfg.File, cfg.Dir = path, d.dir
	cfg.Present = make(map[string]bool, len(doc))
	for k := range doc {
		cfg.Present[k] = true
	}
	d.decodeVersion(doc, &cfg)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	core := map[string]any{"agent": &cfg.Agent, "buffer": &cfg.Buffer, "telemetry": &cfg.Telemetry, "health": &cfg.Health}
	for _, name := range sortedKeys(doc) {
		raw := doc[name]
		switch {
		case name == "version":
		case name == "driver":
			cfg.Drivers = d.decodeDrivers(raw)
		case core[name] != nil:
			d.decodeSection(name, raw, core[name])
		case ext[name] != nil:
			d.decodeSection(name, raw, ext[name])
		default:
			d.errorf(name, "unknown section or key %q (typo, or not supported by this version)", name)
		}
	}
	d.validate(&cfg, ext)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return &cfg, nil
}

func (d *decoder) decodeVersion(doc map[string]any, cfg *Config) {
	v, ok := doc["version"]
	if !ok {
		d.errs = append(d.errs, &Error{File: d.file, Line: 1, Msg: fmt.Sprintf("missing top-level key \"version\"; this build reads version = %d", CurrentVersion)})
		return
	}
	n, ok := v.(int64)
	if !ok || n != CurrentVersion {
		d.errorf("version", "unsupported config version %v; this build reads version = %d", v, CurrentVersion)
		return
	}
	cfg.Version = int(n)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ResolvePath makes p absolute relative to the config file's directory.
func (c *Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// Error is one configuration problem.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key != "" && !strings.Contains(e.Msg, e.Key) {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

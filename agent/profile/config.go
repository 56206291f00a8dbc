package profile

import (
	"errors"
	"fmt"
	"math"
	"path"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Duration is a time.Duration written as a Go duration string in config.
type Duration = units.Duration

// Shipped profile names.
const (
	Driving   = "driving"
	Parked    = "parked"
	DeepSleep = "deep_sleep"
)

// Record classes as the buffer numbers them (buffer.ClassCritical...);
// this package does not import the buffer.
const (
	ClassCritical  uint8 = 0
	ClassEvent     uint8 = 1
	ClassTelemetry uint8 = 2
)

var classNames = map[string]uint8{"critical": ClassCritical, "event": ClassEvent, "telemetry": ClassTelemetry}

// Config is the [profile] section.
type Config struct {
	// Force pins a profile by name (operator override, benchmarks); empty
	// lets the rules decide. The battery guard still applies.
	Force string `toml:"force"`
	// Initial is the profile at start, until a rule matches.
	Initial string `toml:"initial"`
	// MinDwell is the shortest time a profile is kept before a rule may
	// switch to another one (hysteresis against flapping). The battery
	// guard and Force do not wait for it.
	MinDwell Duration `toml:"min_dwell"`
	// IgnitionSignal is the signal holding the ignition state; a value in
	// IgnitionOn means on, any other value off.
	IgnitionSignal string    `toml:"ignition_signal"`
	IgnitionOn     []float64 `toml:"ignition_on"`
	// SpeedSignal is the vehicle speed in km/h.
	SpeedSignal string `toml:"speed_signal"`
	// BatterySignal is the 12 V battery voltage in V.
	BatterySignal string `toml:"battery_signal"`
	// BusSources are the driver names whose samples count as bus
	// activity for bus_silent_for; empty means every driver that is not
	// a GNSS receiver.
	BusSources []string `toml:"bus_sources"`
	// Rules choose the profile: the first rule whose conditions all hold
	// wins; when none does, the current profile stays.
	Rules []Rule `toml:"rule"`
	// Settings are the profiles and what each overrides. Configuring any
	// replaces the shipped three.
	Settings []Settings `toml:"settings"`
	// Battery is the 12 V battery guard.
	Battery Battery `toml:"battery"`
}

// Rule is one [[profile.rule]]: every condition set must hold.
type Rule struct {
	// Profile is chosen when the rule matches.
	Profile string `toml:"profile"`
	// Ignition is "on", "off" or "" (any). An unknown ignition state
	// (no sample yet) matches neither.
	Ignition string `toml:"ignition"`
	// SpeedAbove / SpeedBelow compare the speed signal (km/h).
	SpeedAbove *float64 `toml:"speed_above"`
	SpeedBelow *float64 `toml:"speed_below"`
	// OffFor: the ignition has been off at least this long.
	OffFor Duration `toml:"off_for"`
	// BusSilentFor: no sample from a bus source for at least this long.
	BusSilentFor Duration `toml:"bus_silent_for"`
	// BatteryBelow / BatteryAbove compare the battery voltage (V).
	BatteryBelow *float64 `toml:"battery_below"`
	BatteryAbove *float64 `toml:"battery_above"`
	// For: the conditions must have held continuously this long before
	// the rule matches (entry hysteresis).
	For Duration `toml:"for"`
}

// Settings is one [[profile.settings]]: what a profile overrides. Zero
// values keep the configured defaults ([telemetry], [mqtt], drivers).
type Settings struct {
	Name string `toml:"name"`
	// TelemetryInterval replaces [telemetry] interval.
	TelemetryInterval Duration `toml:"telemetry_interval"`
	// BatchLatency replaces [mqtt] batch_latency.
	BatchLatency Duration `toml:"batch_latency"`
	// KeepAlive replaces [mqtt] keep_alive (30s–20m).
	KeepAlive Duration `toml:"keep_alive"`
	// GNSSWindow and GNSSPeriod duty-cycle the GNSS receiver: it is read
	// for at most GNSSWindow (until its first usable fix) every
	// GNSSPeriod; 0 reads it continuously.
	GNSSWindow Duration `toml:"gnss_window"`
	GNSSPeriod Duration `toml:"gnss_period"`
	// Publish lists the record classes published ("critical", "event",
	// "telemetry"); the others stay buffered. Empty publishes all.
	Publish []string `toml:"publish"`
	// Signals override per-signal sampling of the CAN drivers.
	Signals []Sampling `toml:"signal"`
	// GOMAXPROCS, when > 0, is the Go runtime's GOMAXPROCS while the
	// profile is in effect; 0 restores the runtime's own choice (the
	// CPUs, with its automatic updates; or $GOMAXPROCS if set). 1 while
	// parked halves the context switches of each wake-up: no second
	// thread is woken to look for work (docs/perf/idle.md).
	GOMAXPROCS int `toml:"gomaxprocs"`
}

// Sampling overrides the sampling policy of the signals matching Match (a
// name or a path.Match glob such as "Vehicle.*" or "*"). Unset fields
// keep the configured policy.
type Sampling struct {
	Match       string    `toml:"match"`
	Deadband    *float64  `toml:"deadband"`
	DeadbandPct *float64  `toml:"deadband_pct"`
	MinInterval *Duration `toml:"min_interval"`
	Heartbeat   *Duration `toml:"heartbeat"`
}

// Battery is [profile.battery], the 12 V battery guard.
type Battery struct {
	Enabled bool `toml:"enabled"`
	// Low: below Low volts for LowFor → level low (LowProfile).
	Low    float64  `toml:"low"`
	LowFor Duration `toml:"low_for"`
	// Critical: below Critical volts for CriticalFor → level critical:
	// LowProfile, and only critical records (command results, alarms)
	// are published.
	Critical    float64  `toml:"critical"`
	CriticalFor Duration `toml:"critical_for"`
	// Recover: at or above Recover volts for RecoverFor → back to normal.
	Recover    float64  `toml:"recover"`
	RecoverFor Duration `toml:"recover_for"`
	// LowProfile is the minimal profile used while low or critical.
	LowProfile string `toml:"low_profile"`
	// Hook is an optional command (argv, no shell) run on entering
	// critical, e.g. to ask the platform's power manager to cut the
	// modem; its result is logged.
	Hook        []string `toml:"hook"`
	HookTimeout Duration `toml:"hook_timeout"`
}

func f64(v float64) *float64 { return &v }
func dur(d time.Duration) *Duration {
	x := Duration(d)
	return &x
}

// maxGOMAXPROCS bounds the gomaxprocs setting (a typo, not a TCU).
const maxGOMAXPROCS = 256

// DefaultConfig returns the shipped profiles, rules and battery guard.
func DefaultConfig() Config {
	return Config{
		Initial:        Driving,
		MinDwell:       Duration(10 * time.Second),
		IgnitionSignal: "Vehicle.LowVoltageSystemState",
		IgnitionOn:     []float64{2, 3}, // VSS LowVoltageSystemState ON, START
		SpeedSignal:    "Vehicle.Speed",
		BatterySignal:  "Vehicle.LowVoltageBattery.CurrentVoltage",
		Rules: []Rule{
			{Profile: Driving, Ignition: "on"},
			{Profile: Driving, SpeedAbove: f64(5)},
			{Profile: DeepSleep, BusSilentFor: Duration(15 * time.Minute)},
			{Profile: DeepSleep, Ignition: "off", OffFor: Duration(4 * time.Hour)},
			{Profile: Parked, Ignition: "off", For: Duration(30 * time.Second)},
		},
		Settings: []Settings{
			{Name: Driving},
			{Name: Parked, TelemetryInterval: Duration(time.Minute), BatchLatency: Duration(10 * time.Second),
				KeepAlive: Duration(10 * time.Minute), GNSSWindow: Duration(time.Minute), GNSSPeriod: Duration(10 * time.Minute),
				GOMAXPROCS: 1, Signals: []Sampling{{Match: "*", Heartbeat: dur(10 * time.Minute)}}},
			{Name: DeepSleep, TelemetryInterval: Duration(10 * time.Minute), BatchLatency: Duration(time.Minute),
				KeepAlive: Duration(20 * time.Minute), GNSSWindow: Duration(time.Minute), GNSSPeriod: Duration(time.Hour),
				Publish: []string{"critical", "event"}, GOMAXPROCS: 1,
				Signals: []Sampling{{Match: "*", Heartbeat: dur(time.Hour)}}},
		},
		Battery: Battery{
			Enabled: true,
			Low:     12.0, LowFor: Duration(10 * time.Minute),
			Critical: 11.6, CriticalFor: Duration(2 * time.Minute),
			Recover: 12.4, RecoverFor: Duration(time.Minute),
			LowProfile:  DeepSleep,
			HookTimeout: Duration(10 * time.Second),
		},
	}
}

// Validate checks the section; every problem is returned, each starting
// with its key path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("profile.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	names := map[string]bool{}
	for i, s := range c.Settings {
		k := fmt.Sprintf("settings[%d]", i)
		switch {
		case s.Name == "":
			bad(k+".name", "a profile needs a name")
		case names[s.Name]:
			bad(k+".name", "profile %q defined twice", s.Name)
		}
		names[s.Name] = true
		if ka := s.KeepAlive.Std(); ka != 0 && (ka < 30*time.Second || ka > 1200*time.Second) {
			bad(k+".keep_alive", "%v outside AWS IoT's 30s–20m", ka)
		}
		if iv := s.TelemetryInterval.Std(); iv != 0 && iv < 10*time.Millisecond {
			bad(k+".telemetry_interval", "%v too short; at least 10ms", iv)
		}
		if s.GOMAXPROCS < 0 || s.GOMAXPROCS > maxGOMAXPROCS {
			bad(k+".gomaxprocs", "gomaxprocs %d: 0 (the runtime's default) or 1–%d", s.GOMAXPROCS, maxGOMAXPROCS)
		}
		if (s.GNSSWindow == 0) != (s.GNSSPeriod == 0) || s.GNSSWindow > s.GNSSPeriod {
			bad(k+".gnss_window", "gnss_window %v and gnss_period %v: set both (window ≤ period) or neither", s.GNSSWindow.Std(), s.GNSSPeriod.Std())
		}
		for _, p := range s.Publish {
			if _, ok := classNames[p]; !ok {
				bad(k+".publish", "class %q not one of critical, event, telemetry", p)
			}
		}
		for j, sg := range s.Signals {
			kk := fmt.Sprintf("%s.signal[%d]", k, j)
			if _, err := path.Match(sg.Match, ""); sg.Match == "" || err != nil {
				bad(kk+".match", "%q is not a signal name or glob", sg.Match)
			}
			for name, v := range map[string]*float64{"deadband": sg.Deadband, "deadband_pct": sg.DeadbandPct} {
				if v != nil && (*v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0)) {
					bad(kk+"."+name, "%v must be a finite number ≥ 0", *v)
				}
			}
			if sg.Heartbeat != nil && sg.MinInterval != nil && *sg.Heartbeat > 0 && *sg.Heartbeat < *sg.MinInterval {
				bad(kk+".heartbeat", "heartbeat %v is shorter than min_interval %v", sg.Heartbeat.Std(), sg.MinInterval.Std())
			}
		}
	}
	known := func(key, name string) {
		if !names[name] {
			bad(key, "unknown profile %q (defined: %v)", name, c.names())
		}
	}
	if c.Force != "" {
		known("force", c.Force)
	}
	known("initial", c.Initial)
	if c.MinDwell < 0 {
		bad("min_dwell", "must not be negative")
	}
	for i, r := range c.Rules {
		k := fmt.Sprintf("rule[%d]", i)
		known(k+".profile", r.Profile)
		if r.Ignition != "" && r.Ignition != "on" && r.Ignition != "off" {
			bad(k+".ignition", "%q not one of on, off", r.Ignition)
		}
		if r.OffFor > 0 && r.Ignition == "on" {
			bad(k+".off_for", "contradicts ignition = \"on\"")
		}
		if (r.Ignition != "" || r.OffFor > 0) && c.IgnitionSignal == "" {
			bad(k+".ignition", "needs [profile] ignition_signal")
		}
		if (r.SpeedAbove != nil || r.SpeedBelow != nil) && c.SpeedSignal == "" {
			bad(k+".speed_above", "needs [profile] speed_signal")
		}
		if (r.BatteryAbove != nil || r.BatteryBelow != nil) && c.BatterySignal == "" {
			bad(k+".battery_below", "needs [profile] battery_signal")
		}
	}
	b := c.Battery
	if b.Enabled {
		if c.BatterySignal == "" {
			bad("battery.enabled", "the battery guard needs [profile] battery_signal")
		}
		if !(b.Critical < b.Low && b.Low < b.Recover) {
			bad("battery.recover", "want critical (%v) < low (%v) < recover (%v)", b.Critical, b.Low, b.Recover)
		}
		known("battery.low_profile", b.LowProfile)
		if len(b.Hook) > 0 && b.Hook[0] == "" {
			bad("battery.hook", "the first element must be the program")
		}
		if b.HookTimeout <= 0 {
			bad("battery.hook_timeout", "must be positive")
		}
	}
	return errors.Join(errs...)
}

func (c *Config) names() []string {
	out := make([]string, 0, len(c.Settings))
	for _, s := range c.Settings {
		out = append(out, s.Name)
	}
	return out
}

// settings returns the named profile's settings.
func (c *Config) settings(name string) Settings {
	for _, s := range c.Settings {
		if s.Name == name {
			return s
		}
	}
	return Settings{Name: name}
}

// PublishFunc turns a class list into the uplink's filter; nil for all.
func PublishFunc(classes []string) func(class uint8) bool {
	if len(classes) == 0 {
		return nil
	}
	var allow [8]bool
	for _, c := range classes {
		allow[classNames[c]] = true
	}
	return func(class uint8) bool { return int(class) < len(allow) && allow[class] }
}

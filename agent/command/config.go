package command

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Duration is a time.Duration written in TOML as a Go duration string
// ("250ms", "3s").
type Duration = units.Duration

// Conflict policies (Config.Conflict).
const (
	ConflictReject = "reject"
	ConflictQueue  = "queue"
)

// Actuation modes (Spec.Mode).
const (
	// ModeImmediate refuses the command when an interlock does not hold.
	ModeImmediate = "immediate"
	// ModeAtStandstill arms the command when its interlocks do not hold yet
	// and actuates as soon as they do, within Spec.ArmTimeout.
	ModeAtStandstill = "at_standstill"
)

// Config is the [commands] section.
type Config struct {
	// MaxRequestBytes bounds a request payload; larger ones are rejected
	// unread.
	MaxRequestBytes int `toml:"max_request_bytes"`
	// ClockSkew is how far in the future issued_at may be.
	ClockSkew Duration `toml:"clock_skew"`
	// MaxValidity caps valid_ms: a request valid for longer is rejected.
	MaxValidity Duration `toml:"max_validity"`
	// RequireTrustedClock refuses every command while the device clock is
	// not trusted (no GNSS/NTP sync since boot).
	RequireTrustedClock bool `toml:"require_trusted_clock"`
	// LedgerRetention is how long a command id is kept after its validity
	// window ended.
	LedgerRetention Duration `toml:"ledger_retention"`
	// MaxLedgerEntries bounds the ledger (memory and flash). When it is
	// full after pruning, new commands are REJECTED "ledger_full" and
	// refusals are answered without being recorded.
	MaxLedgerEntries int `toml:"max_ledger_entries"`
	// Conflict is what happens to a command for an actuator that is busy:
	// "reject" or "queue".
	Conflict string `toml:"conflict"`
	// MaxQueue bounds the commands waiting per actuator when Conflict is
	// "queue".
	MaxQueue int `toml:"max_queue"`
	// ProgressAfter: a command not finished this long after it started
	// gets an IN_PROGRESS response first. 0 disables IN_PROGRESS.
	ProgressAfter Duration `toml:"progress_after"`
	// PublicKeys are Ed25519 public keys (base64 of the 32 raw bytes, or a
	// path to a file holding that or a PEM "PUBLIC KEY"). When set, only
	// requests signed by one of them are executed.
	PublicKeys []string `toml:"public_keys"`
	// Commands maps command names to frames ([[commands.command]]).
	Commands []Spec `toml:"command"`
	// Interlocks are preconditions on live signals ([[commands.interlock]]).
	Interlocks []Interlock `toml:"interlock"`
	// Wake are the frames that wake a sleeping vehicle network
	// ([[commands.wake]]). When set, a command whose interlock input is
	// stale or missing (a parked car's bus asleep) sends them and waits,
	// up to WakeTimeout, for fresh inputs before it decides. Empty: a
	// stale input refuses the command at once.
	Wake []WakeFrame `toml:"wake"`
	// WakeTimeout bounds the wait for fresh interlock inputs after the
	// wake frames were sent.
	WakeTimeout Duration `toml:"wake_timeout"`
}

// WakeFrame is one frame sent to wake the vehicle network: a DBC message
// of a bus, typically its network-management message.
type WakeFrame struct {
	// Bus names the CAN driver instance that transmits.
	Bus string `toml:"bus"`
	// Message is the DBC message name.
	Message string `toml:"message"`
	// Signals are its DBC signal values (physical); signals not named are
	// raw 0.
	Signals map[string]float64 `toml:"signals"`
}

// Bounds of wake_timeout: long enough for an ECU's first cyclic frame
// after wake-up, short enough that a door command is still answered
// within seconds when the bus does not wake.
const (
	minWakeTimeout = 10 * time.Millisecond
	maxWakeTimeout = 5 * time.Second
)

// Spec describes how one command name is actuated and confirmed.
type Spec struct {
	// Name is the command name in requests ("door.lock").
	Name string `toml:"name"`
	// Actuator groups commands that must never run concurrently ("door");
	// default: Bus + "/" + Message.
	Actuator string `toml:"actuator"`
	// Bus names the CAN driver instance that transmits.
	Bus string `toml:"bus"`
	// Message is the DBC message name.
	Message string `toml:"message"`
	// Signals are the DBC signal values of the frame.
	Signals map[string]float64 `toml:"signals"`
	// Repeat is how many times the frame is sent (≥ 1); repetition stops
	// early once the feedback confirms.
	Repeat int `toml:"repeat"`
	// RepeatInterval is the gap between repeated frames.
	RepeatInterval Duration `toml:"repeat_interval"`
	// Feedback is the signal that confirms the action.
	Feedback string `toml:"feedback"`
	// Expect is the Feedback value that means success.
	Expect float64 `toml:"expect"`
	// FailValues are Feedback values by which the ECU reports that the
	// action failed (e.g. a FAULT lock state): FAILED at once.
	FailValues []float64 `toml:"fail_values"`
	// Counter names a DBC signal of Message set to a rolling counter, one
	// new value per command (repeats carry the same value), so the ECU can
	// tell a new request from a repetition. Empty: none.
	Counter string `toml:"counter"`
	// CounterModulo is the counter's range (default 256).
	CounterModulo int `toml:"counter_modulo"`
	// Timeout bounds the wait for Expect after the first frame.
	Timeout Duration `toml:"timeout"`
	// Mode is "immediate" (default) or "at_standstill".
	Mode string `toml:"mode"`
	// ArmTimeout bounds the wait for the interlocks in "at_standstill" mode.
	ArmTimeout Duration `toml:"arm_timeout"`
	// Report lists extra signals copied into the response state.
	Report []string `toml:"report"`
}

// Interlock is a precondition: Signal Op Value must have held for For, on
// a sample no older than MaxAge, for every command named in AppliesTo.
type Interlock struct {
	Name      string   `toml:"name"`
	Signal    string   `toml:"signal"`
	Op        string   `toml:"op"`
	Value     float64  `toml:"value"`
	For       Duration `toml:"for"`
	MaxAge    Duration `toml:"max_age"`
	AppliesTo []string `toml:"applies_to"`
}

// DefaultConfig returns the defaults. It names no commands: those depend on
// the vehicle's DBC (see sample.toml).
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:     4096,
		ClockSkew:           Duration(5 * time.Second),
		MaxValidity:         Duration(10 * time.Minute),
		RequireTrustedClock: true,
		LedgerRetention:     Duration(24 * time.Hour),
		MaxLedgerEntries:    10000,
		Conflict:            ConflictReject,
		MaxQueue:            4,
		ProgressAfter:       Duration(time.Second),
		WakeTimeout:         Duration(1500 * time.Millisecond),
	}
}

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	opValues = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}
)

// Validate reports every problem in c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxRequestBytes < 256 || c.MaxRequestBytes > 1<<20 {
		bad("commands.max_request_bytes: %d not in [256, 1048576]", c.MaxRequestBytes)
	}
	if c.MaxLedgerEntries < 100 {
		bad("commands.max_ledger_entries: %d, want ≥ 100", c.MaxLedgerEntries)
	}
	if c.ClockSkew < 0 || c.MaxValidity <= 0 || c.LedgerRetention < 0 || c.ProgressAfter < 0 {
		bad("commands: durations must not be negative (max_validity > 0)")
	}
	if c.Conflict != ConflictReject && c.Conflict != ConflictQueue {
		bad("commands.conflict: %q is not \"reject\" or \"queue\"", c.Conflict)
	}
	if c.Conflict == ConflictQueue && c.MaxQueue < 1 {
		bad("commands.max_queue: must be ≥ 1 with conflict = \"queue\"")
	}
	names := map[string]bool{}
	for i, s := range c.Commands {
		if err := s.validate(); err != nil {
			bad("commands.command[%d]: %w", i, err)
		}
		if names[s.Name] {
			bad("commands.command[%d]: duplicate name %q", i, s.Name)
		}
		names[s.Name] = true
	}
	ilNames := map[string]bool{}
	for i, il := range c.Interlocks {
		if err := il.validate(names); err != nil {
			bad("commands.interlock[%d]: %w", i, err)
		}
		if ilNames[il.Name] {
			bad("commands.interlock[%d]: duplicate name %q", i, il.Name)
		}
		ilNames[il.Name] = true
	}
	if w := c.WakeTimeout.Std(); w < minWakeTimeout || w > maxWakeTimeout {
		bad("commands.wake_timeout: %s not in [%s, %s]", w, minWakeTimeout, maxWakeTimeout)
	}
	wakes := map[string]bool{}
	for i, w := range c.Wake {
		if w.Bus == "" || w.Message == "" {
			bad("commands.wake[%d]: bus and message are required", i)
			continue
		}
		if k := w.Bus + "/" + w.Message; wakes[k] {
			bad("commands.wake[%d]: duplicate frame %s on bus %s", i, w.Message, w.Bus)
		}
		wakes[w.Bus+"/"+w.Message] = true
	}
	return errors.Join(errs...)
}

func (s *Spec) validate() error {
	switch {
	case !nameRE.MatchString(s.Name) || len(s.Name) > 64:
		return fmt.Errorf("name %q: want lower-case dotted words", s.Name)
	case s.Bus == "" || s.Message == "":
		return fmt.Errorf("%s: bus and message are required", s.Name)
	case len(s.Signals) == 0:
		return fmt.Errorf("%s: signals are required", s.Name)
	case s.Repeat < 0 || s.Repeat > 50:
		return fmt.Errorf("%s: repeat %d not in [0, 50]", s.Name, s.Repeat)
	case s.RepeatInterval < 0:
		return fmt.Errorf("%s: repeat_interval is negative", s.Name)
	case s.Feedback == "":
		return fmt.Errorf("%s: feedback signal is required (success is only ever confirmed)", s.Name)
	case s.Timeout <= 0:
		return fmt.Errorf("%s: timeout must be > 0", s.Name)
	case s.CounterModulo < 0 || s.CounterModulo == 1:
		return fmt.Errorf("%s: counter_modulo %d must be 0 (default 256) or ≥ 2", s.Name, s.CounterModulo)
	}
	if _, ok := s.Signals[s.Counter]; ok && s.Counter != "" {
		return fmt.Errorf("%s: counter %q is also a fixed signal", s.Name, s.Counter)
	}
	for _, v := range s.FailValues {
		if v == s.Expect {
			return fmt.Errorf("%s: fail_values contains expect %v", s.Name, v)
		}
	}
	switch s.Mode {
	case "", ModeImmediate:
	case ModeAtStandstill:
		if s.ArmTimeout <= 0 {
			return fmt.Errorf("%s: arm_timeout must be > 0 in mode %q", s.Name, s.Mode)
		}
	default:
		return fmt.Errorf("%s: mode %q is not %q or %q", s.Name, s.Mode, ModeImmediate, ModeAtStandstill)
	}
	return nil
}

func (r *Interlock) validate(commands map[string]bool) error {
	switch {
	case r.Name == "":
		return errors.New("name is required")
	case r.Signal == "":
		return fmt.Errorf("%s: signal is required", r.Name)
	case !opValues[r.Op]:
		return fmt.Errorf("%s: op %q is not one of == != < <= > >=", r.Name, r.Op)
	case r.For < 0:
		return fmt.Errorf("%s: for is negative", r.Name)
	case r.MaxAge <= 0:
		return fmt.Errorf("%s: max_age must be > 0 (stale inputs must block)", r.Name)
	case len(r.AppliesTo) == 0:
		return fmt.Errorf("%s: applies_to is empty", r.Name)
	}
	for _, n := range r.AppliesTo {
		if !commands[n] {
			return fmt.Errorf("%s: applies_to names unknown command %q", r.Name, n)
		}
	}
	return nil
}

// actuator returns the key that serialises commands.
func (s *Spec) actuator() string {
	if s.Actuator != "" {
		return s.Actuator
	}
	return s.Bus + "/" + s.Message
}

// counterModulo returns the rolling counter's range.
func (s *Spec) counterModulo() uint64 {
	if s.CounterModulo <= 0 { // Validate refuses negative values
		return 256
	}
	return uint64(s.CounterModulo)
}

// repeat returns the number of frames to send.
func (s *Spec) repeat() int {
	if s.Repeat < 1 {
		return 1
	}
	return s.Repeat
}

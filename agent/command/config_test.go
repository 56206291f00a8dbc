package command_test

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/drivers"
)

func decodeSample(t *testing.T, text []byte) command.Config {
	t.Helper()
	var doc struct {
		Commands command.Config `toml:"commands"`
	}
	doc.Commands = command.DefaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode sample.toml: %v", err)
	}
	return doc.Commands
}

// TestSampleConfig: sample.toml decodes strictly, validates, names the four
// commands, and its commented-out defaults are the real defaults.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	c := decodeSample(t, text)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	var names []string
	for _, s := range c.Commands {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "door.lock,door.unlock,ignition.enable,ignition.disable" {
		t.Errorf("commands %s", got)
	}
	if len(c.Wake) != 1 || c.Wake[0].Bus != "body" || c.Wake[0].Message != "BODY_COMMAND" {
		t.Errorf("wake frames %+v, want BODY_COMMAND on body", c.Wake)
	}
	// Uncomment the "# key = value" default lines of [commands]: the result
	// must equal DefaultConfig's values.
	head := string(text[:bytes.Index(text, []byte("[[commands.command]]"))])
	re := regexp.MustCompile(`(?m)^# ([a-z_]+ = .*)$`)
	var b strings.Builder
	b.WriteString("[commands]\n")
	for _, m := range re.FindAllStringSubmatch(head, -1) {
		if !strings.HasPrefix(m[1], "public_keys") {
			b.WriteString(m[1] + "\n")
		}
	}
	var doc struct {
		Commands command.Config `toml:"commands"`
	}
	if err := toml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	want := command.DefaultConfig()
	if got := doc.Commands; got.MaxRequestBytes != want.MaxRequestBytes || got.ClockSkew != want.ClockSkew ||
		got.MaxValidity != want.MaxValidity || got.RequireTrustedClock != want.RequireTrustedClock ||
		got.LedgerRetention != want.LedgerRetention || got.Conflict != want.Conflict ||
		got.MaxQueue != want.MaxQueue || got.ProgressAfter != want.ProgressAfter ||
		got.MaxLedgerEntries != want.MaxLedgerEntries || got.WakeTimeout != want.WakeTimeout {
		t.Errorf("commented defaults %+v differ from DefaultConfig %+v", got, want)
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*command.Config)
		want string
	}{
		{"no feedback", func(c *command.Config) { c.Commands[0].Feedback = "" }, "feedback"},
		{"bad mode", func(c *command.Config) { c.Commands[0].Mode = "later" }, "mode"},
		{"arm without timeout", func(c *command.Config) { c.Commands[3].ArmTimeout = 0 }, "arm_timeout"},
		{"duplicate name", func(c *command.Config) { c.Commands[1].Name = "door.lock" }, "duplicate"},
		{"bad name", func(c *command.Config) { c.Commands[0].Name = "Door Lock" }, "name"},
		{"interlock for unknown command", func(c *command.Config) { c.Interlocks[0].AppliesTo = []string{"x.y"} }, "unknown command"},
		{"interlock without max_age", func(c *command.Config) { c.Interlocks[0].MaxAge = 0 }, "max_age"},
		{"bad op", func(c *command.Config) { c.Interlocks[0].Op = "=~" }, "op"},
		{"bad conflict", func(c *command.Config) { c.Conflict = "merge" }, "conflict"},
		{"fail value equals expect", func(c *command.Config) { c.Commands[0].FailValues = []float64{1} }, "fail_values"},
		{"zero timeout", func(c *command.Config) { c.Commands[0].Timeout = 0 }, "timeout"},
		{"tiny request limit", func(c *command.Config) { c.MaxRequestBytes = 10 }, "max_request_bytes"},
		{"negative skew", func(c *command.Config) { c.ClockSkew = command.Duration(-time.Second) }, "negative"},
		{"zero wake timeout", func(c *command.Config) { c.WakeTimeout = 0 }, "commands.wake_timeout"},
		{"long wake timeout", func(c *command.Config) { c.WakeTimeout = dur(6 * time.Second) }, "commands.wake_timeout"},
		{"wake without bus", func(c *command.Config) { c.Wake = []command.WakeFrame{{Message: "NM"}} }, "commands.wake[0]: bus"},
		{"wake without message", func(c *command.Config) { c.Wake = []command.WakeFrame{{Bus: "body"}} }, "commands.wake[0]: bus and message"},
		{"duplicate wake", func(c *command.Config) {
			c.Wake = []command.WakeFrame{{Bus: "body", Message: "NM"}, {Bus: "body", Message: "NM"}}
		}, "commands.wake[1]: duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testConfig()
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// TestNewRequiresClockSource: fail closed when the trusted-clock check is
// on but nothing tells the engine whether the clock is synchronised.
func TestNewRequiresClockSource(t *testing.T) {
	t.Parallel()
	_, err := command.New(command.Options{Config: testConfig(), Thing: thing, StateDir: t.TempDir(),
		Signals: command.NewSampleCache(), Responder: &commandtest.Responder{},
		Transmitter: func(string) (drivers.Transmitter, bool) { return nil, false }})
	if !errors.Is(err, command.ErrConfig) || !strings.Contains(err.Error(), "clock") {
		t.Fatalf("New() without ClockTrusted = %v, want a clock configuration error", err)
	}
}

// TestWakeConfigErrorsNameLine: a bad wake_timeout and a wake frame without
// a message are reported at their file:line, with the key.
func TestWakeConfigErrorsNameLine(t *testing.T) {
	t.Parallel()
	text := `version = 1

[commands]
wake_timeout = "9s"

  [[commands.wake]]
  bus = "body"
`
	c := command.DefaultConfig()
	_, err := config.Parse("/etc/tcu-agent/tcu-agent.toml", []byte(text), config.Extensions{"commands": &c})
	if err == nil {
		t.Fatal("Parse accepted a 9 s wake_timeout and a wake frame without a message")
	}
	for _, want := range []string{
		"/etc/tcu-agent/tcu-agent.toml:4: [commands] commands.wake_timeout: 9s not in [10ms, 5s]",
		"/etc/tcu-agent/tcu-agent.toml:6: [commands] commands.wake[0]: bus and message are required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

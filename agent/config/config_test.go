package config

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// fakeDriver is a driver kind registered for config tests only.
type fakeDriver struct {
	Port    string       `toml:"port"`
	Rate    Duration     `toml:"rate"`
	Signals []fakeSignal `toml:"signal"`
}

type fakeSignal struct {
	Name   string `toml:"name"`
	Source string `toml:"source"`
}

func (f *fakeDriver) Init() error {
	if f.Port == "" {
		return errors.New("port must be set")
	}
	return nil
}

func (f *fakeDriver) Run(ctx context.Context, _ drivers.Sink) error { <-ctx.Done(); return nil }

func init() {
	drivers.Register("fake", func(drivers.Params) drivers.Driver { return &fakeDriver{} })
}

type extSection struct {
	Broker string   `toml:"broker"`
	Keep   Duration `toml:"keep"`
}

func (e *extSection) Validate() error {
	if e.Broker == "" {
		return errors.New("broker must be set")
	}
	return nil
}

const good = `version = 1
[agent]
thing_name = "car-1"
state_dir = "/tmp/x"

[buffer]
max_bytes = "32MiB"

[mqtt]
broker = "tcp://127.0.0.1:1883"
keep = "30s"

[[driver]]
name = "body"
kind = "fake"
port = "vcan0"
rate = "100ms"
  [[driver.signal]]
  name = "Vehicle.Speed"
  source = "PT.Speed"
  [[driver.signal]]
  name = "Vehicle.Gear"
  source = "PT.Gear"
`

func TestParseGood(t *testing.T) {
	t.Parallel()
	ext := &extSection{}
	cfg, err := Parse("good.toml", []byte(good), Extensions{"mqtt": ext})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Agent.ThingName != "car-1" || cfg.Buffer.MaxBytes != 32<<20 || cfg.Buffer.Sync != "group" {
		t.Errorf("decoded %+v %+v", cfg.Agent, cfg.Buffer)
	}
	if ext.Broker != "tcp://127.0.0.1:1883" || ext.Keep.Std().Seconds() != 30 {
		t.Errorf("ext = %+v", ext)
	}
	if len(cfg.Drivers) != 1 {
		t.Fatalf("drivers = %d", len(cfg.Drivers))
	}
	fd := cfg.Drivers[0].Driver.(*fakeDriver)
	if fd.Port != "vcan0" || len(fd.Signals) != 2 || fd.Signals[1].Source != "PT.Gear" || cfg.Drivers[0].Line != 13 {
		t.Errorf("driver = %+v line %d", fd, cfg.Drivers[0].Line)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace [2]string
		want    []string // substrings of the error
	}{
		{"misspelt core key", [2]string{"thing_name", "thing_nmae"}, []string{"bad.toml:3:", `unknown key "thing_nmae"`}},
		{"misspelt ext key", [2]string{"keep =", "kep ="}, []string{"bad.toml:11:", `unknown key "kep"`}},
		{"misspelt driver key", [2]string{"port =", "prot ="}, []string{"bad.toml:16:", `unknown key "prot"`}},
		{"misspelt nested driver key", [2]string{`source = "PT.Gear"`, `sorce = "PT.Gear"`}, []string{"bad.toml:23:", `unknown key "sorce"`}},
		{"bad duration", [2]string{`rate = "100ms"`, `rate = "fast"`}, []string{"bad.toml:17:", "invalid duration"}},
		{"bad size", [2]string{`"32MiB"`, `"lots"`}, []string{"bad.toml:7:", "invalid size"}},
		{"bad enum", [2]string{`max_bytes = "32MiB"`, `sync = "sometimes"`}, []string{"bad.toml:7:", "not one of always, group, none"}},
		{"group max window too long", [2]string{`max_bytes = "32MiB"`, `group_max_window = "3s"`}, []string{"bad.toml:7:", "group_max_window 3s out of range"}},
		{"idle close too short", [2]string{`max_bytes = "32MiB"`, `idle_close = "100ms"`}, []string{"bad.toml:7:", "idle_close 100ms out of range"}},
		{"unknown section", [2]string{"[mqtt]", "[mqqt]"}, []string{"bad.toml:9:", `unknown section or key "mqqt"`}},
		{"unknown kind", [2]string{`kind = "fake"`, `kind = "fak"`}, []string{"bad.toml:15:", `unknown driver kind "fak"`}},
		{"driver init error", [2]string{`port = "vcan0"`, `port = ""`}, []string{"bad.toml:13:", "port must be set"}},
		{"ext validate", [2]string{`broker = "tcp://127.0.0.1:1883"`, `broker = ""`}, []string{"bad.toml:9:", "broker must be set"}},
		{"bad log format", [2]string{`thing_name = "car-1"`, `log_format = "xml"`}, []string{"bad.toml:3:", "log_format \"xml\" not one of text, json"}},
		{"wrong version", [2]string{"version = 1", "version = 2"}, []string{"bad.toml:1:", "unsupported config version 2"}},
		{"syntax", [2]string{`port = "vcan0"`, `port = "vcan0`}, []string{"bad.toml:16:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.Replace(good, tt.replace[0], tt.replace[1], 1)
			if doc == good {
				t.Fatalf("replacement %q not found", tt.replace[0])
			}
			_, err := Parse("bad.toml", []byte(doc), Extensions{"mqtt": &extSection{}})
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !IsConfigError(err) {
				t.Errorf("IsConfigError(%v) = false", err)
			}
		})
	}
}

func TestTwoBadEntriesGetTwoLines(t *testing.T) {
	t.Parallel()
	doc := strings.ReplaceAll(good, "source =", "sauce =")
	_, err := Parse("bad.toml", []byte(doc), Extensions{"mqtt": &extSection{}})
	if err == nil || !strings.Contains(err.Error(), "bad.toml:20:") || !strings.Contains(err.Error(), "bad.toml:23:") {
		t.Fatalf("want errors at lines 20 and 23, got %v", err)
	}
}

// keyedSection reports validation errors prefixed with their key path.
type keyedSection struct {
	Broker string   `toml:"broker"`
	Keep   Duration `toml:"keep"`
}

func (k *keyedSection) Validate() error {
	if k.Keep.Std() > 0 && k.Keep.Std().Seconds() < 30 {
		return errors.New("mqtt.keep: must be at least 30s")
	}
	return nil
}

func TestValidationErrorPointsAtKey(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(good, `keep = "30s"`, `keep = "5s"`, 1)
	_, err := Parse("bad.toml", []byte(doc), Extensions{"mqtt": &keyedSection{}})
	if err == nil || !strings.Contains(err.Error(), "bad.toml:11:") {
		t.Fatalf("want error at line 11, got %v", err)
	}
}

package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
)

func parse(t *testing.T, text string) (Config, error) {
	t.Helper()
	c := DefaultConfig()
	_, err := config.Parse("/etc/tcu-agent/tcu-agent.toml", []byte("version = 1\n"+text), config.Extensions{"profile": &c})
	return c, err
}

// TestConfigFile: the section decodes strictly, rules and profiles written
// in the file replace the defaults, and a bad value names file:line and key.
func TestConfigFile(t *testing.T) {
	c, err := parse(t, `
[profile]
force = "parked"
initial = "parked"
  [[profile.rule]]
  profile = "parked"
  speed_below = 1.0
  [[profile.settings]]
  name = "parked"
  keep_alive = "5m"
  publish = ["critical"]
    [[profile.settings.signal]]
    match = "Vehicle.*"
    heartbeat = "2m"
[profile.battery]
low_for = "5m"
low_profile = "parked"
hook = ["/usr/lib/tcu/modem-off", "--now"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 1 || *c.Rules[0].SpeedBelow != 1 || len(c.Settings) != 1 || c.Settings[0].KeepAlive.Std() != 5*time.Minute ||
		c.Settings[0].Signals[0].Heartbeat.Std() != 2*time.Minute || c.Battery.LowFor.Std() != 5*time.Minute || c.Battery.Low != 12 ||
		c.Initial != Parked {
		t.Errorf("decoded %+v", c)
	}
	tests := []struct{ text, want string }{
		{"[profile]\nforse = \"parked\"\n", `tcu-agent.toml:3: profile.forse: unknown key "forse"`},
		{"[profile]\nforce = \"parkd\"\n", `tcu-agent.toml:3: [profile] profile.force: unknown profile "parkd"`},
		{"[profile.battery]\nlow_for = \"ten minutes\"\n", "tcu-agent.toml:3: profile.battery.low_for"},
		{"[profile]\n  [[profile.rule]]\n  profile = \"driving\"\n  [[profile.rule]]\n  profile = \"nap\"\n", "tcu-agent.toml:6: [profile] profile.rule[1].profile: unknown profile \"nap\""},
	}
	for _, tt := range tests {
		_, err := parse(t, tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.text, err, tt.want)
		}
	}
}

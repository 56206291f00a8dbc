package profile

import (
	"errors"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// FuzzProfileConfig feeds arbitrary [profile] sections to the loader: it
// never panics, every rejection is a *config.Error, and an accepted
// section builds an engine that evaluates without panicking.
func FuzzProfileConfig(f *testing.F) {
	f.Add([]byte("[profile]\nforce = \"parked\"\n"))
	f.Add([]byte("[profile]\n[[profile.rule]]\nprofile = \"parked\"\nspeed_below = 1.0\nfor = \"1s\"\n"))
	f.Add([]byte("[profile]\ninitial = \"x\"\n[[profile.settings]]\nname = \"x\"\npublish = [\"event\"]\n[[profile.settings.signal]]\nmatch = \"*\"\nheartbeat = \"1m\"\n[profile.battery]\nlow_profile = \"x\"\n"))
	f.Add([]byte("[profile.battery]\nlow = 13.0\nrecover = 12.0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DefaultConfig()
		_, err := config.Parse("fuzz.toml", append([]byte("version = 1\n"), data...), config.Extensions{"profile": &c})
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			return
		}
		st := signals.New()
		e, err := New(Options{Config: c, Signals: st, Now: func() time.Time { return t0 }})
		if err != nil {
			return // a section that was absent is not validated by the loader
		}
		st.Set(drivers.Sample{Name: c.IgnitionSignal, Value: 0, Time: t0})
		st.Set(drivers.Sample{Name: c.BatterySignal, Value: 11, Time: t0})
		e.Evaluate(t0.Add(time.Hour))
		if n, _ := e.Current(); n == "" {
			t.Fatal("no profile in effect")
		}
	})
}

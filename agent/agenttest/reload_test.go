package agenttest

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSystemSIGHUPAppliesSignalLive: the real binary, SIGHUP after the
// config file gained a signal: the same process publishes it (no restart),
// the body bus runs a new driver; an invalid file is logged with file:line
// and changes nothing; an [mqtt] change is named as needing a restart.
func TestSystemSIGHUPAppliesSignalLive(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Binary: binary(t), TelemetryInterval: "200ms"})
	const fan = "Vehicle.Cabin.HVAC.FanSpeed"
	var mu sync.Mutex
	fanSeen := map[float64]time.Time{}
	s.Cloud.Subscribe("dt/tcu/"+s.Thing()+"/telemetry", func(_ string, p []byte) {
		var env struct {
			Records []struct {
				Signals map[string]float64 `json:"signals"`
			} `json:"records"`
		}
		if json.Unmarshal(p, &env) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range env.Records {
			if v, ok := r.Signals[fan]; ok {
				if _, seen := fanSeen[v]; !seen {
					fanSeen[v] = time.Now()
				}
			}
		}
	})
	seen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(fanSeen)
	}
	a := s.StartAgent()
	s.WaitFor("telemetry", 30*time.Second, func() bool { return s.Stream.Len() > 0 })
	orig, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	// An invalid file: logged with file:line, nothing changes.
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(s.ConfigPath(), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(orig) + "\n[telemetry]\nbogus = 1\n")
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.WaitFor("the invalid file logged", 10*time.Second, func() bool {
		return strings.Contains(a.Log(), "config not reloaded") && strings.Contains(a.Log(), "tcu-agent.toml:")
	})

	// A new signal: applied live.
	i := strings.Index(string(orig), "# GNSS receiver")
	if i < 0 {
		t.Fatal("demo config: no GNSS driver marker")
	}
	withFan := string(orig[:i]) + "  [[driver.signal]]\n  name = \"" + fan + "\"\n  source = \"CLIMATE.HvacFanSpeed\"\n  heartbeat = \"1s\"\n\n" + string(orig[i:])
	write(withFan)
	hup := time.Now()
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.WaitFor("the new signal published", 20*time.Second, func() bool { return seen() > 0 })
	t.Logf("SIGHUP to the new signal in the cloud: %v", time.Since(hup).Round(time.Millisecond))
	if a.Exited() {
		t.Fatal("the agent exited on SIGHUP")
	}
	if !strings.Contains(a.Log(), "reload: configuration applied") {
		t.Errorf("no 'configuration applied' log line:\n%s", a.Log())
	}
	if !strings.Contains(a.Log(), "started=body stopped=body kept=gnss") {
		t.Errorf("the body driver was not replaced (the gnss one kept):\n%s", a.Log())
	}

	// An [mqtt] change: named, nothing applied.
	write(strings.Replace(withFan, `batch_latency = "500ms"`, `batch_latency = "400ms"`, 1))
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.WaitFor("the restart-needed log line", 10*time.Second, func() bool {
		return strings.Contains(a.Log(), "take effect at the next restart") && strings.Contains(a.Log(), "sections=mqtt")
	})
	if a.Exited() {
		t.Fatal("the agent exited on SIGHUP")
	}
}

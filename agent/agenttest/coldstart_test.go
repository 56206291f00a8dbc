package agenttest

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// ColdStartEnv names the environment variable that runs
// TestSystemColdStartFirstRecord with that many runs (it is a
// measurement, skipped otherwise).
const ColdStartEnv = "AGENTTEST_COLDSTART_RUNS"

// TestSystemColdStartFirstRecord measures exec → first record at the
// broker with the shipped [mqtt] defaults (batch_latency 1 s,
// first_connect_jitter 500 ms: the demo's shorter values are removed)
// and a fresh state dir, N times, and reports min/median/max.
//
//	AGENTTEST_COLDSTART_RUNS=20 go test -count=1 -run ColdStart -v ./agent/agenttest/
func TestSystemColdStartFirstRecord(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv(ColdStartEnv))
	if runs <= 0 {
		t.Skipf("a measurement: set %s=N to run it", ColdStartEnv)
	}
	shipped := func(cfg string) string {
		var out []string
		for _, l := range strings.Split(cfg, "\n") {
			if k := strings.TrimSpace(l); strings.HasPrefix(k, "batch_latency") || strings.HasPrefix(k, "first_connect_jitter") {
				continue
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	var took []time.Duration
	for i := range runs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			s := Start(t, Options{Binary: binary(t), Scenario: sim.ScenarioCity, EditConfig: shipped})
			start := time.Now()
			a := s.StartAgent()
			s.WaitFor("first record", 30*time.Second, func() bool { return s.Stream.Len() > 0 })
			first := s.Stream.Arrivals()[0]
			took = append(took, first.At.Sub(start))
			t.Logf("first record: seq %d %s on %s, observed %v after exec, at the broker %v after exec",
				first.Seq, first.Kind, first.Topic, first.TS.Sub(start).Round(time.Millisecond), first.At.Sub(start).Round(time.Millisecond))
			if _, _, err := a.Terminate(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
	slices.Sort(took)
	over := 0
	for _, d := range took {
		if d > time.Second {
			over++
		}
	}
	t.Logf("exec → first record at the broker, %d runs: min %v, median %v, max %v; %d over 1 s; all %v",
		len(took), took[0], took[len(took)/2], took[len(took)-1], over, took)
}

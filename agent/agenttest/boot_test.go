package agenttest

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// TestSystemKillDuringBoot cuts the agent's power at a sweep of moments
// right after it starts (5 to 120 ms: while it opens and recovers its
// buffer and ledger), restarting it each time. A cut during start-up is a
// cut like any other: the seqs must stay contiguous.
//
// It found two bugs in buffer.Open, both fixed: a cut between Open's epoch
// write to the store and its seq-file write made the next Open jump the seq
// (now the seq file is written first, marked pending, and recognised); and
// a cut while Badger created a file made the next badger.Open fail once
// (dgraph-io/badger#2207), which quarantined the whole store (now Open
// retries before quarantining).
func TestSystemKillDuringBoot(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Binary: binary(t), Scenario: sim.ScenarioCity, TelemetryInterval: "100ms"})
	a := s.StartAgent()
	s.WaitFor("first telemetry", 30*time.Second, func() bool { return s.Stream.Len() > 0 })
	type cut struct {
		after  time.Duration
		maxSeq uint64 // highest seq seen before the cut
	}
	var cuts []cut
	for d := 5 * time.Millisecond; d <= 120*time.Millisecond; d += 5 * time.Millisecond {
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		cuts = append(cuts, cut{after: d, maxSeq: s.Stream.Max()})
		a = s.StartAgent()
		time.Sleep(d)
		if err := a.Kill(); err != nil || !a.KilledBySIGKILL() {
			t.Fatalf("SIGKILL %v after start: %v (%v)", d, err, a.Err())
		}
		a = s.StartAgent()
		n := s.Stream.Len()
		s.WaitFor("telemetry after the restart", 30*time.Second, func() bool { return s.Stream.Len() > n })
	}
	s.MuteVehicle(true)
	s.WaitQueueEmpty(60 * time.Second)
	time.Sleep(500 * time.Millisecond) // deliveries racing the last PUBACK
	for _, g := range s.Stream.Gaps() {
		var at time.Duration
		for _, c := range cuts {
			if c.maxSeq < g.From {
				at = c.after
			}
		}
		t.Errorf("seqs %d..%d (%d) never arrived: gap after the cut %v after start", g.From, g.To, g.To-g.From+1, at)
	}
	lo, hi := s.Stream.Span()
	t.Logf("%d cuts during start-up; %d distinct seqs over %d..%d, %d duplicates", len(cuts), s.Stream.Distinct(), lo, hi, s.Stream.Duplicates())
}

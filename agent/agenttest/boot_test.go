package agenttest

import (
	"os"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// KnownBugsEnv names the environment variable that runs the tests of
// known, not yet fixed bugs (skipped otherwise so that `make test` stays
// green).
const KnownBugsEnv = "AGENTTEST_KNOWN_BUGS"

// TestSystemKillDuringBoot cuts the agent's power at a sweep of moments
// right after it starts (5 to 120 ms: while it opens and recovers its
// buffer and ledger), restarting it each time. A cut during start-up is a
// cut like any other: the seqs must stay contiguous.
//
// Known bugs (found by this test; buffer/open.go), skipped unless
// AGENTTEST_KNOWN_BUGS is set so that `make test` stays green:
//
//   - initSeq writes the new epoch to the store (synced) and only then the
//     seq file; a cut between the two leaves the epochs different, and the
//     next Open treats the store as a restored older copy and jumps seq to
//     max(seq file high-water, wall clock in µs) (log "queue store older
//     than its seq file, seq jumps"): consumers read millions of lost
//     records.
//   - a cut while Badger creates a memtable or value-log file leaves a file
//     that the next badger.Open refuses with z.NewFile ("Create a new
//     file", dgraph-io/badger#2207; a second Open succeeds), and Open
//     quarantines the whole store at the first failure: every unsent record
//     is moved aside and never sent.
func TestSystemKillDuringBoot(t *testing.T) {
	t.Parallel()
	if os.Getenv(KnownBugsEnv) == "" {
		t.Skipf("known bugs: a cut during buffer.Open makes seq jump or the store get quarantined (see the test's comment); set %s=1 to run", KnownBugsEnv)
	}
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

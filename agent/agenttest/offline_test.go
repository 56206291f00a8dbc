package agenttest

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// TestSystemOfflineRestartCatchUp: the broker is down from the start; the
// agent buffers for 5 s, stops cleanly on SIGTERM, restarts, and once the
// broker is up every record of both runs arrives with contiguous seqs.
func TestSystemOfflineRestartCatchUp(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{
		Binary: binary(t), Scenario: sim.ScenarioCity, BrokerDown: true,
		TelemetryInterval: "100ms", ExtraEvents: []string{"Vehicle.Speed"}, BackoffMax: "2s",
	})
	ctx := context.Background()
	queued1, stopped := offlineRunThenTerm(ctx, t, s)

	// Run 2: restart offline, produce more, then the broker comes up.
	a2 := s.StartAgent()
	var start2 int64 = -1
	s.WaitFor("run 2 to buffer new records", 30*time.Second, func() bool {
		n, err := s.Queued(ctx)
		if err != nil {
			return false
		}
		if start2 < 0 {
			start2 = n // what run 1 left, including its shutdown flush
		}
		return n >= start2+5 && time.Since(a2.Started) > time.Second
	})
	s.MuteVehicle(true) // a fixed backlog, so the queue can reach empty
	time.Sleep(300 * time.Millisecond)
	backlog, err := s.Queued(ctx) // every record of both runs: none was ever sent
	if err != nil {
		t.Fatal(err)
	}
	s.StartBroker()
	drain := s.WaitQueueEmpty(60 * time.Second)
	t.Logf("run 2: backlog %d records; broker start to queue empty %v", backlog, drain.Round(time.Millisecond))

	// Everything produced in both runs arrived, seq contiguous.
	lo, hi := s.Stream.Span()
	if gaps := s.Stream.Gaps(); len(gaps) > 0 {
		t.Errorf("seqs %d..%d arrived with %d gaps: %v", lo, hi, len(gaps), headGaps(gaps))
	}
	if int64(s.Stream.Distinct()) < backlog {
		t.Errorf("%d distinct seqs arrived, fewer than the backlog of %d records", s.Stream.Distinct(), backlog)
	}
	var run1, run2 int
	for _, a := range s.Stream.Arrivals() {
		if a.TS.Before(stopped) {
			run1++
		} else {
			run2++
		}
	}
	if int64(run1) < queued1 || run2 == 0 {
		t.Errorf("arrivals: %d from run 1 (buffered %d), %d from run 2", run1, queued1, run2)
	}
	t.Logf("delivered %d distinct seqs %d..%d, %d duplicates", s.Stream.Distinct(), lo, hi, s.Stream.Duplicates())
}

// offlineRunThenTerm runs the agent for 5 s with the broker down, stops it
// with SIGTERM (exit 0 within 5 s) and returns what it had buffered and
// when it stopped.
func offlineRunThenTerm(ctx context.Context, t *testing.T, s *System) (queued int64, stopped time.Time) {
	t.Helper()
	a := s.StartAgent()
	s.WaitFor("run 1 to buffer records", 30*time.Second, func() bool {
		n, err := s.Queued(ctx)
		return err == nil && n > 0
	})
	time.Sleep(time.Until(a.Started.Add(5 * time.Second)))
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatalf("status before SIGTERM: %v", err)
	}
	if st.Connection.State == "connected" {
		t.Fatalf("agent connected to a stopped broker: %+v", st.Connection)
	}
	queued = QueuedIn(st)
	code, took, err := a.Terminate(5 * time.Second)
	if err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0", code)
	}
	t.Logf("run 1: %d records buffered offline; SIGTERM exit %d after %v", queued, code, took.Round(time.Millisecond))
	return queued, time.Now()
}

// headGaps shortens a list of gaps for a failure message.
func headGaps(gaps []Gap) []Gap {
	if len(gaps) > 20 {
		return gaps[:20]
	}
	return gaps
}

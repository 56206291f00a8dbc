package agenttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// killRound is one power cut of TestSystemKillDuringDrain.
type killRound struct {
	kind     string // "offline": broker down; "draining": backlog in flight
	agent    *Agent
	killed   time.Time
	queued   int64 // records in the buffer just before the kill (-1 unknown)
	inflight int64 // publishes without PUBACK just before the kill (-1 unknown)
	delay    time.Duration
}

// TestSystemKillDuringDrain cuts the agent's power (SIGKILL) at random
// moments while telemetry flows: with the broker down (a backlog builds)
// and while the backlog drains after the broker is back, some of those
// with PUBACKs delayed so that publishes are in flight at the cut. The
// agent is restarted on the same state dir each time. In the end every seq
// from the first to the last seen has arrived; duplicates are allowed and
// counted.
func TestSystemKillDuringDrain(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{
		Binary: binary(t), Scenario: sim.ScenarioCity, TelemetryInterval: "100ms",
		ExtraEvents: []string{"Vehicle.Speed", "Vehicle.TraveledDistance"}, BackoffMax: "1s",
	})
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("random seed %d", seed)
	ctx := context.Background()

	a := s.StartAgent()
	s.WaitFor("first telemetry", 30*time.Second, func() bool { return s.Stream.Len() > 0 })
	var rounds []killRound
	for i := range 6 {
		r := killRound{kind: "offline", agent: a, queued: -1, inflight: -1}
		if i%2 == 1 {
			r.kind = "draining"
		}
		s.StopBroker()
		buildBacklogAndKill(ctx, t, s, rng, &r)
		rounds = append(rounds, r)
		a = s.StartAgent()
		if r.kind == "offline" {
			time.Sleep(between(rng, 200*time.Millisecond, time.Second))
			s.StartBroker()
		}
	}

	// A last backlog with production stopped, timed until it is drained.
	s.WaitFor("the agent to reconnect", 30*time.Second, func() bool { return connected(ctx, s) })
	s.StopBroker()
	time.Sleep(3 * time.Second)
	s.MuteVehicle(true)
	time.Sleep(500 * time.Millisecond)
	backlog, err := s.Queued(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.StartBroker()
	drain := s.WaitQueueEmpty(60 * time.Second)
	time.Sleep(500 * time.Millisecond) // deliveries racing the last PUBACK
	t.Logf("final backlog %d records: broker start to queue empty %v", backlog, drain.Round(time.Millisecond))

	t.Logf("per run (duplicates in run k+1 are redeliveries after kill k):\n%s", roundReport(s, rounds, a))
	lo, hi := s.Stream.Span()
	if gaps := s.Stream.Gaps(); len(gaps) > 0 {
		t.Errorf("records lost: seqs %d..%d arrived with %d gaps: %v", lo, hi, len(gaps), headGaps(gaps))
	}
	t.Logf("total: %d distinct seqs over %d..%d (%d), %d arrivals, %d duplicates", s.Stream.Distinct(), lo, hi,
		hi-lo+1, s.Stream.Len(), s.Stream.Duplicates())
	for i, r := range rounds {
		if r.kind == "offline" && r.queued == 0 {
			t.Errorf("round %d killed with an empty buffer although the broker was down: the round tested nothing", i+1)
		}
	}
}

// buildBacklogAndKill lets a backlog build with the broker down, then
// (for a draining round) starts the broker, waits for the drain to be
// under way and SIGKILLs the agent at a random moment.
func buildBacklogAndKill(ctx context.Context, t *testing.T, s *System, rng *rand.Rand, r *killRound) {
	t.Helper()
	time.Sleep(between(rng, time.Second, 2500*time.Millisecond))
	if r.kind == "draining" {
		if rng.IntN(3) > 0 {
			r.delay = between(rng, 300*time.Millisecond, 800*time.Millisecond)
			s.Cloud.Faults().DelayPubacks(r.delay)
		}
		n := s.Stream.Len()
		s.StartBroker()
		s.WaitFor("the backlog to start draining", 30*time.Second, func() bool {
			if r.delay == 0 {
				return s.Stream.Len() > n
			}
			st, err := s.Status(ctx)
			return err == nil && st.Connection.Published > st.Connection.Acked
		})
		time.Sleep(between(rng, 0, 300*time.Millisecond))
	}
	if st, err := s.Status(ctx); err == nil {
		r.queued, r.inflight = QueuedIn(st), int64(st.Connection.Published)-int64(st.Connection.Acked)
	}
	a := r.agent
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Kill(); err != nil || !a.KilledBySIGKILL() {
		t.Fatalf("run %d: SIGKILL: %v (killed by SIGKILL: %v)", a.Run, err, a.KilledBySIGKILL())
	}
	r.killed = time.Now()
	s.Cloud.Faults().DelayPubacks(0)
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func connected(ctx context.Context, s *System) bool {
	st, err := s.Status(ctx)
	return err == nil && st.Connection.State == "connected"
}

// roundReport tabulates, per agent run: the seqs it produced (from the
// previous run's highest seq to the highest seq stamped during this run,
// so a lost record still counts), how many of those ever arrived, the
// buffer at its kill, and the first deliveries and duplicates that arrived
// while it ran.
func roundReport(s *System, rounds []killRound, last *Agent) string {
	type window struct {
		kind            string
		from, to        time.Time
		queued          int64
		inflight        int64
		delay           time.Duration
		hi              uint64 // highest seq stamped in the window
		first, dups     int
		produced, found int
	}
	var ws []window
	for _, r := range rounds {
		ws = append(ws, window{kind: r.kind, from: r.agent.Started, to: r.killed, queued: r.queued,
			inflight: r.inflight, delay: r.delay})
	}
	ws = append(ws, window{kind: "final", from: last.Started, to: time.Now(), queued: -1, inflight: -1})
	seen := map[uint64]bool{}
	for _, a := range s.Stream.Arrivals() {
		for i := range ws {
			w := &ws[i]
			if !a.TS.Before(w.from) && a.TS.Before(w.to) {
				w.hi = max(w.hi, a.Seq)
			}
			if !a.At.Before(w.from) && a.At.Before(w.to) {
				if seen[a.Seq] {
					w.dups++
				} else {
					w.first++
				}
			}
		}
		seen[a.Seq] = true
	}
	prev, _ := s.Stream.Span()
	prev-- // the seq before the first
	for i := range ws {
		w := &ws[i]
		for q := prev + 1; w.hi > prev && q <= w.hi; q++ {
			w.produced++
			if seen[q] {
				w.found++
			}
		}
		prev = max(prev, w.hi)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-9s %8s %8s %7s %7s %8s %9s %5s %s\n", "run", "ends", "lifetime", "produced",
		"arrived", "queued", "inflight", "delivered", "dups", "puback delay")
	for i, w := range ws {
		fmt.Fprintf(&b, "%-4d %-9s %8s %8d %7d %7d %8d %9d %5d %v\n", i+1, w.kind,
			w.to.Sub(w.from).Round(100*time.Millisecond), w.produced, w.found, w.queued, w.inflight,
			w.first, w.dups, w.delay.Round(time.Millisecond))
	}
	return b.String()
}

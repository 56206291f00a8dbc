package agenttest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// floodRig is the real agent on Debian's mosquitto with a backend client.
type floodRig struct {
	s  *System
	be *backend
}

func newFloodRig(tb testing.TB, bin string, bodyDelay time.Duration) *floodRig {
	tb.Helper()
	m := startMosquitto(tb)
	s := Start(tb, Options{Binary: bin, Scenario: sim.ScenarioParked, Broker: m.addr, BodyDelay: bodyDelay})
	be := newBackend(tb, m.addr, s.Thing())
	s.StartAgent()
	s.WaitFor("the agent to connect", 30*time.Second, func() bool { return connected(tb.Context(), s) })
	return &floodRig{s: s, be: be}
}

// flood publishes n requests that expired a minute ago as fast as the
// client goes (about 50 ms for 300 here) and returns their ids, the time
// of the first publish and when the last final response arrived.
func (r *floodRig) flood(tb testing.TB, tag string, n int) ([]string, time.Duration, bool) {
	tb.Helper()
	ids := make([]string, n)
	reqs := make([]devcloud.Request, n)
	for i := range n {
		reqs[i] = devcloud.NewRequest(r.s.Thing(), "door.lock", nil, time.Now().Add(-time.Minute), 30*time.Second)
		reqs[i].ID = fmt.Sprintf("%s-%04d", tag, i)
		ids[i] = reqs[i].ID
	}
	start := time.Now()
	toks := make([]interface{ WaitTimeout(time.Duration) bool }, n)
	for i := range reqs {
		toks[i] = r.be.publish(reqs[i])
	}
	for _, t := range toks {
		t.WaitTimeout(10 * time.Second)
	}
	last, ok := r.be.waitAll(ids, 60*time.Second)
	return ids, last.Sub(start), ok
}

// waitUnlockable returns once door.unlock passes its standstill interlock
// (held for 3 s after the agent first sees the speed, demo.toml).
func (r *floodRig) waitUnlockable(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req := devcloud.NewRequest(r.s.Thing(), "door.unlock", nil, time.Now(), 30*time.Second)
		r.be.publish(req)
		resp, ok := r.be.waitFinal(req.ID, 30*time.Second)
		if ok && resp.Status == devcloud.StatusSucceeded {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("door.unlock never allowed: %+v", resp)
		}
		time.Sleep(200 * time.Millisecond) // the interlock's hold time is what we wait for
	}
}

// TestSystemCommandFlood: 300 expired requests published in a burst are
// all answered REJECTED "expired", exactly once each, with no frame (issue
// 13: 270–278 of 300 were answered, the rest dropped). The time to answer
// all is logged; BenchmarkCommandFlood measures it.
func TestSystemCommandFlood(t *testing.T) {
	r := newFloodRig(t, binary(t), 0)
	before := len(r.s.Frames("LockRequest", 1))
	ids, took, ok := r.flood(t, "flood", 300)
	if !ok {
		missing := 0
		for _, id := range ids {
			if len(r.be.finals(id)) == 0 {
				missing++
			}
		}
		t.Fatalf("%d of %d expired requests unanswered after 60 s", missing, len(ids))
	}
	time.Sleep(time.Second) // duplicates would show up by now
	for _, id := range ids {
		fs := r.be.finals(id)
		if len(fs) != 1 || fs[0].Status != devcloud.StatusRejected || fs[0].ReasonCode != "expired" {
			t.Errorf("%s: %+v, want one REJECTED expired", id, fs)
		}
	}
	if n := len(r.s.Frames("LockRequest", 1)) - before; n != 0 {
		t.Errorf("%d frames for expired requests", n)
	}
	t.Logf("300 expired requests: all answered %v after the first publish", took)
}

// TestSystemCommandArrivalOrder: door.lock then door.unlock (and the
// reverse) published back to back, well under a millisecond apart, 20
// times: the first one sent wins every time and the second is REJECTED
// "conflict" with no frame of its own (issue 13: the first won 6 of 12).
func TestSystemCommandArrivalOrder(t *testing.T) {
	r := newFloodRig(t, binary(t), 300*time.Millisecond)
	r.waitUnlockable(t)
	names := [2]string{"door.lock", "door.unlock"}
	var gaps []time.Duration
	for i := range 20 {
		first, second := names[i%2], names[(i+1)%2]
		a := devcloud.NewRequest(r.s.Thing(), first, nil, time.Now(), 30*time.Second)
		b := devcloud.NewRequest(r.s.Thing(), second, nil, time.Now(), 30*time.Second)
		t0 := time.Now()
		ta := r.be.publish(a)
		gap := time.Since(t0)
		tb := r.be.publish(b)
		gaps = append(gaps, gap)
		ta.WaitTimeout(10 * time.Second)
		tb.WaitTimeout(10 * time.Second)
		ra, oka := r.be.waitFinal(a.ID, 30*time.Second)
		rb, okb := r.be.waitFinal(b.ID, 30*time.Second)
		if !oka || !okb {
			t.Fatalf("round %d: no answer (first %v, second %v)", i, oka, okb)
		}
		if strings.HasPrefix(ra.ReasonCode, "interlock") {
			// The unlock's standstill input went stale on a starved
			// machine: no arbitration happened in this round.
			t.Logf("round %d: first (%s) refused %s; not an arbitration", i, first, ra.ReasonCode)
			continue
		}
		if ra.ReasonCode == "conflict" || rb.ReasonCode != "conflict" {
			t.Errorf("round %d: first (%s) %s %s, second (%s) %s %s: the first sent must win", i,
				first, ra.Status, ra.ReasonCode, second, rb.Status, rb.ReasonCode)
		}
	}
	slices.Sort(gaps)
	t.Logf("20 pairs, publish gap median %v max %v: the first won every time it should", gaps[len(gaps)/2], gaps[len(gaps)-1])
}

// BenchmarkCommandFlood: time from the first of 300 expired requests
// published in a burst to the last final response, through mosquitto and
// the real agent (goal ≤ 1 s, i.e. ≥ 300 refusals/s end to end).
func BenchmarkCommandFlood(b *testing.B) {
	bin := agentBin
	if buildErr != nil {
		b.Skip(buildErr)
	}
	r := newFloodRig(b, bin, 0)
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		_, d, ok := r.flood(b, fmt.Sprintf("fl%d", i), 300)
		if !ok {
			b.Fatal("flood not answered")
		}
		took = append(took, d)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms/300-median")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms/300-max")
	b.ReportMetric(300/took[len(took)/2].Seconds(), "refusals/s")
}

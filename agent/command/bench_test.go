package command_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
)

// BenchmarkReceiptToFirstFrame measures, per command, Handle (receipt) →
// first Transmit call (through parse, checks, interlocks and the fsynced
// ledger write), and receipt → final response with an ECU that confirms at
// once. Run with -benchtime=1000x for the documented numbers.
func BenchmarkReceiptToFirstFrame(b *testing.B) {
	h := newHarness(b, nil)
	toFrame := make([]time.Duration, 0, b.N)
	toFinal := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := idN("bench", i)
		r := h.req(id, "door.lock")
		payload := mustJSON(b, r)
		start := time.Now()
		h.sendRaw(requestTopic(id), payload)
		resp := h.final(id, 1)
		done := time.Now()
		if resp.Status != command.StatusSucceeded {
			b.Fatalf("command %s: %+v", id, resp)
		}
		frames := h.tx.Frames()
		toFrame = append(toFrame, frames[len(frames)-1].Time.Sub(start))
		toFinal = append(toFinal, done.Sub(start))
	}
	b.StopTimer()
	report(b, "frame", toFrame)
	report(b, "final", toFinal)
}

func report(b *testing.B, what string, d []time.Duration) {
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), what+"-p50-ms")
	b.ReportMetric(q(0.99), what+"-p99-ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, what+"-max-ms")
}

// BenchmarkRefusalFlood measures refusal throughput: 300 expired requests
// handed to the engine at once (as a flood arrives), until all 300 final
// responses are with the responder. Refusals are recorded in the ledger in
// batches with one fsync per batch, not one per request.
func BenchmarkRefusalFlood(b *testing.B) {
	h := newHarness(b, func(c *command.Config) { c.LedgerRetention = 0 })
	const n = 300
	var total time.Duration
	var took []time.Duration
	round := 0
	for b.Loop() {
		round++
		h.clock.Advance(time.Minute) // earlier entries expire: the ledger never fills
		payloads := make([][]byte, n)
		ids := make([]string, n)
		for i := range n {
			ids[i] = idN(fmt.Sprintf("fl%d", round), i)
			r := h.req(ids[i], "door.lock")
			r.IssuedAt = h.clock.Now().Add(-time.Minute).UnixMilli()
			payloads[i] = mustJSON(b, r)
		}
		start := time.Now()
		for i := range n {
			h.sendRaw(requestTopic(ids[i]), payloads[i])
		}
		for _, id := range ids {
			if r := h.final(id, 1); r.ReasonCode != command.ReasonExpired {
				b.Fatalf("%s: %+v", id, r)
			}
		}
		d := time.Since(start)
		total += d
		took = append(took, d)
	}
	b.ReportMetric(float64(n*len(took))/total.Seconds(), "refusals/s")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms/300-max")
}

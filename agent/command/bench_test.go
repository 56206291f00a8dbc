package command_test

import (
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

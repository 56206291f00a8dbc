package agenttest

import (
	"slices"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// BenchmarkCommandLatency: backend publish (QoS 1) → first BODY_COMMAND
// frame on the bus, and publish → final response at the backend, through
// Debian's mosquitto (TCP_NODELAY) and the real agent binary, one command
// at a time, alternating door.lock and door.unlock. "instant": the sim's
// body controller reacts on its next 5 ms model tick; "ecu300": after
// 300 ms. Commands are paced (pace) so that the session's publish rate
// limit (90/s, inbound included) does not queue them behind each other;
// back to back, the limit alone allows 45 commands/s. Run with
// -benchtime 1000x for the documented numbers.
func BenchmarkCommandLatency(b *testing.B) {
	for _, bc := range []struct {
		name  string
		delay time.Duration
	}{{"instant", time.Nanosecond}, {"ecu300", 300 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			if buildErr != nil {
				b.Skip(buildErr)
			}
			r := newFloodRig(b, agentBin, bc.delay)
			r.waitUnlockable(b)
			var toFrame, toFinal []time.Duration
			i := 0 // unlocked now: lock first
			for b.Loop() {
				name, value := "door.lock", 1.0
				if i%2 == 1 {
					name, value = "door.unlock", 2
				}
				i++
				req := devcloud.NewRequest(r.s.Thing(), name, nil, time.Now(), 30*time.Second)
				t0 := time.Now()
				r.be.publish(req)
				resp, ok := r.be.waitFinal(req.ID, 30*time.Second)
				if !ok || resp.Status != devcloud.StatusSucceeded {
					b.Fatalf("%s %s: %+v (answered %v)", name, req.ID, resp, ok)
				}
				var first time.Time
				for _, f := range r.s.Frames("LockRequest", value) {
					if !f.At.Before(t0) {
						first = f.At
						break
					}
				}
				if first.IsZero() {
					b.Fatalf("%s: no frame", req.ID)
				}
				toFrame = append(toFrame, first.Sub(t0))
				toFinal = append(toFinal, resp.At.Sub(t0))
				// Let the publish rate limit (max_publish_rate, inbound
				// included: two slots per command) recover, so this
				// measures one command's latency, not the limit.
				time.Sleep(pace)
			}
			quantiles(b, "frame", toFrame)
			quantiles(b, "final", toFinal)
		})
	}
}

// pace is the pause between commands: the two rate-limit slots (request
// in, response out) of one command at 90 publishes/s, with a margin.
const pace = 30 * time.Millisecond

func quantiles(b *testing.B, what string, d []time.Duration) {
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), what+"-p50-ms")
	b.ReportMetric(q(0.99), what+"-p99-ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, what+"-max-ms")
}

package uplink

import (
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

// mqttPublishOverhead is the MQTT 3.1.1 PUBLISH framing around a QoS 1
// payload of n bytes on topic (fixed header, remaining length, topic,
// packet identifier) plus the 4-byte PUBACK.
func mqttPublishOverhead(topic string, n int) int {
	rem := 2 + len(topic) + 2 + n
	lenBytes := 1
	for x := rem; x >= 128; x >>= 7 {
		lenBytes++
	}
	return 1 + lenBytes + 2 + len(topic) + 2 + 4
}

// BenchmarkEncodeCity packs the city stream (cityStream: the demo
// config's signals plus CAN filler, every signal an event) into messages
// with the shipped max_payload and reports bytes on the wire per record
// (payload, and payload + MQTT framing; TLS excluded) and the CPU time
// per record of the drain's encoding step (record.Unmarshal, batching,
// encoding, compression).
func BenchmarkEncodeCity(b *testing.B) {
	const n = 100_000
	topics := DefaultConfig().streamTopics("demo-car-001")
	streams := map[bool][]Record{false: cityStream(n, false), true: cityStream(n, true)}
	for _, tc := range []struct {
		name     string
		encoding string
		compress byte
		noisy    bool
	}{
		{"city/json", EncodingJSON, 0, false},
		{"city/compact-zstd", EncodingCompact, wire.CompressZstd, false},
		{"city/compact-deflate", EncodingCompact, wire.CompressDeflate, false},
		{"city/compact-none", EncodingCompact, wire.CompressNone, false},
		{"noisy/json", EncodingJSON, 0, true},
		{"noisy/compact-zstd", EncodingCompact, wire.CompressZstd, true},
		{"noisy/compact-deflate", EncodingCompact, wire.CompressDeflate, true},
	} {
		recs := streams[tc.noisy]
		b.Run(tc.name, func(b *testing.B) {
			var payload, framed, msgs int
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				bt := newBatcher("demo-car-001", topics, DefaultConfig().MaxPayload, time.Second, time.Time{}, tc.encoding)
				bt.compress = tc.compress
				now := time.Now()
				payload, framed, msgs = 0, 0, 0
				take := func() {
					for m := bt.peek(); m != nil; m = bt.peek() {
						bt.pop()
						payload += len(m.payload)
						framed += len(m.payload) + mqttPublishOverhead(m.topic, len(m.payload))
						msgs++
					}
				}
				for _, r := range recs {
					bt.add(r, now)
					take()
				}
				bt.flushDue(now.Add(time.Hour), now.Add(time.Hour), true)
				take()
				if d := bt.takeDropped(); len(d) > 0 {
					b.Fatalf("%d records dropped", len(d))
				}
			}
			b.ReportMetric(float64(payload)/n, "payload-B/record")
			b.ReportMetric(float64(framed)/n, "mqtt-B/record")
			b.ReportMetric(float64(n)/float64(msgs), "records/msg")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/n, "cpu-ns/record")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestCityStreamShape pins the stream the benchmark measures.
func TestCityStreamShape(t *testing.T) {
	recs := cityStream(20_000, false)
	var events, telemetry int
	for _, r := range recs {
		if r.Class == ClassEvent {
			events++
		} else {
			telemetry++
		}
	}
	if events < 19_000 || telemetry == 0 {
		t.Errorf("%d events, %d telemetry records", events, telemetry)
	}
	span := recs[len(recs)-1].Time.Sub(recs[0].Time)
	t.Logf("%d records over %v: %d events, %d telemetry (%.0f records/s of driving)", len(recs), span, events, telemetry, float64(len(recs))/span.Seconds())
}

// processCPU is the process's user+system CPU time (GC included), which a
// loaded machine inflates less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package ledger_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// BenchmarkBegin measures one durable (fsynced) Begin: the ledger's share
// of the command engine's receipt → first frame latency.
func BenchmarkBegin(b *testing.B) {
	l, err := ledger.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	lat := make([]time.Duration, 0, b.N)
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := l.Begin(fmt.Sprintf("bench-%d", i), "door.lock", "cmd/tcu/x/response/y", now, now); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

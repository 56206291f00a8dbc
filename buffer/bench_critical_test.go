package buffer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// BenchmarkCriticalAppendGroup: the latency of one Append under the group
// policy (default 20 ms window) while a telemetry producer keeps the
// committer busy (an AppendBatch of 16 records every 5 ms, as a vehicle
// would). A critical record (a command response) is committed and synced
// at once; a telemetry record waits for its window. ns/op is the latency.
func BenchmarkCriticalAppendGroup(b *testing.B) {
	for _, c := range []buffer.Class{buffer.ClassCritical, buffer.ClassTelemetry} {
		b.Run(c.String(), func(b *testing.B) {
			o := testOptions(b)
			o.Sync = buffer.SyncGroup
			o.MaxBytes = 1 << 40
			q := mustOpen(b, o)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				batch := make([][]byte, 16)
				for i := range batch {
					batch[i] = make([]byte, 200)
				}
				t := time.NewTicker(5 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if _, err := q.AppendBatch(ctx, buffer.ClassTelemetry, batch); err != nil && ctx.Err() == nil {
						b.Error(err)
						return
					}
				}
			})
			data := make([]byte, 200)
			b.ResetTimer()
			for b.Loop() {
				if _, err := q.Append(context.Background(), c, data); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
			wg.Wait()
		})
	}
}

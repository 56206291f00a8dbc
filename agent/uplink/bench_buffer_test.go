package uplink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// bufferQueue adapts the durable buffer to uplink.Queue (as agent/queue.go
// does in the agent).
type bufferQueue struct{ q *buffer.Queue }

func (b bufferQueue) Lease(max, maxBytes int) ([]uplink.Record, error) {
	recs, err := b.q.Lease(max, maxBytes)
	out := make([]uplink.Record, len(recs))
	for i, r := range recs {
		out[i] = uplink.Record{Seq: r.Seq, Class: uplink.ClassTelemetry, Time: r.Time, Data: r.Data}
	}
	return out, err
}
func (b bufferQueue) Ack(seqs ...uint64) error { return b.q.Ack(seqs...) }
func (b bufferQueue) Release(seqs ...uint64)   { b.q.Release(seqs...) }
func (b bufferQueue) Ready() <-chan struct{}   { return b.q.Ready() }

// BenchmarkDrainBacklogBadger drains a 1,000,000-record backlog from the
// real Badger queue (filled beforehand with sync=none; filling is not
// timed) to an in-process broker with the shipped limits.
func BenchmarkDrainBacklogBadger(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		opts := buffer.DefaultOptions(b.TempDir())
		opts.Sync = buffer.SyncNone
		opts.MaxBytes = 4 << 30 // no eviction: every record must drain
		opts.Logger = slog.New(slog.DiscardHandler)
		q, err := buffer.Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		at := time.Now().Add(-time.Hour)
		var g errgroup.Group
		const workers = 8
		for w := range workers {
			g.Go(func() error {
				for j := w; j < n; j += workers {
					body := fmt.Sprintf(`{"signals":{"Vehicle.Speed":%d.%d,"Vehicle.Powertrain.Battery.Voltage":12.%d,"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked":true}}`, j%130, j%10, j%9)
					data, _ := record.Record{Kind: record.KindTelemetry, Time: at, Body: json.RawMessage(body)}.Marshal()
					if _, err := q.Append(context.Background(), buffer.ClassTelemetry, data); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		if st := q.Stats(); st.Records != n {
			b.Fatalf("queue holds %d records after the fill, want %d", st.Records, n)
		}
		cloud := startCloud(b, devcloud.Limits{})
		cfg := fastConfig(cloud.Addr())
		cfg.BacklogRate = 0
		cfg.BatchLatency = uplink.DefaultConfig().BatchLatency
		s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-BENCH", Queue: bufferQueue{q}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		stop := runSession(b, s)
		eventually(b, 20*time.Minute, "backlog drained", func() bool { return q.Stats().Records == 0 })
		elapsed, cpu := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		stop()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/record")
		cloud.Close()
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

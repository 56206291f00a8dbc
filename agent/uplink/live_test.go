package uplink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestLiveFirstDuringBacklog: with the real buffer holding a long
// backlog that drains at backlog_rate, records appended now reach the
// broker within a couple of seconds instead of queueing behind it.
func TestLiveFirstDuringBacklog(t *testing.T) {
	liveFirst(t, 20000, func(cfg *uplink.Config) {
		cfg.BacklogRate = 2000 // the backlog needs ≈ 10 s
	})
}

// TestLiveFirstUnderThroughputCap: the same when the per-connection
// throughput cap, not backlog_rate, holds the backlog back (64 KiB/s,
// 16 KiB messages: the 8,000-record backlog needs ≈ 7 s).
func TestLiveFirstUnderThroughputCap(t *testing.T) {
	liveFirst(t, 8000, func(cfg *uplink.Config) {
		cfg.BacklogRate = 0
		cfg.MaxPayload = 16 * 1024
		cfg.MaxThroughput = 64 * 1024
	})
}

func liveFirst(t *testing.T, backlog int, configure func(*uplink.Config)) {
	opts := buffer.DefaultOptions("")
	opts.InMemory, opts.Logger, opts.Sync = true, slog.New(slog.DiscardHandler), buffer.SyncNone
	q, err := buffer.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	appendRec := func(at time.Time, i int) uint64 {
		data, _ := record.Record{Kind: record.KindTelemetry, Time: at, Body: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}.Marshal()
		seq, err := q.Append(ctx, buffer.ClassTelemetry, data)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	for i := range backlog {
		appendRec(time.Now().Add(-time.Hour), i)
	}
	cloud := startCloud(t, devcloud.Limits{})
	var mu sync.Mutex
	arrived := map[uint64]time.Time{}
	cloud.Subscribe("dt/tcu/+/telemetry", func(_ string, b []byte) {
		var env struct {
			Records []struct{ Seq uint64 } `json:"records"`
		}
		_ = json.Unmarshal(b, &env)
		mu.Lock()
		for _, r := range env.Records {
			arrived[r.Seq] = time.Now()
		}
		mu.Unlock()
	})
	cfg := fastConfig(cloud.Addr())
	configure(&cfg)
	cfg.BatchLatency = uplink.Duration(200 * time.Millisecond)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-LIVE", Queue: bufferQueue{q}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	sent := map[uint64]time.Time{}
	for i := range 10 {
		time.Sleep(200 * time.Millisecond)
		sent[appendRec(time.Now(), backlog+i)] = time.Now()
	}
	eventually(t, 15*time.Second, "live records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for seq := range sent {
			if _, ok := arrived[seq]; !ok {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	for seq, at := range sent {
		worst = max(worst, arrived[seq].Sub(at))
	}
	pending := backlog - len(arrived) + len(sent)
	t.Logf("live latency worst %v; backlog records still pending when the live ones arrived: %d", worst.Round(time.Millisecond), pending)
	if worst > 3*time.Second {
		t.Errorf("live record took %v behind the backlog, want ≤ 3s", worst)
	}
	if pending <= 0 {
		t.Errorf("backlog already drained: the test did not exercise live-first")
	}
}

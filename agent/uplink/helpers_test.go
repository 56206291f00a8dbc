package uplink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/record/wire"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger logs to the test at warn level and above.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// startCloud runs a devcloud with both listeners on loopback.
func startCloud(t testing.TB, limits devcloud.Limits) *devcloud.Cloud {
	t.Helper()
	c, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Limits: limits,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fastConfig is a plaintext config with short timers for tests.
func fastConfig(addr string) uplink.Config {
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+addr, true
	cfg.BatchLatency = uplink.Duration(50 * time.Millisecond)
	cfg.FirstConnectJitter = 0
	cfg.BackoffInitial = uplink.Duration(time.Second)
	cfg.BackoffMax = uplink.Duration(2 * time.Second)
	cfg.ConnectTimeout = uplink.Duration(3 * time.Second)
	cfg.AckTimeout = uplink.Duration(5 * time.Second)
	cfg.ShutdownGrace = uplink.Duration(time.Second)
	return cfg
}

// collector gathers the seqs delivered on telemetry/events topics.
type collector struct {
	mu       sync.Mutex
	seqs     map[uint64]int // seq → times seen
	messages int
	maxBytes int
	bad      []string
	// wireBytes is the payload bytes as published; compact counts the
	// compact batches among messages.
	wireBytes, compact int
}

func collect(c *devcloud.Cloud, filter string) *collector {
	col := &collector{seqs: make(map[uint64]int)}
	c.Subscribe(filter, func(topic string, b []byte) {
		var env struct {
			V       int    `json:"v"`
			Device  string `json:"device"`
			Records []struct {
				Seq uint64 `json:"seq"`
			} `json:"records"`
		}
		col.mu.Lock()
		defer col.mu.Unlock()
		col.wireBytes += len(b)
		col.maxBytes = max(col.maxBytes, len(b))
		if wire.IsCompact(b) { // the compact encoding decodes to the same envelope
			js, err := wire.ToJSON(b)
			if err != nil {
				col.bad = append(col.bad, fmt.Sprintf("%s: %v", topic, err))
				return
			}
			col.compact++
			b = js
		}
		if err := json.Unmarshal(b, &env); err != nil || env.V != 1 {
			col.bad = append(col.bad, fmt.Sprintf("%s: %v", topic, err))
			return
		}
		col.messages++
		for _, r := range env.Records {
			col.seqs[r.Seq]++
		}
	})
	return col
}

// distinct returns how many distinct seqs arrived and how many were
// duplicates.
func (c *collector) distinct() (n, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.seqs {
		n++
		dups += k - 1
	}
	return n, dups
}

// missing lists seqs in [1, upto] that never arrived.
func (c *collector) missing(upto uint64) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m []uint64
	for s := uint64(1); s <= upto; s++ {
		if c.seqs[s] == 0 {
			m = append(m, s)
		}
	}
	return m
}

// appendTelemetry appends n telemetry records to q.
func appendTelemetry(t testing.TB, q *uplinktest.Queue, n int, at time.Time) {
	t.Helper()
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"signals":{"Vehicle.Speed":%d,"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked":true}}`, i%130)
		if _, err := q.AppendRecord(uplink.ClassTelemetry, record.Record{Kind: record.KindTelemetry, Time: at, Body: json.RawMessage(body)}); err != nil {
			t.Fatal(err)
		}
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runSession starts s.Run and returns a stop func that cancels and waits.
func runSession(t testing.TB, s *uplink.Session) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v, want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

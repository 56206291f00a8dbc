package devcloud_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record/wire"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// syncBuffer is a console writer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBasicIngestAndCompactConsole: a compact batch published to a Basic
// Ingest topic is acknowledged, reaches handlers (the "rule") under the
// topic without $aws/rules/<rule>/, is shown decoded on the console, and
// nobody can subscribe to the rule topic.
func TestBasicIngestAndCompactConsole(t *testing.T) {
	var console syncBuffer
	c, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Console: &console, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	var topics []string
	c.Subscribe("dt/tcu/+/telemetry", func(topic string, _ []byte) { mu.Lock(); topics = append(topics, topic); mu.Unlock() })

	enc, err := wire.NewEncoder(wire.CompressZstd)
	if err != nil {
		t.Fatal(err)
	}
	enc.Reset("TCU-BI")
	for i := range 3 {
		if err := enc.Add(uint64(41+i), 1764930000000+int64(i), "telemetry", []byte(`{"signals":{"Vehicle.Speed":12.5}}`)); err != nil {
			t.Fatal(err)
		}
	}
	payload, err := enc.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dial(t, c, "TCU-BI")
	if err := conn.Subscribe(ctx, "$aws/rules/tcu_telemetry/#", func(string, []byte) {}); err == nil {
		t.Error("subscription to a Basic Ingest topic accepted")
	}
	if err := conn.Publish(ctx, "$aws/rules/tcu_telemetry/dt/tcu/TCU-BI/telemetry", payload); err != nil {
		t.Fatalf("Basic Ingest publish: %v", err)
	}
	waitFor(t, "rule delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(topics) == 1 })
	if topics[0] != "dt/tcu/TCU-BI/telemetry" {
		t.Errorf("handler saw topic %q", topics[0])
	}
	waitFor(t, "console line", func() bool { return strings.Contains(console.String(), "seq 41..43") })
	if line := console.String(); !strings.Contains(line, "TCU-BI: 3 records") || !strings.Contains(line, "compact") || !strings.Contains(line, "Vehicle.Speed") {
		t.Errorf("console: %s", line)
	}
}

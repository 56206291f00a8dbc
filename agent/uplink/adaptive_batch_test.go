package uplink_test

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// firstRecordDelay connects a session with batch_latency 1 s (the
// default), waits until it is idle (the online status acknowledged), then
// appends one record and returns how long it took to reach the broker.
func firstRecordDelay(t *testing.T, adaptive bool) time.Duration {
	cloud := startCloud(t, devcloud.Limits{})
	arrived := make(chan time.Time, 1)
	cloud.Subscribe("dt/tcu/+/telemetry", func(string, []byte) {
		select {
		case arrived <- time.Now():
		default:
		}
	})
	q := uplinktest.NewQueue()
	cfg := fastConfig(cloud.Addr())
	cfg.BatchLatency = uplink.Duration(time.Second)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-FR", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !adaptive {
		uplink.DisableAdaptiveBatching(s)
	}
	stop := runSession(t, s)
	defer stop()
	eventually(t, 10*time.Second, "online status acknowledged", func() bool { return s.Stats().Acked >= 1 })
	start := time.Now()
	appendTelemetry(t, q, 1, start)
	select {
	case at := <-arrived:
		return at.Sub(start)
	case <-time.After(10 * time.Second):
		t.Fatal("the record never arrived")
	}
	return 0
}

// TestFirstRecordOfIdleSessionGoesAtOnce: with nothing in flight, a new
// record does not wait batch_latency; without adaptive batching it does
// (the comparison shows the test can fail).
func TestFirstRecordOfIdleSessionGoesAtOnce(t *testing.T) {
	adaptive := firstRecordDelay(t, true)
	legacy := firstRecordDelay(t, false)
	t.Logf("first record of an idle session: adaptive %v, fixed batch_latency %v", adaptive, legacy)
	if adaptive > 500*time.Millisecond {
		t.Errorf("adaptive: first record took %v, want well under batch_latency (1 s)", adaptive)
	}
	if legacy < 900*time.Millisecond {
		t.Errorf("fixed latency: first record took %v, expected ≈ batch_latency: the comparison is broken", legacy)
	}
}

// loadRun feeds records at a high rate for d and returns the records and
// messages the broker got.
func loadRun(t *testing.T, adaptive bool, thing string, d time.Duration) (records, messages int) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	cfg := fastConfig(cloud.Addr())
	cfg.BatchLatency = uplink.Duration(250 * time.Millisecond)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: thing, Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !adaptive {
		uplink.DisableAdaptiveBatching(s)
	}
	stop := runSession(t, s)
	defer stop()
	eventually(t, 10*time.Second, "connected", s.Connected)
	// 2,000 records/s in 10 ms steps, like a busy bus.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		appendTelemetry(t, q, 20, time.Now())
		n += 20
	}
	eventually(t, 20*time.Second, "all records", func() bool { c, _ := col.distinct(); return c >= n })
	col.mu.Lock()
	defer col.mu.Unlock()
	return n, col.messages
}

// TestBatchingUnderLoad: at a high record rate adaptive batching sends
// about as many messages as fixed batch_latency batching (the leading
// record of a quiet topic goes alone, then records batch as before).
func TestBatchingUnderLoad(t *testing.T) {
	const d = 3 * time.Second
	ra, ma := loadRun(t, true, "TCU-LA", d)
	rl, ml := loadRun(t, false, "TCU-LL", d)
	t.Logf("adaptive: %d records in %d messages (%.0f records/message, %.1f messages/s); fixed: %d in %d (%.0f, %.1f/s)",
		ra, ma, float64(ra)/float64(ma), float64(ma)/d.Seconds(), rl, ml, float64(rl)/float64(ml), float64(ml)/d.Seconds())
	if float64(ma) > float64(ml)*1.25+2 {
		t.Errorf("adaptive batching sent %d messages, fixed %d: batching lost under load", ma, ml)
	}
}

// TestStartupBacklogGoesAtOnce: records observed before the first
// connect (start-up events) are published right after it, not when they
// are batch_latency old.
func TestStartupBacklogGoesAtOnce(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	arrived := make(chan time.Time, 1)
	cloud.Subscribe("dt/tcu/+/telemetry", func(string, []byte) {
		select {
		case arrived <- time.Now():
		default:
		}
	})
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 3, time.Now())
	cfg := fastConfig(cloud.Addr())
	cfg.BatchLatency = uplink.Duration(5 * time.Second)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-SB", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runSession(t, s)
	select {
	case at := <-arrived:
		if d := at.Sub(start); d > 2*time.Second {
			t.Errorf("start-up records arrived %v after Run, want right after the connect (batch_latency 5 s)", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("never arrived")
	}
}

package uplink_test

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestDrainPlaintext: records in the queue arrive at the broker in
// envelopes, each exactly once, and are acked only after arriving.
func TestDrainPlaintext(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	const n = 5000
	appendTelemetry(t, q, n, time.Now())
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-1", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSession(t, s)
	eventually(t, 30*time.Second, "all records acked", func() bool {
		stored, _, _, _ := q.Counts()
		return stored == 0
	})
	stop()
	if got, dups := col.distinct(); got != n || dups != 0 {
		t.Errorf("broker saw %d distinct seqs, %d duplicates; want %d, 0", got, dups, n)
	}
	if _, _, acked, bad := q.Counts(); acked != n || bad != 0 {
		t.Errorf("queue acked %d (bad %d), want %d (0)", acked, bad, n)
	}
	st := s.Stats()
	if st.AckedRecords != n || st.Inflight != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestBacklogRateBounded: records older than the connection drain at
// BacklogRate records/s, leaving room for live traffic and commands.
func TestBacklogRateBounded(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 3000, time.Now().Add(-time.Hour))
	cfg := fastConfig(cloud.Addr())
	cfg.BacklogRate = 2000
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-BL", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runSession(t, s)
	eventually(t, 30*time.Second, "backlog drained", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
	// 3000 records at 2000/s: the first batch goes at once, the rest waits.
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("3000 backlog records drained in %v, want ≥ ~1s at 2000/s", d)
	}
}

// TestAckTimeoutReconnects: a broker that stops acknowledging is treated
// as a broken connection: the session reconnects and re-sends, and the
// records are acked once the broker acknowledges again.
func TestAckTimeoutReconnects(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	cloud.Faults().WithholdPubacks(true)
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 50, time.Now())
	cfg := fastConfig(cloud.Addr())
	cfg.AckTimeout = uplink.Duration(time.Second)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-AT", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "a reconnect after the ack timeout", func() bool { return s.Stats().Reconnects >= 1 })
	if _, _, acked, _ := q.Counts(); acked != 0 {
		t.Fatalf("%d records acked without PUBACK", acked)
	}
	cloud.Faults().WithholdPubacks(false)
	eventually(t, 20*time.Second, "all acked", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
}

// TestFrozenWallClock: a wall clock that is wrong or stands still (no
// GNSS fix yet, RTC reset) does not stall the drain: rates, timeouts and
// connect spacing run on the monotonic clock.
func TestFrozenWallClock(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	frozen := time.Date(1970, 1, 1, 0, 0, 5, 0, time.UTC)
	appendTelemetry(t, q, 500, frozen)
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-FZ", Queue: q, Logger: testLogger(t),
		Now: func() time.Time { return frozen }})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 20*time.Second, "500 records", func() bool { n, _ := col.distinct(); return n == 500 })
}

// TestDrainCompact: with encoding = "compact" every record arrives once,
// in compact batches that decode to the envelope, in fewer bytes.
func TestDrainCompact(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	const n = 5000
	appendTelemetry(t, q, n, time.Now())
	cfg := fastConfig(cloud.Addr())
	cfg.Encoding = uplink.EncodingCompact
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-C", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSession(t, s)
	eventually(t, 30*time.Second, "all records acked", func() bool {
		stored, _, _, _ := q.Counts()
		return stored == 0
	})
	stop()
	if got, dups := col.distinct(); got != n || dups != 0 {
		t.Errorf("broker saw %d distinct seqs, %d duplicates; want %d, 0", got, dups, n)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.bad) > 0 || col.compact != col.messages || col.messages == 0 {
		t.Errorf("%d of %d messages compact, bad: %v", col.compact, col.messages, col.bad)
	}
	if per := float64(col.wireBytes) / n; per > 40 {
		t.Errorf("%.1f bytes per record on the wire, want well under the JSON envelope's", per)
	}
	t.Logf("%d records in %d compact messages, %.1f bytes/record", n, col.messages, float64(col.wireBytes)/n)
}

// TestBasicIngestTopic: with telemetry_topic on Basic Ingest the drain
// publishes there (the devcloud routes it to the rule like AWS) and
// every record is acknowledged.
func TestBasicIngestTopic(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry") // what the rule sees
	q := uplinktest.NewQueue()
	const n = 500
	appendTelemetry(t, q, n, time.Now())
	cfg := fastConfig(cloud.Addr())
	cfg.TelemetryTopic = "$aws/rules/tcu_telemetry/dt/tcu/{thing}/telemetry"
	cfg.Encoding = uplink.EncodingCompact
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-BI", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSession(t, s)
	eventually(t, 30*time.Second, "all records acked", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
	stop()
	if got, dups := col.distinct(); got != n || dups != 0 {
		t.Errorf("rule saw %d distinct seqs, %d duplicates; want %d, 0", got, dups, n)
	}
	if st := cloud.Stats("TCU-BI"); st.Disconnects != 0 {
		t.Errorf("devcloud disconnected the session: %s", st.LastViolation)
	}
}

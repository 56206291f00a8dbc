package uplink_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// plainQueue hides LeaseClasses: the session's fallback for queues that
// cannot lease by class.
type plainQueue struct{ q *uplinktest.Queue }

func (p plainQueue) Lease(max, maxBytes int) ([]uplink.Record, error) {
	return p.q.Lease(max, maxBytes)
}
func (p plainQueue) Ack(seqs ...uint64) error { return p.q.Ack(seqs...) }
func (p plainQueue) Release(seqs ...uint64)   { p.q.Release(seqs...) }
func (p plainQueue) Ready() <-chan struct{}   { return p.q.Ready() }

func appendEvents(t *testing.T, q *uplinktest.Queue, n int) {
	t.Helper()
	for range n {
		if _, err := q.AppendRecord(uplink.ClassEvent, record.Record{Kind: record.KindEvent, Time: time.Now(), Body: json.RawMessage(`{"name":"door_opened"}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSetPublishClasses: records of an excluded class stay in the buffer,
// not leased, while other classes flow; allowing them again sends them.
// Both with a queue that leases by class and with one that cannot.
func TestSetPublishClasses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue func(*uplinktest.Queue) uplink.Queue
	}{
		{"class leaser", func(q *uplinktest.Queue) uplink.Queue { return q }},
		{"plain queue", func(q *uplinktest.Queue) uplink.Queue { return plainQueue{q} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := startCloud(t, devcloud.Limits{})
			tel := collect(cloud, "dt/tcu/+/telemetry")
			ev := collect(cloud, "dt/tcu/+/events")
			q := uplinktest.NewQueue()
			s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-PC", Queue: tc.queue(q), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			s.SetPublishClasses(func(c uint8) bool { return c != uint8(uplink.ClassTelemetry) })
			runSession(t, s)
			eventually(t, 10*time.Second, "connected", s.Connected)
			appendTelemetry(t, q, 30, time.Now())
			appendEvents(t, q, 5)
			eventually(t, 10*time.Second, "events", func() bool { n, _ := ev.distinct(); return n == 5 })
			time.Sleep(300 * time.Millisecond) // several batch latencies
			if n, _ := tel.distinct(); n != 0 {
				t.Fatalf("%d telemetry records published while telemetry is excluded", n)
			}
			stored, leased, _, _ := q.Counts()
			if _, plain := tc.queue(q).(plainQueue); plain {
				leased = 0 // leased and released again on each wake-up
			}
			if stored != 30 || leased != 0 {
				t.Fatalf("stored=%d leased=%d, want the 30 telemetry records stored and not leased", stored, leased)
			}
			s.SetPublishClasses(nil)
			eventually(t, 10*time.Second, "telemetry after allowing it", func() bool { n, _ := tel.distinct(); return n == 30 })
		})
	}
}

// TestSetBatchLatency applies to the batch already open.
func TestSetBatchLatency(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	cfg := fastConfig(cloud.Addr())
	cfg.BatchLatency = uplink.Duration(time.Minute)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-BL", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	uplink.DisableAdaptiveBatching(s) // otherwise the first record goes at once
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	appendTelemetry(t, q, 3, time.Now())
	time.Sleep(500 * time.Millisecond)
	if n, _ := col.distinct(); n != 0 {
		t.Fatalf("%d records out before the one-minute latency", n)
	}
	s.SetBatchLatency(20 * time.Millisecond)
	eventually(t, 5*time.Second, "records after lowering the latency", func() bool { n, _ := col.distinct(); return n == 3 })
}

// TestSetKeepAliveClamps to AWS's 30 s–1200 s.
func TestSetKeepAliveClamps(t *testing.T) {
	s, err := uplink.New(uplink.Options{Config: fastConfig("127.0.0.1:1"), Thing: "TCU-KA", Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want time.Duration }{
		{time.Second, 30 * time.Second}, {5 * time.Minute, 5 * time.Minute}, {time.Hour, 1200 * time.Second},
	} {
		s.SetKeepAlive(tc.in)
		if got := uplink.KeepAliveOf(s); got != tc.want {
			t.Errorf("SetKeepAlive(%v): %v, want %v", tc.in, got, tc.want)
		}
	}
}

package uplink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// produce appends perTick records every tick until stop is closed and
// returns the total.
func produce(t testing.TB, q *uplinktest.Queue, perTick int, tick time.Duration, stop <-chan struct{}) <-chan int {
	total := make(chan int, 1)
	go func() {
		n := 0
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				total <- n
				return
			case <-tk.C:
				appendTelemetry(t, q, perTick, time.Now())
				n += perTick
			}
		}
	}()
	return total
}

// TestOutageDeliversEverything: the broker is stopped under continuous
// telemetry and restarted; every record arrives (seq continuity) and
// duplicates are bounded by what was in flight at the cut.
func TestOutageDeliversEverything(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/TCU-O/telemetry")
	q := uplinktest.NewQueue()
	cfg := fastConfig(cloud.Addr())
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-O", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	stop := make(chan struct{})
	total := produce(t, q, 20, 10*time.Millisecond, stop)
	eventually(t, 10*time.Second, "first records", func() bool { n, _ := col.distinct(); return n > 100 })

	if err := cloud.Faults().Restart(context.Background(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "reconnect", func() bool { return s.Stats().Reconnects >= 1 })
	atReconnect, _ := col.distinct()
	eventually(t, 20*time.Second, "delivery resumed after the reconnect", func() bool { n, _ := col.distinct(); return n >= atReconnect+100 })
	close(stop)
	n := <-total
	eventually(t, 30*time.Second, "queue drained", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
	if miss := col.missing(uint64(n)); len(miss) > 0 {
		t.Fatalf("%d of %d records never arrived (first %v)", len(miss), n, miss[:min(5, len(miss))])
	}
	_, dups := col.distinct()
	// Only records in flight at the cut can be duplicated: ≤ window × batch.
	if limit := cfg.InflightWindow * 1000; dups > limit {
		t.Errorf("%d duplicates, more than the in-flight bound %d", dups, limit)
	}
	t.Logf("records=%d duplicates=%d reconnects=%d", n, dups, s.Stats().Reconnects)
}

// ackWatch wraps the fake queue to record when records are acked.
type ackWatch struct {
	*uplinktest.Queue
	mu    sync.Mutex
	acked map[uint64]time.Time
}

func (a *ackWatch) Ack(seqs ...uint64) error {
	a.mu.Lock()
	for _, s := range seqs {
		a.acked[s] = time.Now()
	}
	a.mu.Unlock()
	return a.Queue.Ack(seqs...)
}

func (a *ackWatch) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// TestWithheldPubacks: while the broker withholds PUBACKs nothing is
// acked, the in-flight count stops at the window and the broker never
// counts more publishes per second than the limit; once released,
// everything is acked.
func TestWithheldPubacks(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	cloud.Faults().WithholdPubacks(true)
	q := &ackWatch{Queue: uplinktest.NewQueue(), acked: make(map[uint64]time.Time)}
	cfg := fastConfig(cloud.Addr())
	cfg.InflightWindow = 10
	cfg.MaxPayload = 2048 // small messages: many publishes
	cfg.AckTimeout = uplink.Duration(20 * time.Second)
	appendTelemetry(t, q.Queue, 2000, time.Now())
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-W", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "window full", func() bool { return s.Stats().Inflight == int64(cfg.InflightWindow) })
	time.Sleep(500 * time.Millisecond)
	if st := s.Stats(); st.Inflight > int64(cfg.InflightWindow) || q.count() != 0 {
		t.Fatalf("withheld: inflight=%d acked=%d, want ≤ %d and 0", st.Inflight, q.count(), cfg.InflightWindow)
	}
	if bs := cloud.Stats("TCU-W"); bs.MaxInflight > cfg.InflightWindow {
		t.Errorf("broker saw %d in flight, window %d", bs.MaxInflight, cfg.InflightWindow)
	}
	cloud.Faults().WithholdPubacks(false)
	cloud.Faults().ReleasePubacks()
	eventually(t, 60*time.Second, "all acked", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
	bs := cloud.Stats("TCU-W")
	if bs.MaxPerSecond > 100 || bs.Discarded > 0 {
		t.Errorf("broker counted %d publishes in one second (%d discarded), limit 100", bs.MaxPerSecond, bs.Discarded)
	}
	t.Logf("broker: %+v; session: %+v", bs, s.Stats())
}

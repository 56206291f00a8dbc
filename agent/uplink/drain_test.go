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

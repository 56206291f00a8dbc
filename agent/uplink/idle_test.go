package uplink_test

import (
	"encoding/json"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest/natproxy"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestIdleDrainDoesNotWake: a connected session with nothing to send
// waits without a timer: at most one drain loop iteration in 3 s (the
// old 1 s idle poll went round 3 times).
func TestIdleDrainDoesNotWake(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	q := uplinktest.NewQueue()
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-IDLE", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	// Settled: the online status acknowledged, the drain waiting idle.
	eventually(t, 10*time.Second, "online status acked and the drain idle", func() bool {
		return s.Stats().Acked >= 1 && s.Stats().Inflight == 0 && uplink.IdleWaits(s) >= 2
	})
	before := uplink.DrainLoops(s)
	time.Sleep(3 * time.Second) // the window in which nothing may happen
	if n := uplink.DrainLoops(s) - before; n > 1 {
		t.Errorf("idle drain went round %d times in 3 s, want ≤ 1", n)
	}
	// And it still wakes for an append.
	col := collect(cloud, "dt/tcu/+/telemetry")
	appendTelemetry(t, q, 1, time.Now())
	eventually(t, 5*time.Second, "the record after the idle spell", func() bool { n, _ := col.distinct(); return n == 1 })
}

// TestAppendAsDrainGoesIdle: a record appended at the moment the drain
// goes idle — just before its wait, in the drain goroutine, or racing
// with it from another goroutine — wakes it: each quiet idle wait (nothing
// in flight, nothing held, so only the append can end it) appends the
// next record, 60 in a chain, so one lost signal stops the chain (the
// wait has no timeout) and the test fails.
func TestAppendAsDrainGoesIdle(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/+/telemetry")
	q := uplinktest.NewQueue()
	// batch_latency 50 ms: a record appended while a PUBACK is out waits
	// for its batch deadline, a real timer; a record never leased (a lost
	// signal) has none.
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-RACE", Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const runs = 60
	var armed atomic.Bool
	var appended atomic.Int32
	uplink.SetBeforeIdle(s, func(quiet bool) {
		if !quiet || !armed.Load() {
			return
		}
		switch n := appended.Add(1); {
		case n > runs:
		case n%2 == 1:
			appendTelemetry(t, q, 1, time.Now())
		default:
			go func() {
				if _, err := q.AppendRecord(uplink.ClassTelemetry, record.Record{Kind: record.KindTelemetry, Time: time.Now(), Body: json.RawMessage(`{"signals":{"Vehicle.Speed":0}}`)}); err != nil {
					t.Error(err)
				}
			}()
		}
	})
	runSession(t, s)
	eventually(t, 10*time.Second, "online status acked", func() bool { return s.Stats().Acked >= 1 && s.Stats().Inflight == 0 })
	start := time.Now()
	armed.Store(true)
	appendTelemetry(t, q, 1, time.Now()) // wakes the idle drain; its next idle wait starts the chain
	eventually(t, 30*time.Second, "the chain of records appended as the drain went idle", func() bool {
		n, _ := col.distinct()
		return n == runs+1
	})
	if n, dups := col.distinct(); dups != 0 {
		t.Errorf("%d records, %d duplicates", n, dups)
	}
	t.Logf("%d records appended as the drain went idle, all at the broker in %v", runs, time.Since(start))
}

// TestIdleLinkPingsItself: paho's keep-alive goroutine (a 5 s ticker
// whatever the keep-alive) does not run; the session pings on its own
// timer at the keep-alive it put in CONNECT, and the broker, which
// enforces 1.5 × that keep-alive, keeps the idle connection.
func TestIdleLinkPingsItself(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	nat, err := natproxy.New(cloud.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nat.Close() })
	s, err := uplink.New(uplink.Options{Config: fastConfig(nat.Addr()), Thing: "TCU-PING", Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const ka = 2 * time.Second
	uplink.SetTestKeepAlive(s, ka)
	runSession(t, s)
	eventually(t, 10*time.Second, "online status acked", func() bool { return s.Stats().Acked >= 1 })
	buf := make([]byte, 1<<20)
	// The frame reads paho%2emqtt%2egolang.keepalive(...).
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "golang.keepalive(") {
		t.Error("paho's keep-alive goroutine runs")
	}
	b0 := nat.Stats()
	time.Sleep(4*ka + ka/2) // idle: only pings may pass
	b1 := nat.Stats()
	// PINGREQ and PINGRESP are 2 bytes each: at least 3 exchanges.
	if up, down := b1.BytesUp-b0.BytesUp, b1.BytesDown-b0.BytesDown; up < 6 || down < 6 {
		t.Errorf("idle for %v at keep-alive %v: %d bytes up, %d down; want ≥ 3 PING exchanges of 2 + 2 bytes", 4*ka+ka/2, ka, up, down)
	}
	if st := s.Stats(); st.Reconnects != 0 || !st.Connected || b1.Accepted != 1 {
		t.Errorf("the broker dropped the idle connection: %+v, %d connections", st, b1.Accepted)
	}
}

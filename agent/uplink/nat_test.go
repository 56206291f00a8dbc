package uplink_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest/natproxy"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// natSetup is a devcloud behind a NAT-like proxy and a session to it
// with a short keep-alive.
type natSetup struct {
	cloud *devcloud.Cloud
	nat   *natproxy.Proxy
	q     *uplinktest.Queue
	s     *uplink.Session
	col   *collector

	mu       sync.Mutex
	commands map[string]time.Time // payload → when the handler got it
}

func newNATSetup(t *testing.T, thing string, keepAlive time.Duration, edit ...func(*uplink.Config)) *natSetup {
	t.Helper()
	cloud := startCloud(t, devcloud.Limits{})
	nat, err := natproxy.New(cloud.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nat.Close() })
	n := &natSetup{cloud: cloud, nat: nat, q: uplinktest.NewQueue(), commands: make(map[string]time.Time)}
	n.col = collect(cloud, "dt/tcu/+/telemetry")
	cfg := fastConfig(nat.Addr())
	for _, e := range edit {
		e(&cfg)
	}
	n.s, err = uplink.New(uplink.Options{Config: cfg, Thing: thing, Queue: n.q, Logger: testLogger(t),
		Subscriptions: []string{"cmd/tcu/" + thing + "/request/+"},
		Handler: func(m uplink.Message) {
			n.mu.Lock()
			if _, seen := n.commands[string(m.Payload)]; !seen {
				n.commands[string(m.Payload)] = time.Now()
			}
			n.mu.Unlock()
			m.Ack()
		}})
	if err != nil {
		t.Fatal(err)
	}
	uplink.SetTestKeepAlive(n.s, keepAlive)
	runSession(t, n.s)
	eventually(t, 10*time.Second, "connected", n.s.Connected)
	return n
}

func (n *natSetup) commandAt(payload string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.commands[payload]
	return at, ok
}

// TestSilentNATDropWhileIdle: the carrier NAT forgets an idle
// connection without telling anyone. The session notices within
// 1.5 × keep-alive, reconnects, and a command the cloud published right
// after the drop reaches the agent within 1.5 × keep-alive + 2 s of it.
func TestSilentNATDropWhileIdle(t *testing.T) {
	const ka = 4 * time.Second
	n := newNATSetup(t, "TCU-NAT1", ka)
	// The NAT drops mappings idle for 2 s: shorter than the keep-alive,
	// so the idle session's mapping goes.
	n.nat.SetIdleTimeout(2*time.Second, natproxy.Blackhole)
	eventually(t, 15*time.Second, "the NAT to drop the idle mapping", func() bool { return n.nat.Stats().Blackholed >= 1 })
	drop := n.nat.Drops()[0]
	n.nat.SetIdleTimeout(0, natproxy.Blackhole) // the next mapping stays
	if err := n.cloud.Publish("cmd/tcu/TCU-NAT1/request/unlock", []byte("unlock-1")); err != nil {
		t.Fatal(err)
	}
	budget := ka*3/2 + 2*time.Second
	eventually(t, budget+5*time.Second, "the command", func() bool { _, ok := n.commandAt("unlock-1"); return ok })
	at, _ := n.commandAt("unlock-1")
	if d := at.Sub(drop); d > budget {
		t.Errorf("command arrived %v after the silent drop, want ≤ 1.5 × %v + 2 s = %v", d, ka, budget)
	} else {
		t.Logf("command arrived %v after the silent drop (budget %v)", d, budget)
	}
	st := n.s.Stats()
	if st.Reconnects < 1 || !strings.Contains(st.LastError, "dead link") && !strings.Contains(st.LastError, "pingresp") {
		t.Errorf("stats %+v: want a reconnect after a dead link", st)
	}
}

// TestSilentNATDropWhileSending: the mapping vanishes while records are
// being published: the unanswered publish gives the link away within
// the keep-alive's ping budget, and every record arrives after the
// reconnect (released and re-sent).
func TestSilentNATDropWhileSending(t *testing.T) {
	const ka = 4 * time.Second
	n := newNATSetup(t, "TCU-NAT2", ka)
	appendTelemetry(t, n.q, 20, time.Now())
	eventually(t, 10*time.Second, "first records", func() bool { c, _ := n.col.distinct(); return c == 20 })
	n.nat.BlackholeAll()
	drop := time.Now()
	for range 10 { // records keep coming while the link is dead
		appendTelemetry(t, n.q, 10, time.Now())
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 15*time.Second, "reconnect", func() bool { return n.s.Stats().Reconnects >= 1 })
	detected := time.Since(drop)
	if detected > ka*3/2 {
		t.Errorf("dead link found %v after the drop, want ≤ 1.5 × keep-alive %v", detected, ka*3/2)
	}
	eventually(t, 15*time.Second, "every record", func() bool { stored, _, _, _ := n.q.Counts(); return stored == 0 })
	if miss := n.col.missing(120); len(miss) > 0 {
		t.Fatalf("records never arrived: %v", miss)
	}
	t.Logf("reconnected %v after the drop; last error %q", detected, n.s.Stats().LastError)
}

// TestNATResetReconnectsAtOnce: a mapping dropped with RST is noticed at
// once and the session reconnects without the backoff window.
func TestNATResetReconnectsAtOnce(t *testing.T) {
	const ka = 3 * time.Second
	// A backoff window of 10 s: reconnecting within 3 s is (almost
	// surely) not the jittered backoff.
	n := newNATSetup(t, "TCU-NAT3", ka, func(c *uplink.Config) {
		c.BackoffInitial, c.BackoffMax = uplink.Duration(10*time.Second), uplink.Duration(20*time.Second)
	})
	time.Sleep(ka) // a connection that lasted: its loss is the path's
	n.nat.ResetAll()
	reset := time.Now()
	eventually(t, 10*time.Second, "reconnect", func() bool { return n.s.Stats().Reconnects >= 1 && n.s.Connected() })
	// A path loss skips the backoff window; connect itself is
	// milliseconds on loopback.
	if d := time.Since(reset); d > 3*time.Second {
		t.Errorf("reconnected %v after the RST, want at once", d)
	}
	if err := n.cloud.Publish("cmd/tcu/TCU-NAT3/request/unlock", []byte("unlock-3")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the command", func() bool { _, ok := n.commandAt("unlock-3"); return ok })
}

// TestLoweredKeepAliveAppliesAtOnce: a keep-alive lowered on a live
// connection (a profile change) governs dead-link detection at once,
// without waiting for the next connection.
func TestLoweredKeepAliveAppliesAtOnce(t *testing.T) {
	n := newNATSetup(t, "TCU-NAT4", 20*time.Second)
	uplink.SetTestKeepAlive(n.s, 2*time.Second)
	time.Sleep(500 * time.Millisecond)
	n.nat.BlackholeAll()
	drop := time.Now()
	eventually(t, 15*time.Second, "reconnect", func() bool { return n.s.Stats().Reconnects >= 1 })
	// 1.5 × 2 s (+ the reconnect); the connect-time 20 s would take 30 s.
	if d := time.Since(drop); d > 5*time.Second {
		t.Errorf("dead link found and reconnected %v after the drop, want ≈ 1.5 × 2 s", d)
	} else {
		t.Logf("reconnected %v after the drop", d)
	}
}

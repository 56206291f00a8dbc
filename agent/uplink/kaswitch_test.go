package uplink_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest/natproxy"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// connectLog is a mochi hook that allows every client and topic and
// records every CONNECT's client ID and keep-alive.
type connectLog struct {
	mqtt.HookBase
	mu       sync.Mutex
	connects []connectSeen
}

type connectSeen struct {
	id        string
	keepAlive uint16
	clean     bool
}

func (h *connectLog) ID() string { return "connect-log" }

func (h *connectLog) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *connectLog) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *connectLog) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (h *connectLog) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.mu.Lock()
	h.connects = append(h.connects, connectSeen{id: cl.ID, keepAlive: pk.Connect.Keepalive, clean: pk.Connect.Clean})
	h.mu.Unlock()
	return nil
}

func (h *connectLog) all() []connectSeen {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]connectSeen(nil), h.connects...)
}

// startMochi runs a bare mochi broker on loopback with an inline client.
func startMochi(t *testing.T) (*mqtt.Server, *connectLog, string) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	log := &connectLog{}
	if err := srv.AddHook(log, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, log, l.Address()
}

// TestKeepAliveSwitchReconnects: a keep-alive raised far above the live
// connection's (a parked profile) is applied by one clean reconnect at a
// quiet moment: the broker sees the new keep-alive in CONNECT, records
// queued around the change are delivered exactly once, no offline status
// or LWT is published, the command subscription still delivers, and it
// is counted as a keep-alive switch, not a reconnect. A second change
// within 10 min does not reconnect again.
func TestKeepAliveSwitchReconnects(t *testing.T) {
	// Restored after the session stopped (cleanups run last-in first-out).
	t.Cleanup(uplink.SetKeepAliveSwitchQuiet(300 * time.Millisecond))
	srv, seen, addr := startMochi(t)
	var mu sync.Mutex
	got := map[string]int{}
	var statuses []string
	if err := srv.Subscribe("dt/tcu/+/telemetry", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		mu.Lock()
		defer mu.Unlock()
		// Each appendTelemetry record carries its own seq in the envelope.
		for _, part := range bytes.Split(pk.Payload, []byte(`"seq":`))[1:] {
			var seq int
			if _, err := fmt.Sscanf(string(part), "%d", &seq); err == nil {
				got[fmt.Sprint(seq)]++
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Subscribe("dt/tcu/+/status", 2, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		mu.Lock()
		statuses = append(statuses, string(pk.Payload))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	q := uplinktest.NewQueue()
	commands := make(chan string, 10)
	s, err := uplink.New(uplink.Options{Config: fastConfig(addr), Thing: "TCU-KS", Queue: q, Logger: testLogger(t),
		Subscriptions: []string{"cmd/tcu/TCU-KS/request/+"},
		Handler: func(m uplink.Message) {
			commands <- string(m.Payload)
			m.Ack()
		}})
	if err != nil {
		t.Fatal(err)
	}
	uplink.SetTestKeepAlive(s, 4*time.Second)
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	appendTelemetry(t, q, 20, time.Now())
	delivered := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == n }
	}
	eventually(t, 10*time.Second, "20 records", delivered(20))

	uplink.SetTestKeepAlive(s, 20*time.Second) // 5×: reconnect for it
	appendTelemetry(t, q, 20, time.Now())      // queued around the change
	eventually(t, 15*time.Second, "a second CONNECT", func() bool { return len(seen.all()) >= 2 })
	eventually(t, 10*time.Second, "connected again", s.Connected)
	eventually(t, 10*time.Second, "40 records", delivered(40))
	c := seen.all()
	if c[0].keepAlive != 4 || c[1].keepAlive != 20 || c[1].clean {
		t.Fatalf("CONNECTs %+v, want keep-alive 4 s then 20 s, persistent session", c)
	}
	// The subscription survives (persistent session or re-subscribed).
	if err := srv.Publish("cmd/tcu/TCU-KS/request/door", []byte("unlock-1"), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case cmd := <-commands:
		if cmd != "unlock-1" {
			t.Fatalf("command %q", cmd)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no command after the keep-alive switch")
	}
	st := s.Stats()
	if st.KeepAliveSwitches != 1 || st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("stats: %d keep-alive switches, %d reconnects, last error %q; want 1, 0, none", st.KeepAliveSwitches, st.Reconnects, st.LastError)
	}

	// A second change right after: rate-limited, no reconnect.
	uplink.SetTestKeepAlive(s, 4*time.Second)
	time.Sleep(time.Second) // > the quiet time: a switch would have started
	if n := len(seen.all()); n != 2 {
		t.Errorf("%d CONNECTs after a second change within 10 min, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq, n := range got {
		if n != 1 {
			t.Errorf("record %s delivered %d times", seq, n)
		}
	}
	for _, p := range statuses {
		if bytes.Contains([]byte(p), []byte(`"offline"`)) {
			t.Errorf("offline status or LWT published during the switch: %s", p)
		}
	}
}

// TestKeepAliveSwitchWireCost measures, over mutual TLS through the
// byte-counting proxy, what one keep-alive reconnect costs on the wire
// against what one keep-alive PING exchange costs: the numbers behind
// reconnecting for a longer keep-alive (docs/uplink.md).
func TestKeepAliveSwitchWireCost(t *testing.T) {
	// Restored after the session stopped (cleanups run last-in first-out).
	t.Cleanup(uplink.SetKeepAliveSwitchQuiet(300 * time.Millisecond))
	cloud := startCloud(t, devcloud.Limits{})
	id, err := cloud.CA().MintThing("TCU-WC")
	if err != nil {
		t.Fatal(err)
	}
	nat, err := natproxy.New(cloud.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nat.Close() })
	cfg := tlsConfig(t, nat.Addr(), cloud.CA().CertPEM)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-WC", Queue: uplinktest.NewQueue(), Logger: testLogger(t),
		Certificate: certFunc(id), Subscriptions: []string{"cmd/tcu/TCU-WC/request/+"}})
	if err != nil {
		t.Fatal(err)
	}
	const ka = 2 * time.Second
	uplink.SetTestKeepAlive(s, ka)
	runSession(t, s)
	eventually(t, 10*time.Second, "connected and online", func() bool { return s.Connected() && s.Stats().Acked >= 1 })
	wire := func() int64 { st := nat.Stats(); return st.BytesUp + st.BytesDown }
	connectCost := wire() // the first connection: TLS, CONNECT, SUBSCRIBE, online status

	// Idle: only keep-alive pings (paho pings after ka without sending).
	// Count the exchanges: bursts of bytes more than ka/4 apart.
	b0, t0 := wire(), time.Now()
	exchanges, last, lastAt := 0, b0, time.Time{}
	for time.Since(t0) < 4*ka {
		if w := wire(); w != last {
			if time.Since(lastAt) > ka/4 {
				exchanges++
			}
			last, lastAt = w, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	idle := last - b0
	idleFor := time.Since(t0)

	b1 := wire()
	uplink.SetTestKeepAlive(s, 5*ka)
	eventually(t, 15*time.Second, "the keep-alive switch", func() bool {
		st := s.Stats()
		return st.KeepAliveSwitches == 1 && st.Connected && st.Acked >= 2
	})
	switchCost := wire() - b1
	if switchCost <= 0 || idle <= 0 || exchanges == 0 {
		t.Fatalf("switch %d bytes, idle %d bytes in %d exchanges: nothing measured", switchCost, idle, exchanges)
	}
	perPing := float64(idle) / float64(exchanges)
	t.Logf("first connection %d bytes; keep-alive switch (DISCONNECT, TLS, CONNECT, online status) %d bytes; idle %d bytes in %v at keep-alive %v: %d PING exchanges, %.0f bytes each",
		connectCost, switchCost, idle, idleFor.Round(time.Millisecond), ka, exchanges, perPing)
	// 60 s → 1200 s saves 57 PING exchanges an hour.
	t.Logf("60 s → 1200 s: saves ≈ %.0f bytes/hour; the switch pays for itself after ≈ %.1f h", 57*perPing, float64(switchCost)/(57*perPing))
}

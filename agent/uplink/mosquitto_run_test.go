package uplink_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// observer subscribes to filter on a broker with an "observer" identity
// and counts the distinct seqs of the envelopes it receives.
func observe(t testing.TB, cfg uplink.Config, ca *devcloud.CA, filter string) *collector {
	t.Helper()
	id, err := ca.Mint(devcloud.MintRequest{Kind: "observer", CommonName: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := uplink.DialConn(ctx, cfg, id.Certificate, "observer", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	col := &collector{seqs: make(map[uint64]int)}
	var mu sync.Mutex
	err = c.Subscribe(ctx, filter, func(topic string, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		var env struct {
			Records []struct {
				Seq uint64 `json:"seq"`
			} `json:"records"`
		}
		if json.Unmarshal(b, &env) != nil {
			return
		}
		col.mu.Lock()
		col.messages++
		for _, r := range env.Records {
			col.seqs[r.Seq]++
		}
		col.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return col
}

// TestMosquittoTelemetryOverMTLS: the session works against a second,
// real broker: telemetry arrives over mTLS, a broker restart loses
// nothing.
func TestMosquittoTelemetryOverMTLS(t *testing.T) {
	m := startMosquitto(t)
	cfg := tlsConfig(t, m.addr, m.ca.CertPEM)
	cfg.BackoffInitial = uplink.Duration(3 * time.Second) // the observer reconnects first
	cfg.BackoffMax = cfg.BackoffInitial
	col := observe(t, cfg, m.ca, "dt/tcu/+/telemetry")
	id, _ := m.ca.MintThing("TCU-M")
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 500, time.Now())
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-M", Certificate: certFunc(id), Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 20*time.Second, "500 records at the observer", func() bool { n, _ := col.distinct(); return n == 500 })

	// Outage: stop mosquitto, buffer more, start it again.
	m.stop()
	appendTelemetry(t, q, 500, time.Now())
	time.Sleep(time.Second)
	m.start()
	col2 := observe(t, cfg, m.ca, "dt/tcu/+/telemetry")
	eventually(t, 40*time.Second, "queue drained after restart", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
	// Records 1..500 arrived before the outage; 501..1000 must arrive after it.
	eventually(t, 20*time.Second, "records buffered during the outage", func() bool {
		miss := col2.missing(1000)
		return len(miss) == 0 || miss[len(miss)-1] <= 500
	})
}

// TestMosquittoRefusals: a wrong CA bundle and a client certificate from
// another CA are refused with ErrAuth; an expired certificate is refused
// by the broker itself at the TLS layer.
func TestMosquittoRefusals(t *testing.T) {
	m := startMosquitto(t)
	other, _ := devcloud.LoadOrCreateCA("")
	good, _ := m.ca.MintThing("TCU-M")
	foreign, _ := other.MintThing("TCU-M")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		ca   []byte
		cert tls.Certificate
		want string
	}{
		"wrong CA bundle":             {other.CertPEM, good.Certificate, "broker certificate"},
		"certificate from another CA": {m.ca.CertPEM, foreign.Certificate, "client certificate"},
	} {
		_, err := uplink.DialConn(ctx, tlsConfig(t, m.addr, tc.ca), tc.cert, "TCU-M", testLogger(t))
		if !errors.Is(err, uplink.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DialConn error = %v, want ErrAuth mentioning %q", name, err, tc.want)
		}
	}
	expired, _ := m.ca.Mint(devcloud.MintRequest{Kind: devcloud.KindThing, CommonName: "TCU-M",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err := rawTLSRefused(m.addr, m.ca, expired.Certificate); err != nil {
		t.Error(err)
	}
}

// TestMosquittoThingTopics: with the per-thing ACL, a thing's publish to
// another thing's topic is not delivered.
func TestMosquittoThingTopics(t *testing.T) {
	m := startMosquitto(t)
	cfg := tlsConfig(t, m.addr, m.ca.CertPEM)
	col := observe(t, cfg, m.ca, "dt/tcu/+/telemetry")
	id, _ := m.ca.MintThing("TCU-A")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := uplink.DialConn(ctx, cfg, id.Certificate, "TCU-A", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.Publish(ctx, "dt/tcu/TCU-B/telemetry", []byte(`{"v":1,"device":"TCU-B","records":[{"seq":7}]}`))
	if err := c.Publish(ctx, "dt/tcu/TCU-A/telemetry", []byte(`{"v":1,"device":"TCU-A","records":[{"seq":1}]}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "own record", func() bool { n, _ := col.distinct(); return n >= 1 })
	time.Sleep(300 * time.Millisecond)
	if miss := col.missing(1); len(miss) > 0 || col.seqs[7] != 0 {
		t.Errorf("observer saw %v, want only seq 1 (TCU-B's topic is not TCU-A's)", col.seqs)
	}
}

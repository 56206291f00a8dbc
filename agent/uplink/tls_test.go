package uplink_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// tlsConfig returns a config for the mTLS listener at addr trusting the
// CA in caPEM.
func tlsConfig(t testing.TB, addr string, caPEM []byte) uplink.Config {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(addr)
	cfg.Broker, cfg.AllowPlaintext, cfg.CAFile = "tls://"+addr, false, caFile
	return cfg
}

func certFunc(id *devcloud.Identity) func() (*tls.Certificate, error) {
	return func() (*tls.Certificate, error) { return &id.Certificate, nil }
}

// TestTelemetryOverMTLS: a thing certificate from the devcloud CA
// connects over TLS and its telemetry arrives.
func TestTelemetryOverMTLS(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/TCU-TLS/telemetry")
	id, err := cloud.CA().MintThing("TCU-TLS")
	if err != nil {
		t.Fatal(err)
	}
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 100, time.Now())
	s, err := uplink.New(uplink.Options{Config: tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM), Thing: "TCU-TLS",
		Certificate: certFunc(id), Queue: q, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 20*time.Second, "100 records over mTLS", func() bool { n, _ := col.distinct(); return n == 100 })
}

// TestConnectRefusedClearly: a wrong CA, an expired client certificate
// and a certificate from another CA fail with ErrAuth and a message that
// names the cause.
func TestConnectRefusedClearly(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	other, err := devcloud.LoadOrCreateCA("")
	if err != nil {
		t.Fatal(err)
	}
	good, _ := cloud.CA().MintThing("TCU-A")
	expired, _ := cloud.CA().Mint(devcloud.MintRequest{Kind: devcloud.KindThing, CommonName: "TCU-A",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	foreign, _ := other.MintThing("TCU-A")
	tests := []struct {
		name string
		ca   []byte
		id   *devcloud.Identity
		want string
	}{
		{"wrong CA bundle", other.CertPEM, good, "broker certificate"},
		{"expired client certificate", cloud.CA().CertPEM, expired, "expired"},
		{"client certificate from another CA", cloud.CA().CertPEM, foreign, "client certificate"},
	}
	if err := rawTLSRefused(cloud.TLSAddr(), cloud.CA(), expired.Certificate); err != nil {
		t.Error(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsConfig(t, cloud.TLSAddr(), tt.ca)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := uplink.DialConn(ctx, cfg, tt.id.Certificate, "TCU-A", testLogger(t))
			if err == nil {
				c.Close()
				t.Fatal("DialConn succeeded, want refusal")
			}
			if !errors.Is(err, uplink.ErrAuth) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DialConn error = %v, want ErrAuth mentioning %q", err, tt.want)
			}
		})
	}
}

// TestSessionAuthFailureCounted: a session whose certificate is expired
// never connects, counts an auth failure and backs off (one attempt).
func TestSessionAuthFailureCounted(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	expired, _ := cloud.CA().Mint(devcloud.MintRequest{Kind: devcloud.KindThing, CommonName: "TCU-X",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	cfg := tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-X", Certificate: certFunc(expired),
		Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "an auth failure", func() bool { return s.Stats().AuthFailures == 1 })
	time.Sleep(1500 * time.Millisecond)
	if st := s.Stats(); st.AuthFailures != 1 || st.ConnectFailures != 1 || st.Connected {
		t.Errorf("after auth failure: %+v, want exactly one attempt (long backoff)", st)
	}
}

// TestThingCannotUseOtherThingsTopics: publishing to another thing's
// topic gets the connection closed and nothing delivered; subscribing
// to it is refused in the SUBACK.
func TestThingCannotUseOtherThingsTopics(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/TCU-B/telemetry")
	id, _ := cloud.CA().MintThing("TCU-A")
	cfg := tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM)
	cfg.AckTimeout = uplink.Duration(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	c, err := uplink.DialConn(ctx, cfg, id.Certificate, "TCU-A", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Subscribe(ctx, "cmd/tcu/TCU-B/request/+", func(string, []byte) {})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Subscribe to another thing = %v, want refused", err)
	}
	if err := c.Publish(ctx, "dt/tcu/TCU-A/telemetry", []byte(`{"v":1,"device":"TCU-A","records":[]}`)); err != nil {
		t.Errorf("Publish to own topic: %v", err)
	}
	if err := c.Publish(ctx, "dt/tcu/TCU-B/telemetry", []byte(`{"v":1,"device":"TCU-B","records":[{"seq":1}]}`)); err == nil {
		t.Error("Publish to another thing's topic succeeded")
	}
	c.Close()
	if n, _ := col.distinct(); n != 0 {
		t.Errorf("other thing's topic received %d records", n)
	}
	// A thing certificate must use its thing name as client ID.
	if c, err := uplink.DialConn(ctx, cfg, id.Certificate, "TCU-B", testLogger(t)); err == nil {
		c.Close()
		t.Error("connect as TCU-B with TCU-A's certificate succeeded")
	}
}

// rawTLSRefused dials addr with cert, skipping the session's own expiry
// check, and returns nil if the broker refuses the certificate.
func rawTLSRefused(addr string, ca *devcloud.CA, cert tls.Certificate) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil // refused during the handshake (TLS 1.2)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte{0x10, 0x00}) // start of a CONNECT
	if _, err := c.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "remote error") {
		return nil // refused after the handshake (TLS 1.3)
	}
	return fmt.Errorf("broker at %s accepted an expired client certificate", addr)
}

// TestClockBehindIsNotAnAuthFailure: with the wall clock at 1970 (RTC
// reset, no GNSS yet) the broker certificate looks "not yet valid"; that
// is retried with the normal backoff, not treated as a refused identity,
// and the session connects once the clock is right.
func TestClockBehindIsNotAnAuthFailure(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	id, _ := cloud.CA().MintThing("TCU-CLK")
	var mu sync.Mutex
	now := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := uplink.New(uplink.Options{Config: tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM), Thing: "TCU-CLK",
		Certificate: certFunc(id), Queue: uplinktest.NewQueue(), Logger: testLogger(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "a failed attempt", func() bool { return s.Stats().ConnectFailures >= 1 })
	if st := s.Stats(); st.AuthFailures != 0 {
		t.Fatalf("clock behind counted as auth failure: %+v", st)
	}
	mu.Lock()
	now = time.Now()
	mu.Unlock()
	eventually(t, 15*time.Second, "connected once the clock is set", s.Connected)
}

// TestRefusedSubscriptionKeepsTelemetry: a subscription the policy
// refuses is logged and paused; telemetry still flows.
func TestRefusedSubscriptionKeepsTelemetry(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	col := collect(cloud, "dt/tcu/TCU-RS/telemetry")
	id, _ := cloud.CA().MintThing("TCU-RS")
	q := uplinktest.NewQueue()
	appendTelemetry(t, q, 50, time.Now())
	s, err := uplink.New(uplink.Options{Config: tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM), Thing: "TCU-RS",
		Certificate: certFunc(id), Queue: q, Subscriptions: []string{"cmd/tcu/OTHER/request/+"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 15*time.Second, "telemetry despite the refused subscription", func() bool { n, _ := col.distinct(); return n == 50 })
}

package uplink_test

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestRefusalVersusBrokerCertificate: a broker certificate the device
// cannot verify is ErrBrokerCert (a transport failure), a broker that
// verified and then refused our certificate is ErrRefused. Provisioning
// counts only the second towards a hold.
func TestRefusalVersusBrokerCertificate(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	other, err := devcloud.LoadOrCreateCA("")
	if err != nil {
		t.Fatal(err)
	}
	good, _ := cloud.CA().MintThing("TCU-A")
	foreign, _ := other.MintThing("TCU-A")
	tests := []struct {
		name        string
		ca          []byte
		id          *devcloud.Identity
		refused     bool
		unverified  bool
		clientIDFor string
	}{
		{name: "wrong CA bundle", ca: other.CertPEM, id: good, unverified: true},
		{name: "client certificate from another CA", ca: cloud.CA().CertPEM, id: foreign, refused: true},
		{name: "client ID is not the thing", ca: cloud.CA().CertPEM, id: good, refused: true, clientIDFor: "TCU-B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id := "TCU-A"
			if tt.clientIDFor != "" {
				id = tt.clientIDFor
			}
			c, err := uplink.DialConn(ctx, tlsConfig(t, cloud.TLSAddr(), tt.ca), tt.id.Certificate, id, testLogger(t))
			if err == nil {
				_ = c.Close()
				t.Fatal("DialConn succeeded")
			}
			if errors.Is(err, uplink.ErrRefused) != tt.refused || errors.Is(err, uplink.ErrBrokerCert) != tt.unverified {
				t.Errorf("DialConn error = %v: ErrRefused %v (want %v), ErrBrokerCert %v (want %v)", err,
					errors.Is(err, uplink.ErrRefused), tt.refused, errors.Is(err, uplink.ErrBrokerCert), tt.unverified)
			}
		})
	}
}

// TestSessionConnWaitsAndSwitches: a provisioning call made before the
// session connected waits for it (no "not connected" failure), and
// SwitchCertificate moves the session to another certificate with the
// connects of its client ID over a second apart.
func TestSessionConnWaitsAndSwitches(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	first, _ := cloud.CA().MintThing("TCU-S")
	second, _ := cloud.CA().MintThing("TCU-S")
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(&first.Certificate)
	cfg := tlsConfig(t, cloud.TLSAddr(), cloud.CA().CertPEM)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-S", Queue: uplinktest.NewQueue(), Logger: testLogger(t),
		Certificate: func() (*tls.Certificate, error) { return cert.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	pc := s.ProvisioningConn(&cert)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan []byte, 1)
	subscribed := make(chan error, 1)
	go func() { // before the session runs: must wait, not fail
		subscribed <- pc.Subscribe(ctx, "dt/tcu/TCU-S/echo", func(_ string, p []byte) { got <- p })
	}()
	stop := runSession(t, s)
	defer stop()
	if err := <-subscribed; err != nil {
		t.Fatalf("Subscribe before connect: %v", err)
	}
	if err := pc.Publish(ctx, "dt/tcu/TCU-S/echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no message on the subscribed topic")
	}
	if err := pc.SwitchCertificate(ctx, second.Certificate); err != nil {
		t.Fatalf("SwitchCertificate: %v", err)
	}
	if cert.Load().Leaf.SerialNumber.Cmp(second.Certificate.Leaf.SerialNumber) != 0 {
		t.Error("certificate not switched")
	}
	var last time.Time
	for _, e := range cloud.Connects() {
		if e.ClientID == "TCU-S" && !last.IsZero() && e.Time.Sub(last) < time.Second {
			t.Errorf("connects of TCU-S %s apart", e.Time.Sub(last))
		}
		if e.ClientID == "TCU-S" {
			last = e.Time
		}
	}
}

package fleetprov_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

// TestTokenIsSingleUseAndPendingCannotConnect: what AWS documents and
// the device's crash recovery relies on. A certificate is
// PENDING_ACTIVATION and refused by the broker until RegisterThing
// accepts its token; the token then cannot be used again; a CSR's OU
// gives the certificate no standing.
func TestTokenIsSingleUseAndPendingCannotConnect(t *testing.T) {
	t.Parallel()
	ca, caKey, err := provisioningtest.NewCA("strict CA")
	if err != nil {
		t.Fatal(err)
	}
	b := newBroker(ca)
	srv, err := fleetprov.New(fleetprov.Options{Broker: b, Registry: b, CACert: ca, CAKey: caKey,
		Logger: slog.New(slog.DiscardHandler), Templates: map[string]fleetprov.Template{"T": {ThingNameParam: "SerialNumber"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	conn, err := b.Dial(context.Background(), claimPair(t), "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "1", OrganizationalUnit: []string{"thing"}}}, key)
	suffix, acc := exchange(t, conn, "$aws/certificates/create-from-csr/json",
		map[string]string{"certificateSigningRequest": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	if suffix != "/accepted" {
		t.Fatalf("create answered %s %v", suffix, acc)
	}
	blk, _ := pem.Decode([]byte(acc["certificatePem"].(string)))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.Subject.OrganizationalUnit) != 0 {
		t.Errorf("issued certificate carries the requested OU %v", leaf.Subject.OrganizationalUnit)
	}
	pair := tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key, Leaf: leaf}
	if c, err := b.Dial(context.Background(), pair, "1"); !errors.Is(err, provisioning.ErrUnauthorized) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("PENDING certificate connected (err %v)", err)
	}
	if n := srv.Count(fleetprov.StatusPending, ""); n != 1 {
		t.Errorf("%d PENDING certificates, want 1", n)
	}
	reg := "$aws/provisioning-templates/T/provision/json"
	req := map[string]any{"certificateOwnershipToken": acc["certificateOwnershipToken"], "parameters": map[string]string{"SerialNumber": "1"}}
	if suffix, got := exchange(t, conn, reg, req); suffix != "/accepted" {
		t.Fatalf("RegisterThing answered %s %v", suffix, got)
	}
	suffix, rej := exchange(t, conn, reg, req)
	if suffix != "/rejected" || rej["errorCode"] != "InvalidCertificateOwnershipToken" || rej["statusCode"] != float64(400) {
		t.Errorf("reused token answered %s %v, want 400 InvalidCertificateOwnershipToken", suffix, rej)
	}
	c, err := b.Dial(context.Background(), pair, "1")
	if err != nil {
		t.Fatalf("ACTIVE certificate refused: %v", err)
	}
	_ = c.Close()
	if n := srv.Count(fleetprov.StatusActive, "1"); n != 1 {
		t.Errorf("%d ACTIVE certificates, want 1", n)
	}
}

// TestLostRegisterAnswerLeavesOneActive: RegisterThing is carried out but
// its answer is lost with the session (the field's crash window). The
// device must not mint a second certificate: it connects with the
// registered one as its thing and commits it.
func TestLostRegisterAnswerLeavesOneActive(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, 0)
			c.cfg.KeyMode, c.cfg.ThingName = mode, "tcu-SN0042"
			c.cfg.StepTimeout = provisioning.Duration(time.Second)
			c.srv.SetFaults(fleetprov.Faults{LoseAnswerAt: fleetprov.StepRegister, LoseCount: 1})
			id, err := c.provisioner(t).Ensure(context.Background())
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if got := c.srv.Issued(); got != 1 {
				t.Errorf("issued %d certificates, want 1", got)
			}
			if n := c.srv.Count(fleetprov.StatusActive, id.Thing); n != 1 {
				t.Errorf("%d ACTIVE certificates for %s, want 1", n, id.Thing)
			}
		})
	}
}

// TestLostRegisterAnswerWrongExpectedThing: the device expects the wrong
// thing name, so it cannot confirm the interrupted registration; the
// single-use token is refused, it mints again and queues the first
// certificate for a retire event, which the backend rule applies once
// the device publishes it: exactly one ACTIVE certificate in the end.
func TestLostRegisterAnswerWrongExpectedThing(t *testing.T) {
	t.Parallel()
	c := newCloud(t, 0)
	c.cfg.StepTimeout = provisioning.Duration(time.Second) // expected thing = serial "SN0042", actual "tcu-SN0042"
	c.srv.SetFaults(fleetprov.Faults{LoseAnswerAt: fleetprov.StepRegister, LoseCount: 1})
	p := c.provisioner(t)
	id, err := p.Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if n := c.srv.Count(fleetprov.StatusActive, id.Thing); n != 2 || p.PendingEvents() != 1 {
		t.Fatalf("%d ACTIVE, %d pending events: want 2 and 1 before the event", n, p.PendingEvents())
	}
	conn, err := c.broker.Dial(context.Background(), id.Certificate, id.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if err := p.FlushEvents(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if n := c.srv.Count(fleetprov.StatusActive, id.Thing); n != 1 || p.PendingEvents() != 0 {
		t.Errorf("%d ACTIVE, %d pending events after the event, want 1 and 0", n, p.PendingEvents())
	}
}

// switching is a session that moves to a new certificate like the
// agent's: close, keep the 1 s connect spacing, reconnect.
type switching struct {
	provisioning.Conn
	b     *memBroker
	thing string
	last  time.Time
}

func (s *switching) SwitchCertificate(ctx context.Context, cert tls.Certificate) error {
	_ = s.Close()
	if d := 1100*time.Millisecond - time.Since(s.last); d > 0 {
		time.Sleep(d)
	}
	s.last = time.Now()
	c, err := s.b.Dial(ctx, cert, s.thing)
	if err != nil {
		return err
	}
	s.Conn = c
	return nil
}

// TestRenewalOverOneSession: renewal over the device's own session under
// a broker with one connection per client ID: no session is kicked, no
// connect-rate violation, and the certificate event leaves exactly one
// ACTIVE certificate (the new one; the broker refuses the old).
func TestRenewalOverOneSession(t *testing.T) {
	t.Parallel()
	c := newCloud(t, 20*24*time.Hour)
	p := c.provisioner(t)
	old, err := p.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.broker.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	sw := &switching{Conn: conn, b: c.broker, thing: old.Thing, last: time.Now()}
	defer func() { _ = sw.Close() }()
	id, err := p.Renew(context.Background(), sw)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if rate, kicked := c.broker.violations(); rate != 0 || kicked != 0 {
		t.Errorf("connect-rate violations %d, kicked sessions %d, want 0 and 0", rate, kicked)
	}
	if n := c.srv.Count(fleetprov.StatusActive, id.Thing); n != 1 || p.PendingEvents() != 0 {
		t.Errorf("%d ACTIVE certificates, %d events pending after renewal; want 1 and 0", n, p.PendingEvents())
	}
	if oc, err := c.broker.Dial(context.Background(), old.Certificate, old.Thing); err == nil {
		_ = oc.Close()
		t.Error("the old certificate still connects after the certificate event")
	}
}

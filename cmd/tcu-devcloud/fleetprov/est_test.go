package fleetprov_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

type estEnv struct {
	srv    *fleetprov.Server
	broker *memBroker
	https  *httptest.Server
	cfg    provisioning.Config
	state  string
	dir    string
	ca     *x509.Certificate
	caKey  crypto.Signer
}

func newESTEnv(t testing.TB) *estEnv {
	t.Helper()
	ca, caKey, err := provisioningtest.NewCA("devcloud EST CA")
	if err != nil {
		t.Fatal(err)
	}
	b := newBroker(ca)
	srv, err := fleetprov.New(fleetprov.Options{Broker: b, Registry: b, CACert: ca, CAKey: caKey,
		Validity: 20 * 24 * time.Hour, ESTUsers: map[string]string{"installer": "s3cret"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.ESTHandler())
	hs.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "est-server-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := provisioning.DefaultConfig()
	cfg.Method, cfg.ESTURL, cfg.ESTCAFile = provisioning.MethodEST, hs.URL+"/.well-known/est", caFile
	cfg.SerialNumber = "tcu-EST0001"
	cfg.RetryMin, cfg.RetryMax = provisioning.Duration(5*time.Millisecond), provisioning.Duration(20*time.Millisecond)
	return &estEnv{srv: srv, broker: b, https: hs, cfg: cfg, state: filepath.Join(dir, "state"), dir: dir, ca: ca, caKey: caKey}
}

func (e *estEnv) provisioner(t testing.TB) *provisioning.Provisioner {
	t.Helper()
	p, err := provisioning.New(provisioning.Options{Config: e.cfg, StateDir: e.state, Dial: e.broker.Dial})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// useBasicAuth configures the installer credential.
func (e *estEnv) useBasicAuth(t testing.TB) {
	t.Helper()
	pw := filepath.Join(e.dir, "est-password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.ESTUsername, e.cfg.ESTPasswordFile = "installer", pw
}

// useClaim writes a claim certificate signed by the EST CA.
func (e *estEnv) useClaim(t *testing.T) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "claim-est"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, e.ca, key.Public(), e.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.ClaimCert, e.cfg.ClaimKey = filepath.Join(e.dir, "claim-est.pem"), filepath.Join(e.dir, "claim-est.key")
	if err := os.WriteFile(e.cfg.ClaimCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfg.ClaimKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestESTEnrollWithPendingRound(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	e.useBasicAuth(t)
	e.srv.SetESTPending(1, time.Second)
	start := time.Now()
	id, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("enrolled after %v: Retry-After 1s not honoured", waited)
	}
	if id.Thing != "tcu-EST0001" || id.Source != provisioning.MethodEST {
		t.Errorf("identity %q from %q", id.Thing, id.Source)
	}
	if err := id.Certificate.Leaf.CheckSignatureFrom(e.ca); err != nil {
		t.Errorf("not issued by the EST CA: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(e.state, "identity", "est-ca.pem"))
	if blk, _ := pem.Decode(b); err != nil || blk == nil {
		t.Errorf("est-ca.pem not stored: %v", err)
	}
}

func TestESTReenroll(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	e.useBasicAuth(t)
	p := e.provisioner(t)
	old, err := p.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !p.NeedsRenewal(old) {
		t.Fatal("20-day certificate does not need renewal with renew_before 720h")
	}
	e.srv.SetESTPending(1, time.Second)
	id, err := p.Renew(context.Background(), nil)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if id.Certificate.Leaf.SerialNumber.Cmp(old.Certificate.Leaf.SerialNumber) == 0 {
		t.Error("re-enrollment returned the old certificate")
	}
	if got := e.srv.Issued(); got != 2 {
		t.Errorf("issued %d, want 2", got)
	}
}

func TestESTClaimCertificateBootstrap(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	e.useClaim(t)
	id, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure with a trusted claim certificate: %v", err)
	}
	if id.Thing != "tcu-EST0001" {
		t.Errorf("thing %q", id.Thing)
	}
}

func TestESTUntrustedClaimRefused(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	// A claim issued by a different CA than the one fleetprov trusts is
	// refused; one the server trusts (its own CA) is accepted.
	cert, key, err := provisioningtest.WriteClaim(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.ClaimCert, e.cfg.ClaimKey = cert, key
	e.cfg.MaxRejections = 1
	_, err = e.provisioner(t).Ensure(context.Background())
	var rej *provisioning.RejectedError
	if !errors.As(err, &rej) || rej.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Ensure with an untrusted claim = %v, want 401 rejection", err)
	}
}

func TestESTRequiresAuthentication(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	e.cfg.MaxRejections = 2
	_, err := e.provisioner(t).Ensure(context.Background())
	var rej *provisioning.RejectedError
	if !errors.Is(err, provisioning.ErrRejected) || !errors.As(err, &rej) || rej.StatusCode != 401 {
		t.Fatalf("Ensure = %v, want a 401 rejection", err)
	}
	if got := e.srv.Issued(); got != 0 {
		t.Errorf("issued %d without authentication", got)
	}
}

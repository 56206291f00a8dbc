package provisioning_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

// provisionNearExpiry provisions with certificates valid 10 days, inside
// the 720h renewal window.
func provisionNearExpiry(t *testing.T) (*env, *provisioning.Provisioner, *provisioning.Identity) {
	t.Helper()
	e := newEnv(t)
	fake, err := provisioningtest.New(provisioningtest.Options{ThingPrefix: "tcu-", Validity: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.fake = fake
	p := e.provisioner(t)
	id, err := p.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e, p, id
}

func TestNeedsRenewal(t *testing.T) {
	t.Parallel()
	e, p, id := provisionNearExpiry(t)
	if !p.NeedsRenewal(id) {
		t.Errorf("NeedsRenewal(expires %s) = false with renew_before 720h", id.NotAfter)
	}
	far := *id
	far.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	if p.NeedsRenewal(&far) {
		t.Error("NeedsRenewal(one year left) = true")
	}
	e.cfg.RenewBefore = 0
	if e.provisioner(t).NeedsRenewal(id) {
		t.Error("NeedsRenewal with renewal disabled = true")
	}
}

func TestRenewReplacesCertificate(t *testing.T) {
	t.Parallel()
	e, p, old := provisionNearExpiry(t)
	conn, err := e.fake.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id, err := p.Renew(context.Background(), conn)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if id.Thing != old.Thing || id.CertFile == old.CertFile || id.KeyFile == old.KeyFile {
		t.Errorf("renewed identity %+v, old %+v", id, old)
	}
	if id.Certificate.Leaf.SerialNumber.Cmp(old.Certificate.Leaf.SerialNumber) == 0 {
		t.Error("serial unchanged")
	}
	for _, f := range []string{old.CertFile, old.KeyFile} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("retired %s still on disk (%v)", filepath.Base(f), err)
		}
	}
	loaded, err := provisioning.Load(e.stateDir)
	if err != nil || loaded.CertFile != id.CertFile {
		t.Fatalf("Load after renew = %+v, %v", loaded, err)
	}
	if fi, err := os.Stat(id.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key mode %v, %v", fi.Mode(), err)
	}
	if got := e.fake.Dials(); got[len(got)-1] != old.Thing {
		t.Errorf("test connect client ID %q, want the thing name", got[len(got)-1])
	}
}

func TestRenewRollsBackBrokenCertificate(t *testing.T) {
	t.Parallel()
	e, p, old := provisionNearExpiry(t)
	conn, err := e.fake.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	oldSerial := old.Certificate.Leaf.SerialNumber
	e.fake.Set(provisioningtest.Knobs{RefuseCert: func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(oldSerial) != 0 }})
	if _, err := p.Renew(context.Background(), conn); !errors.Is(err, provisioning.ErrRolledBack) {
		t.Fatalf("Renew = %v, want ErrRolledBack", err)
	}
	loaded, err := provisioning.Load(e.stateDir)
	if err != nil || loaded.CertFile != old.CertFile || loaded.Certificate.Leaf.SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatalf("Load after rollback = %+v, %v: want the old identity", loaded, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(old.CertFile))
	if len(ents) != 4 {
		t.Errorf("identity dir has %d entries after rollback, want 4 (no new files left)", len(ents))
	}
}

func TestRenewStaticIsRefused(t *testing.T) {
	t.Parallel()
	e, _, id := provisionNearExpiry(t)
	cfg := e.cfg
	cfg.Method, cfg.CertFile, cfg.KeyFile = provisioning.MethodStatic, id.CertFile, id.KeyFile
	p, err := provisioning.New(provisioning.Options{Config: cfg, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Ensure(context.Background())
	if err != nil || got.Thing != "SN0042" || got.Source != provisioning.MethodStatic {
		t.Fatalf("static Ensure = %+v, %v", got, err)
	}
	if p.NeedsRenewal(got) {
		t.Error("static identity needs renewal")
	}
	if _, err := p.Renew(context.Background(), nil); err == nil {
		t.Error("Renew of a static identity succeeded")
	}
}

// TestLogsCarryNoSecrets greps everything logged at debug level during
// provisioning and renewal for key material and ownership tokens.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.cfg.KeyMode = mode
			e.cfg.StepTimeout = provisioning.Duration(300 * time.Millisecond)
			e.fake.Set(provisioningtest.Knobs{Drop: provisioningtest.StepRegister, DropCount: 1}) // log a failure too
			p := e.provisioner(t)
			id, err := p.Ensure(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			secret := secrets(t, []string{id.KeyFile, e.cfg.ClaimKey})
			conn, err := e.fake.Dial(context.Background(), id.Certificate, id.Thing)
			if err != nil {
				t.Fatal(err)
			}
			renewed, err := p.Renew(context.Background(), conn)
			conn.Close()
			if err != nil {
				t.Fatal(err)
			}
			secret = append(secret, secrets(t, []string{renewed.KeyFile})...)
			logs := e.logs.String()
			if !strings.Contains(logs, "provisioned") {
				t.Fatalf("logs were not captured: %q", logs)
			}
			for _, s := range secret {
				if strings.Contains(logs, s) {
					t.Errorf("log output contains secret material %q...", s[:8])
				}
			}
			for _, marker := range []string{"PRIVATE KEY", "ownership_token", "certificateOwnershipToken"} {
				if strings.Contains(logs, marker) {
					t.Errorf("log output contains %q", marker)
				}
			}
		})
	}
}

// secrets returns 16-character slices of every base64 line of the key
// files: any of them appearing in a log means key material leaked.
func secrets(t *testing.T, keyFiles []string) []string {
	t.Helper()
	var out []string
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", f)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "-----") {
				continue
			}
			for i := 0; i+16 <= len(line); i += 16 {
				out = append(out, line[i:i+16])
			}
		}
	}
	return out
}

// TestRenewLoopIsBounded: a renewal whose certificate never connects is
// rolled back each time and stops minting at max_certificates.
func TestRenewLoopIsBounded(t *testing.T) {
	t.Parallel()
	e, p, old := provisionNearExpiry(t)
	conn, err := e.fake.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	oldSerial := old.Certificate.Leaf.SerialNumber
	e.fake.Set(provisioningtest.Knobs{RefuseCert: func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(oldSerial) != 0 }})
	var last error
	for range e.cfg.MaxCertificates + 2 {
		_, last = p.Renew(context.Background(), conn)
	}
	if !errors.Is(last, provisioning.ErrTooManyCertificates) {
		t.Errorf("last Renew = %v, want ErrTooManyCertificates", last)
	}
	if got := e.fake.Minted(); got != e.cfg.MaxCertificates {
		t.Errorf("minted %d, want %d (first boot + renewals within the window)", got, e.cfg.MaxCertificates)
	}
}

// TestFailedRenewalsAreNotCounted: renewals whose create request got no
// certificate (the service never answered) minted nothing and must not
// count against max_certificates; the next good renewal succeeds.
func TestFailedRenewalsAreNotCounted(t *testing.T) {
	t.Parallel()
	e, _, old := provisionNearExpiry(t)
	e.cfg.StepTimeout = provisioning.Duration(20 * time.Millisecond)
	p := e.provisioner(t)
	conn, err := e.fake.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	e.fake.Set(provisioningtest.Knobs{Timeout: true})
	for i := range e.cfg.MaxCertificates + 2 {
		_, err := p.Renew(context.Background(), conn)
		var hold *provisioning.HoldError
		if !errors.Is(err, provisioning.ErrTimeout) || errors.As(err, &hold) {
			t.Fatalf("renewal %d = %v, want a step timeout (not counted)", i, err)
		}
	}
	e.fake.Set(provisioningtest.Knobs{})
	if _, err := p.Renew(context.Background(), conn); err != nil {
		t.Fatalf("Renew after failures that minted nothing: %v", err)
	}
}

// TestRenewOverOneSession: renewal over a session that switches its own
// certificate, against the strict fake (one connection per client ID,
// CONNECTs < 1 s apart recorded): no session kicked, no connect-rate
// violation, and the certificate event leaves one ACTIVE certificate.
func TestRenewOverOneSession(t *testing.T) {
	t.Parallel()
	e, p, old := provisionNearExpiry(t)
	ctx := context.Background()
	conn, err := dialSwitching(ctx, e.fake, old)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	id, err := p.Renew(ctx, conn)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if v := e.fake.ConnectRateViolations(); len(v) != 0 || e.fake.Kicked() != 0 {
		t.Errorf("connect-rate violations %v, kicked %d: want none", v, e.fake.Kicked())
	}
	if n, err := e.fake.Count(provisioningtest.StatusActive, id.Thing); err != nil || n != 1 {
		t.Errorf("%d ACTIVE certificates (%v), want 1", n, err)
	}
	if n, _ := e.fake.Count(provisioningtest.StatusInactive, id.Thing); n != 1 || p.PendingEvents() != 0 {
		t.Errorf("%d INACTIVE, %d events pending: want the old certificate retired", n, p.PendingEvents())
	}
	if v := e.fake.Violations(); len(v) != 0 {
		t.Errorf("protocol violations: %v", v)
	}
}

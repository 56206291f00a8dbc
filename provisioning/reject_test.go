package provisioning_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

func TestRejections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		template   string
		knobs      provisioningtest.Knobs
		wantOp     string
		wantStatus int
		wantCode   string
		maxMinted  int
	}{
		{
			name: "invalid template", template: "NoSuchTemplate",
			wantOp: "register", wantStatus: 404, wantCode: "ResourceNotFound",
			maxMinted: 1, // the ownership token is reused on every retry
		},
		{
			name:   "bad ownership token",
			knobs:  provisioningtest.Knobs{RejectRegister: &provisioningtest.Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "Certificate ownership token cannot be empty."}},
			wantOp: "register", wantStatus: 400, wantCode: "InvalidCertificateOwnershipToken",
			maxMinted: 3, // a refused token forces a new certificate, bounded by MaxRejections
		},
		{
			name:   "revoked claim",
			knobs:  provisioningtest.Knobs{RevokedClaim: true},
			wantOp: "connect", wantStatus: 403, wantCode: "NotAuthorized",
		},
		{
			name:   "create refused",
			knobs:  provisioningtest.Knobs{RejectCreate: &provisioningtest.Rejection{StatusCode: 403, ErrorCode: "AccessDenied", ErrorMessage: "no"}},
			wantOp: "create-from-csr", wantStatus: 403, wantCode: "AccessDenied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tt.template != "" {
				e.cfg.Template = tt.template
			}
			e.fake.Set(tt.knobs)
			_, err := e.provisioner(t).Ensure(context.Background())
			var rej *provisioning.RejectedError
			if !errors.Is(err, provisioning.ErrRejected) || !errors.As(err, &rej) {
				t.Fatalf("Ensure = %v, want a RejectedError", err)
			}
			if rej.Op != tt.wantOp || rej.StatusCode != tt.wantStatus || rej.ErrorCode != tt.wantCode {
				t.Errorf("rejection = %+v, want %s %d %s", rej, tt.wantOp, tt.wantStatus, tt.wantCode)
			}
			if got := e.fake.Minted(); got > tt.maxMinted {
				t.Errorf("minted %d, want at most %d", got, tt.maxMinted)
			}
			checkBoundedAndHeld(t, e)
		})
	}
}

// checkBoundedAndHeld asserts the attempts stopped at MaxRejections and a
// restart (new Provisioner) during the hold does not dial again.
func checkBoundedAndHeld(t *testing.T, e *env) {
	t.Helper()
	dials := len(e.fake.Dials())
	if dials != e.cfg.MaxRejections {
		t.Errorf("%d attempts, want %d (bounded)", dials, e.cfg.MaxRejections)
	}
	if _, err := e.provisioner(t).Ensure(context.Background()); !errors.Is(err, provisioning.ErrRejected) {
		t.Errorf("Ensure during hold = %v, want ErrRejected", err)
	}
	if got := len(e.fake.Dials()); got != dials {
		t.Errorf("Ensure during hold dialled %d more times", got-dials)
	}
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRejectHoldExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(provisioningtest.Knobs{RevokedClaim: true})
	clk := &clock{now: time.Now()}
	newP := func() *provisioning.Provisioner {
		p, err := provisioning.New(provisioning.Options{Config: e.cfg, StateDir: e.stateDir, Dial: e.fake.Dial, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := newP().Ensure(context.Background()); !errors.Is(err, provisioning.ErrRejected) {
		t.Fatalf("Ensure = %v, want ErrRejected", err)
	}
	e.fake.Set(provisioningtest.Knobs{}) // the fleet operator re-enabled the claim
	clk.Add(time.Duration(e.cfg.RejectHold) + time.Second)
	if _, err := newP().Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure after hold = %v, want success", err)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.StepTimeout = provisioning.Duration(50 * time.Millisecond)
	e.fake.Set(provisioningtest.Knobs{Timeout: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // claim connects are paced 1.1 s apart
	defer cancel()
	_, err := e.provisioner(t).Ensure(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, provisioning.ErrTimeout) || errors.Is(err, provisioning.ErrRejected) {
		t.Fatalf("Ensure = %v, want the caller's deadline after step timeouts", err)
	}
	if got := e.fake.Minted(); got != 0 {
		t.Errorf("minted %d", got)
	}
	if n := len(e.fake.Dials()); n < 2 {
		t.Errorf("%d attempts, want retries", n)
	}
	if creates := e.fake.Minted(); creates > e.cfg.MaxCertificates {
		t.Errorf("loop breaker not applied")
	}
}

// TestExpiredTokenIsNotReused: a token persisted more than 55 minutes ago
// (AWS expires it after an hour) is dropped and a new certificate is
// requested, keeping the device key.
func TestExpiredTokenIsNotReused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.StepTimeout = provisioning.Duration(time.Second)
	clk := &clock{now: time.Now()}
	newP := func() *provisioning.Provisioner {
		p, err := provisioning.New(provisioning.Options{Config: e.cfg, StateDir: e.stateDir, Dial: e.fake.Dial, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.fake.Set(provisioningtest.Knobs{Drop: provisioningtest.StepRegister})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	if _, err := newP().Ensure(ctx); err == nil {
		t.Fatal("Ensure succeeded while RegisterThing was dropped")
	}
	if got := e.fake.Minted(); got != 1 {
		t.Fatalf("minted %d before the token expired, want 1", got)
	}
	e.fake.Set(provisioningtest.Knobs{})
	clk.Add(56 * time.Minute)
	if _, err := newP().Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure after expiry: %v", err)
	}
	if got := e.fake.Minted(); got != 2 {
		t.Errorf("minted %d, want 2 (a fresh certificate for the expired token)", got)
	}
}

// TestHoldAndNoClaimArePrompt: the errors the agent waits on come back at
// once (no sleeping inside Ensure): ErrNoClaim for a missing claim, and a
// *HoldError with its end for a hold; ResetHold lifts the hold.
func TestHoldAndNoClaimArePrompt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.RetryMin, e.cfg.RetryMax = provisioning.Duration(time.Minute), provisioning.Duration(time.Hour)
	missing := e.cfg
	missing.ClaimCert = e.cfg.ClaimCert + ".absent"
	p, err := provisioning.New(provisioning.Options{Config: missing, StateDir: e.stateDir, Dial: e.fake.Dial})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Ensure(ctx); !errors.Is(err, provisioning.ErrNoClaim) || ctx.Err() != nil {
		t.Fatalf("Ensure without claim = %v, want ErrNoClaim at once", err)
	}
	e.cfg.MaxRejections = 1 // one refusal holds: no retry sleep before it
	e.fake.Set(provisioningtest.Knobs{RevokedClaim: true})
	_, err = e.provisioner(t).Ensure(ctx)
	var hold *provisioning.HoldError
	if !errors.As(err, &hold) || !errors.Is(err, provisioning.ErrRejected) || ctx.Err() != nil {
		t.Fatalf("Ensure with a revoked claim = %v, want a HoldError at once", err)
	}
	if d := time.Until(hold.Until); d < time.Duration(e.cfg.RejectHold)-time.Minute || hold.Rejections != 1 {
		t.Errorf("hold until %s (%d rejections), want ~%s from now", hold.Until, hold.Rejections, time.Duration(e.cfg.RejectHold))
	}
	e.fake.Set(provisioningtest.Knobs{})
	p = e.provisioner(t)
	if _, err := p.Ensure(ctx); !errors.As(err, &hold) {
		t.Fatalf("Ensure during the hold = %v, want the HoldError", err)
	}
	if err := p.ResetHold(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Ensure(ctx); err != nil {
		t.Fatalf("Ensure after ResetHold = %v", err)
	}
}

// TestStaleTLSHoldIsLifted: a hold persisted by an older version because
// the broker's certificate did not verify (no refusal by the service) is
// lifted at once.
func TestStaleTLSHoldIsLifted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.stateDir, "identity")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := `{"version":1,"step":"","method":"fleet","rejections":3,"hold_until":"` + time.Now().Add(5*time.Hour).UTC().Format(time.RFC3339) + `",
	  "last_rejected":{"op":"connect","statusCode":403,"errorCode":"NotAuthorized","errorMessage":"not authorized: dial conn tls://x: authentication failed: broker certificate: tls: failed to verify certificate"}}`
	if err := os.WriteFile(filepath.Join(dir, "provisioning.json"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.provisioner(t).Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure under a stale TLS hold = %v, want an identity", err)
	}
}

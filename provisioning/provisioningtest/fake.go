// Package provisioningtest provides an in-memory AWS IoT fleet
// provisioning responder for tests. Fake implements provisioning.Conn
// sessions through its Dial method and answers CreateCertificateFromCsr,
// CreateKeysAndCertificate and RegisterThing on the exact $aws/... topics
// with AWS's JSON payloads. It is as strict as AWS documents: ownership
// tokens are single-use and expire after an hour, certificates are
// PENDING_ACTIVATION until RegisterThing accepts them and cannot connect
// before, an ACTIVE certificate connects only with its thing name as
// client ID, a second connection with one client ID disconnects the
// first, and connects of one client ID less than a second apart are
// recorded as violations. It also acts as the backend rule for
// certificate events (.../certificate/rotated): the publishing
// certificate must be new_certificate_id, and old_certificate_id of the
// same thing becomes INACTIVE. Knobs inject rejections, delays, dropped
// sessions, silence and a revoked claim certificate.
package provisioningtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning"
)

// Step names for Knobs.Drop.
const (
	StepCreate   = "create"
	StepRegister = "register"
)

// Rejection is what a .../rejected answer carries.
type Rejection struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// Knobs are the fault switches. The zero value is a well-behaved service.
type Knobs struct {
	RejectCreate   *Rejection    // answer create calls with this
	RejectRegister *Rejection    // answer RegisterThing with this
	Delay          time.Duration // hold every answer back
	// Drop is a step at which the session is cut without an answer;
	// DropCount bounds how many times (0 = always).
	Drop      string
	DropCount int
	Timeout   bool // never answer anything
	// RevokedClaim refuses sessions authenticated by a certificate the
	// fake did not issue (the claim) with provisioning.ErrUnauthorized.
	RevokedClaim bool
	// RefuseCert refuses sessions whose certificate it returns true for.
	RefuseCert func(*x509.Certificate) bool
}

// Options configure a Fake. Zero values are filled in by New.
type Options struct {
	Templates   []string // accepted template names; default {"TelematicsFleetV1"}
	ThingPrefix string   // thing name = prefix + SerialNumber parameter
	// CA and CAKey sign issued certificates; nil means a fresh CA.
	CA    *x509.Certificate
	CAKey crypto.Signer
	// TokenKey authenticates ownership tokens. Two Fakes with the same
	// CA, TokenKey and RegistryFile (e.g. in successive processes of a
	// kill test) are one service.
	TokenKey []byte
	// RegistryFile, if set, keeps the certificate registry (states,
	// hence used tokens) in a file; otherwise it lives in memory.
	RegistryFile string
	Validity     time.Duration        // of issued certificates; default 1 year
	OnMint       func(certDER []byte) // called for every issued certificate
	Now          func() time.Time     // clock; default time.Now
}

// Fake is the responder. Use its Dial method as a provisioning.Dialer.
type Fake struct {
	opts Options

	mu         sync.Mutex
	knobs      Knobs           // guarded by mu
	dropped    int             // guarded by mu
	minted     int             // guarded by mu
	things     []string        // guarded by mu
	dials      []string        // guarded by mu
	violations []string        // guarded by mu
	issued     map[string]bool // guarded by mu; serials this Fake issued

	reg            map[string]*Certificate // guarded by mu; without RegistryFile
	live           map[string]*conn        // guarded by mu; by client ID
	lastConnect    map[string]time.Time    // guarded by mu
	rateViolations []string                // guarded by mu
	kicked         int                     // guarded by mu
}

// New returns a Fake.
func New(opts Options) (*Fake, error) {
	if len(opts.Templates) == 0 {
		opts.Templates = []string{"TelematicsFleetV1"}
	}
	if opts.CA == nil {
		ca, key, err := NewCA("provisioningtest CA")
		if err != nil {
			return nil, err
		}
		opts.CA, opts.CAKey = ca, key
	}
	if opts.TokenKey == nil {
		opts.TokenKey = make([]byte, 32)
		_, _ = rand.Read(opts.TokenKey)
	}
	if opts.Validity <= 0 {
		opts.Validity = 365 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Fake{opts: opts, issued: make(map[string]bool), reg: map[string]*Certificate{},
		live: map[string]*conn{}, lastConnect: map[string]time.Time{}}, nil
}

// Set replaces the knobs and resets the drop counter.
func (f *Fake) Set(k Knobs) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.knobs, f.dropped = k, 0
}

func (f *Fake) knobsNow() Knobs {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.knobs
}

// CA returns the CA that signs issued certificates.
func (f *Fake) CA() *x509.Certificate { return f.opts.CA }

// Minted reports how many certificates this Fake issued.
func (f *Fake) Minted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.minted
}

// Things returns the thing names registered so far, in order.
func (f *Fake) Things() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.things...)
}

// Dials returns the client IDs of all sessions opened so far.
func (f *Fake) Dials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dials...)
}

// Violations lists protocol misuse seen, e.g. publishing a request before
// subscribing to its /accepted and /rejected topics.
func (f *Fake) Violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}

func (f *Fake) violation(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.violations = append(f.violations, fmt.Sprintf(format, args...))
}

// Dial opens an in-memory session; it satisfies provisioning.Dialer.
func (f *Fake) Dial(ctx context.Context, cert tls.Certificate, clientID string) (provisioning.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("provisioningtest: dial without a certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("provisioningtest: parse certificate: %w", err)
	}
	k := f.knobsNow()
	f.mu.Lock()
	f.dials = append(f.dials, clientID)
	f.mu.Unlock()
	issued := leaf.CheckSignatureFrom(f.opts.CA) == nil
	if !issued && k.RevokedClaim {
		return nil, fmt.Errorf("provisioningtest: claim certificate revoked: %w", provisioning.ErrUnauthorized)
	}
	if k.RefuseCert != nil && k.RefuseCert(leaf) {
		return nil, fmt.Errorf("provisioningtest: certificate refused: %w", provisioning.ErrUnauthorized)
	}
	id := certID(leaf.Raw)
	if issued {
		var refusal error
		if err := f.update(func(reg map[string]*Certificate) bool {
			switch c := reg[id]; {
			case c == nil:
				refusal = errors.New("unknown certificate")
			case c.Status != StatusActive:
				refusal = fmt.Errorf("certificate is %s", c.Status)
			case c.Thing != clientID:
				refusal = fmt.Errorf("client ID %q is not the thing name %q", clientID, c.Thing)
			}
			return false
		}); err != nil {
			return nil, err
		}
		if refusal != nil {
			return nil, fmt.Errorf("provisioningtest: connect refused: %w: %w", refusal, provisioning.ErrUnauthorized)
		}
	}
	c := newConn(f, clientID, id)
	if prev := f.connected(c); prev != nil {
		prev.drop() // duplicate client ID: the broker disconnects the older session
	}
	return c, nil
}

// NewCA creates a self-signed ECDSA P-256 CA for tests.
func NewCA(cn string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA: %w", err)
	}
	return ca, key, nil
}

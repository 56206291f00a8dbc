// Package provisioning gives the agent its device identity: a certificate,
// its private key and the AWS IoT thing name.
//
// On first boot it trades a shared claim certificate for a unique identity
// through AWS IoT fleet provisioning (CreateCertificateFromCsr with a P-256
// key generated on the device, or CreateKeysAndCertificate, then
// RegisterThing), or enrolls with an EST (RFC 7030) server. Every step is
// recorded in a versioned state file, so a power cut at any point resumes
// on the next boot without a half-written identity and without minting
// certificates in a loop. Identity files are written atomically
// (temp file, fsync, rename, directory fsync) with mode 0600 in a 0700
// directory. Renew replaces a certificate before it expires and keeps the
// old one unless a test connection with the new one succeeds.
//
// The package declares the MQTT connection it consumes (Conn, Dialer) and
// never imports the agent, drivers, buffer or an MQTT client.
// See docs/provisioning.md for the flow and the files on disk.
package provisioning

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Conn is one MQTT session as provisioning needs it. Subscribe returns
// after the broker acknowledged the subscription (QoS 1); Publish returns
// after the PUBACK. fn may be called from another goroutine and must not
// block.
type Conn interface {
	Subscribe(ctx context.Context, topic string, fn func(topic string, payload []byte)) error
	Unsubscribe(ctx context.Context, topic string) error
	Publish(ctx context.Context, topic string, payload []byte) error
	Close() error
}

// Dialer opens an MQTT session authenticated by cert with the given client
// ID. ctx bounds the dial only; the session lives until Close.
// Implementations wrap ErrUnauthorized only for an authenticated refusal:
// the broker's certificate verified and the broker then refused ours
// (CONNACK "not authorized", a certificate alert, a close before CONNACK).
// A broker certificate that does not verify, DNS, TCP and timeouts are
// transport failures: plain errors, retried with backoff, never a hold.
type Dialer func(ctx context.Context, cert tls.Certificate, clientID string) (Conn, error)

// Switcher is implemented by a Conn that can move itself to another
// certificate (the agent's own session): it ends its connection, connects
// again with cert and the same client ID, and returns nil once connected
// with cert. On error it goes back to its previous certificate. Renew
// uses it instead of a separate test connection, so two connections with
// one client ID never overlap.
type Switcher interface {
	SwitchCertificate(ctx context.Context, cert tls.Certificate) error
}

var (
	// ErrNoIdentity reports that no identity has been persisted yet.
	ErrNoIdentity = errors.New("no device identity")
	// ErrRejected classifies a refusal by the provisioning service
	// (template, ownership token, revoked claim): back off for hours, not
	// seconds. The concrete error is a *RejectedError.
	ErrRejected = errors.New("provisioning rejected")
	// ErrUnauthorized is wrapped by Dialer implementations when the broker
	// refuses the certificate.
	ErrUnauthorized = errors.New("not authorized")
	// ErrTooManyCertificates reports that the loop breaker stopped
	// provisioning because too many certificates were requested in the
	// loop-breaker window; the error says when it will try again.
	ErrTooManyCertificates = errors.New("too many certificates requested")
	// ErrRolledBack reports that a renewed certificate failed its test
	// connection and was discarded; the old identity stays in use.
	ErrRolledBack = errors.New("new certificate rolled back")
	// ErrTimeout reports that the service did not answer within the step
	// timeout.
	ErrTimeout = errors.New("provisioning step timed out")
	// ErrNoClaim reports that the claim certificate or key is missing or
	// unreadable. Ensure returns it at once; the caller waits (re-checking
	// every <= 30 s and on SIGHUP) and calls Ensure again.
	ErrNoClaim = errors.New("claim certificate missing or unreadable")
)

// HoldError is returned by Ensure and Renew while provisioning is on hold:
// after Config.MaxRejections consecutive authenticated refusals by the
// service (Err wraps the last *RejectedError) or when the loop breaker
// tripped (Err wraps ErrTooManyCertificates). Nothing is dialled before
// Until; the caller idles (capturing) until then, or until SIGHUP
// (ResetHold). The hold is persisted, so a restart does not lift it.
type HoldError struct {
	Until      time.Time
	Rejections int   // consecutive refusals counted (0 for the loop breaker)
	Err        error // cause
}

func (e *HoldError) Error() string {
	return fmt.Sprintf("provisioning on hold until %s: %v", e.Until.UTC().Format(time.RFC3339), e.Err)
}

// Unwrap returns the cause, so errors.Is(err, ErrRejected) and
// errors.Is(err, ErrTooManyCertificates) keep working.
func (e *HoldError) Unwrap() error { return e.Err }

// RejectedError carries the fields of an AWS .../rejected answer (or, for
// Op "connect", a refused claim certificate).
type RejectedError struct {
	Op           string `json:"op"` // create, create-from-csr, register, connect, est
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("%s rejected: status %d %s: %q", e.Op, e.StatusCode, e.ErrorCode, e.ErrorMessage)
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Transient reports whether the rejection is worth retrying soon
// (throttling or a server-side failure).
func (e *RejectedError) Transient() bool {
	return e.StatusCode == 429 || e.StatusCode >= 500
}

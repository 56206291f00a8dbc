package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrAuth classifies failures that retrying soon cannot fix: the broker
// refused the identity, the client certificate is expired or not yet
// valid, or the broker's certificate does not verify against the CA
// bundle. The session backs off for Config.AuthBackoff after one.
var ErrAuth = errors.New("authentication failed")

// ErrBrokerCert is wrapped (with ErrAuth) when the broker's certificate
// does not verify against the CA bundle: the broker was never
// authenticated (wrong endpoint, captive portal, TLS interception), so
// this is a transport failure, never a refusal by the service.
var ErrBrokerCert = errors.New("broker certificate not verified")

// ErrRefused is wrapped (with ErrAuth) for an authenticated refusal: the
// broker's certificate verified, then the broker refused our identity
// (CONNACK refusal code, a certificate alert, a close before CONNACK).
var ErrRefused = errors.New("refused by the broker")

// ErrNotConnected is returned by Publish while the session is offline.
var ErrNotConnected = errors.New("not connected")

// tlsConfig builds the client TLS configuration: TLS ≥ 1.2, SNI, the CA
// bundle from cfg.CAFile, ALPN on port 443, and the client certificate
// from cert (called on every handshake so a renewed identity is used).
func tlsConfig(cfg Config, cert func() (*tls.Certificate, error)) (*tls.Config, error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("parse broker url: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	if u.Port() == "443" {
		tc.NextProtos = []string{ALPNProtocol}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read ca bundle %s: no PEM certificates", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := cert()
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			return c, nil
		}
	}
	return tc, nil
}

// checkValidity fails with ErrAuth when cert's leaf is outside its
// validity period, so an expired identity gives a clear error instead of
// a bare TLS alert from the broker.
func checkValidity(cert *tls.Certificate, now time.Time) error {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%w: parse client certificate: %v", ErrAuth, err)
		}
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: client certificate %q expired at %s", ErrAuth, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// A certificate "not yet valid" means the clock is behind (an RTC
	// reset before GNSS or NTP): the broker's clock decides, not ours.
	return nil
}

// clockBehind reports whether now is before cert's NotBefore: the local
// clock is evidently wrong, since the certificate was issued earlier.
func clockBehind(cert *tls.Certificate, now time.Time) bool {
	if cert == nil || len(cert.Certificate) == 0 {
		return false
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false
		}
	}
	return now.Before(leaf.NotBefore)
}

// notYetValid reports an x509 validity failure of the broker certificate.
func notYetValid(err error) bool {
	var invalid x509.CertificateInvalidError
	return errors.As(err, &invalid) && invalid.Reason == x509.Expired
}

// dialer opens the connection paho speaks MQTT over. It performs the TLS
// handshake itself so that handshake failures are reported as such, and
// it remembers the first I/O error on the connection: with TLS 1.3 a
// broker rejects a client certificate only after the handshake, and paho
// would otherwise report that as a bare network error.
type dialer struct {
	tls     *tls.Config // nil for plaintext
	timeout time.Duration
	watch   *linkWatch // told about every read; nil = not watched
	// connectKA, if not 0, is written as the keep-alive of the CONNECT
	// paho sends with keep-alive 0 (the session pings itself).
	connectKA uint16

	mu   sync.Mutex
	conn *trackedConn // guarded by mu; last connection dialled
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial broker %s: %w", addr, err)
	}
	conn := raw
	if d.tls != nil {
		tc := tls.Client(raw, d.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, classifyTLS(fmt.Errorf("tls handshake with %s: %w", addr, err))
		}
		conn = tc
	}
	tr := &trackedConn{Conn: conn, watch: d.watch, connectKA: d.connectKA}
	d.mu.Lock()
	d.conn = tr
	d.mu.Unlock()
	return tr, nil
}

// lastError returns the first I/O error seen on the last connection.
func (d *dialer) lastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil
	}
	return d.conn.err()
}

// classifyTLS wraps err with ErrAuth when it is a certificate problem on
// either side.
func classifyTLS(err error) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		return fmt.Errorf("%w: %w: broker certificate: %w", ErrAuth, ErrBrokerCert, err)
	case isRemoteCertAlert(err):
		return fmt.Errorf("%w: %w: broker rejected the client certificate: %w", ErrAuth, ErrRefused, err)
	}
	return err
}

// isRemoteCertAlert reports a TLS alert from the broker about our
// certificate. crypto/tls does not export the remote alert type, so the
// message is matched.
func isRemoteCertAlert(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	if !strings.Contains(s, "remote error: tls:") {
		return false
	}
	for _, a := range []string{"bad certificate", "certificate expired", "unknown certificate authority", "certificate required", "certificate revoked", "unsupported certificate", "access denied"} {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

type trackedConn struct {
	net.Conn
	watch     *linkWatch // nil = not watched
	connectKA uint16     // see dialer.connectKA
	wmu       sync.Mutex // one packet per Write: ours go between paho's
	wrote     bool       // guarded by wmu: the first packet (CONNECT) is out
	mu        sync.Mutex
	first     error // guarded by mu
}

func (c *trackedConn) note(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.first == nil {
		c.first = err
	}
	c.mu.Unlock()
}

func (c *trackedConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.watch != nil {
		c.watch.read()
	}
	c.note(err)
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	if !c.wrote {
		c.wrote = true
		if c.connectKA != 0 {
			b = setConnectKeepAlive(b, c.connectKA)
		}
	}
	n, err := c.Conn.Write(b)
	c.wmu.Unlock()
	if n > 0 && c.watch != nil {
		c.watch.wrote()
	}
	c.note(err)
	return n, err
}

// setConnectKeepAlive returns a copy of the MQTT 3.1.1 CONNECT packet p
// (paho writes each packet with one Write) with its keep-alive set to ka
// if it is 0, or p unchanged if p is not such a packet.
func setConnectKeepAlive(p []byte, ka uint16) []byte {
	if len(p) < 2 || p[0] != 0x10 {
		return p
	}
	i := 1 // remaining length: 1–4 bytes, 7 bits each
	for i < len(p) && i < 5 && p[i]&0x80 != 0 {
		i++
	}
	i++
	if i+2 > len(p) {
		return p
	}
	name := int(p[i])<<8 | int(p[i+1]) // protocol name "MQTT"
	at := i + 2 + name + 2             // after the name, level and flags
	if at+2 > len(p) || p[at] != 0 || p[at+1] != 0 {
		return p
	}
	q := append([]byte(nil), p...)
	q[at], q[at+1] = byte(ka>>8), byte(ka)
	return q
}

// writePacket writes one whole MQTT packet of our own between paho's.
// It never waits behind paho: while paho is in a write (which may hang
// on a dead link until its write deadline) it returns errWriteBusy.
func (c *trackedConn) writePacket(b []byte) error {
	if !c.wmu.TryLock() {
		return errWriteBusy
	}
	n, err := c.Conn.Write(b)
	c.wmu.Unlock()
	if n > 0 && c.watch != nil {
		c.watch.wrote()
	}
	c.note(err)
	return err
}

// errWriteBusy: paho is writing; our packet was not sent.
var errWriteBusy = errors.New("connection busy writing")

// last returns the last connection dialled, or nil.
func (d *dialer) last() *trackedConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

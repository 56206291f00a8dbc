package provisioning

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning/est"
)

// attemptEST enrolls with the EST server from st.Step. The thing name is
// the serial number, which is also the CSR's common name.
func (p *Provisioner) attemptEST(ctx context.Context, st *state) (*Identity, error) {
	st.Method = MethodEST
	if st.Step == stepRegistered {
		return p.commit(st)
	}
	if st.Step == stepStart {
		if err := p.generateKey(st); err != nil {
			return nil, err
		}
	}
	var bootstrap *tls.Certificate
	if p.cfg.ClaimCert != "" {
		claim, err := p.claimPair()
		if err != nil {
			return nil, &permanentError{err}
		}
		bootstrap = &claim
	}
	client, err := p.estClient(bootstrap)
	if err != nil {
		return nil, &permanentError{err}
	}
	key, err := p.readKey(st.KeyFile)
	if err != nil {
		return nil, err
	}
	p.progress(ProgressEnroll)
	if err := p.fetchCACerts(ctx, client); err != nil {
		return nil, estErr(err)
	}
	p.checkCSRAttrs(ctx, client)
	if err := p.checkLoopBreaker(st); err != nil {
		return nil, err
	}
	certPEMBytes, err := p.enroll(ctx, client, key, p.claimClientID(), false)
	if err != nil {
		st.Creates = st.Creates[:len(st.Creates)-1] // nothing was issued
		return nil, errors.Join(estErr(err), st.save(p.dir))
	}
	hook("create_received")
	st.CertFile = "cert-" + newSuffix() + ".pem"
	if err := writeFileAtomic(filepath.Join(p.dir, st.CertFile), certPEMBytes, 0o644); err != nil {
		return nil, err
	}
	st.Step, st.Thing = stepRegistered, p.claimClientID()
	if err := st.save(p.dir); err != nil {
		return nil, err
	}
	hook("registered")
	return p.commit(st)
}

// fetchCACerts stores the EST server's CA certificates (explicit trust
// anchors for later EST calls and a record of the issuing CA).
func (p *Provisioner) fetchCACerts(ctx context.Context, client *est.Client) error {
	cas, err := client.CACerts(ctx)
	if err != nil {
		return err
	}
	ders := make([][]byte, len(cas))
	for i, c := range cas {
		ders[i] = c.Raw
	}
	return writeFileAtomic(filepath.Join(p.dir, caFile), certPEM(ders...), 0o644)
}

// checkCSRAttrs asks the server what it wants in a CSR (RFC 7030 §4.5)
// and warns about what this device does not provide: its CSR carries a
// P-256 key, the subject CN and an ECDSA-SHA256 signature.
func (p *Provisioner) checkCSRAttrs(ctx context.Context, client *est.Client) {
	attrs, err := client.CSRAttrs(ctx)
	if err != nil {
		p.log.Debug("est csrattrs unavailable", "err", err)
		return
	}
	if curve, ok := attrs.Curve(); ok && !curve.Equal(est.OIDP256) {
		p.log.Warn("est server asks for another key curve; this device generates P-256", "curve", curve.String())
	}
	if attrs.Wants(est.OIDChallengePassword) {
		p.log.Warn("est server asks for a challengePassword; not supported, enrolling without")
	}
}

// enroll sends a CSR for key and returns the certificate as PEM.
func (p *Provisioner) enroll(ctx context.Context, client *est.Client, key crypto.Signer, cn string, re bool) ([]byte, error) {
	csr, err := newCSR(key, cn)
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	if re {
		cert, err = client.Reenroll(ctx, csr)
	} else {
		cert, err = client.Enroll(ctx, csr)
	}
	if err != nil {
		return nil, err
	}
	return certPEM(cert.Raw), nil
}

// estErr maps a definitive 4xx answer to a RejectedError.
func estErr(err error) error {
	var se *est.StatusError
	if errors.As(err, &se) && se.StatusCode >= 400 && se.StatusCode < 500 && se.StatusCode != http.StatusTooManyRequests {
		return &RejectedError{Op: "est " + se.Op, StatusCode: se.StatusCode,
			ErrorCode: strings.ReplaceAll(http.StatusText(se.StatusCode), " ", ""), ErrorMessage: se.Message}
	}
	return err
}

// reenrollEST renews old through /simplereenroll, authenticated by old.
func (p *Provisioner) reenrollEST(ctx context.Context, old *Identity, key crypto.Signer) ([]byte, error) {
	client, err := p.estClient(&old.Certificate)
	if err != nil {
		return nil, err
	}
	p.progress(ProgressEnroll)
	b, err := p.enroll(ctx, client, key, old.Certificate.Leaf.Subject.CommonName, true)
	return b, estErr(err)
}

// estClient builds an EST client presenting cert (if any) over TLS.
func (p *Provisioner) estClient(cert *tls.Certificate) (*est.Client, error) {
	var tr *http.Transport
	if p.opts.HTTPClient != nil {
		if t, ok := p.opts.HTTPClient.Transport.(*http.Transport); ok {
			tr = t.Clone()
		}
	}
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if tr.TLSClientConfig != nil {
		tc = tr.TLSClientConfig.Clone()
	}
	if p.cfg.ESTCAFile != "" {
		pemBytes, err := os.ReadFile(p.cfg.ESTCAFile)
		if err != nil {
			return nil, fmt.Errorf("read est ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("est ca %s: no certificates", p.cfg.ESTCAFile)
		}
		tc.RootCAs = pool
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr.TLSClientConfig = tc
	var password string
	if p.cfg.ESTPasswordFile != "" {
		b, err := os.ReadFile(p.cfg.ESTPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read est password: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	hc := &http.Client{Transport: tr, Timeout: time.Duration(p.cfg.StepTimeout)} // per request
	if p.opts.HTTPClient != nil && p.opts.HTTPClient.Timeout > 0 {
		hc.Timeout = p.opts.HTTPClient.Timeout
	}
	return est.New(est.Options{URL: p.cfg.ESTURL, HTTPClient: hc, Username: p.cfg.ESTUsername,
		Password: password, Logger: p.log, Now: p.now})
}

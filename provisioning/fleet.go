package provisioning

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// attemptFleet runs fleet provisioning by claim from st.Step. Resume
// rules after a crash or a lost session, so that exactly one certificate
// ends up ACTIVE:
//   - create_sent: any certificate the request minted is PENDING and
//     AWS deletes it when its token expires; request again (counted).
//   - cert_created: RegisterThing with the persisted token.
//   - register_sent: the certificate may already be ACTIVE. First
//     connect with it as the expected thing (ACTIVE works, PENDING is
//     refused); only then RegisterThing again with the token, and only
//     if that token is refused, mint anew (the old certificate is queued
//     for a retire event).
func (p *Provisioner) attemptFleet(ctx context.Context, st *state) (*Identity, error) {
	st.Method = MethodFleet
	if st.Step == stepRegistered {
		return p.commit(st)
	}
	csrMode := p.cfg.KeyMode == KeyModeCSR
	if st.Step == stepCreateSent {
		p.log.Info("create request was interrupted, requesting a certificate again")
		st.resetCredential(csrMode)
	}
	if csrMode && st.Step == stepStart {
		if err := p.generateKey(st); err != nil {
			return nil, err
		}
	}
	if st.Step == stepRegisterSent { // needs no claim
		done, err := p.resumeRegistered(ctx, st)
		if err != nil {
			return nil, err
		}
		if done {
			return p.commit(st)
		}
	}
	claim, err := p.claimPair()
	if err != nil {
		return nil, &permanentError{err}
	}
	if (st.Step == stepCertCreated || st.Step == stepRegisterSent) && !p.now().Before(st.TokenExpires) {
		p.log.Info("ownership token expired, requesting a new certificate")
		if st.Step == stepRegisterSent {
			st.retire(st.CertificateID, "orphaned") // it may be ACTIVE under an unexpected thing name
		}
		st.resetCredential(csrMode) // a PENDING certificate is deleted by AWS with its token
	}
	p.progress(ProgressConnect)
	conn, err := p.dial(ctx, claim, p.claimClientID())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	if st.Step != stepCertCreated && st.Step != stepRegisterSent {
		if err := p.create(ctx, conn, st); err != nil {
			return nil, err
		}
	}
	if err := p.register(ctx, conn, st); err != nil {
		return nil, err
	}
	if err := conn.Close(); err != nil { // the claim session ends before the identity is used
		p.log.Debug("close claim session", "err", err)
	}
	return p.commit(st)
}

// expectedThing is the thing name RegisterThing is expected to give:
// Config.ThingName, else the serial number.
func (p *Provisioner) expectedThing() string {
	if p.cfg.ThingName != "" {
		return p.cfg.ThingName
	}
	return p.cfg.SerialNumber
}

// resumeRegistered connects with the certificate of an interrupted
// RegisterThing as the expected thing. Connected means the registration
// went through: st advances to registered (done). A refusal means the
// certificate is not ACTIVE (or the thing name differs): register again.
// Any other failure is transient: nothing is re-sent.
func (p *Provisioner) resumeRegistered(ctx context.Context, st *state) (done bool, err error) {
	thing := p.expectedThing()
	if !validThingName(thing) {
		return false, nil
	}
	pair, _, err := loadKeyPair(filepath.Join(p.dir, st.CertFile), filepath.Join(p.dir, st.KeyFile))
	if err != nil {
		return false, err
	}
	p.progress(ProgressTestConnect)
	conn, err := p.rawDial(ctx, pair, thing)
	switch {
	case errors.Is(err, ErrUnauthorized):
		p.log.Info("interrupted registration: certificate not active as the expected thing, registering again",
			"certificate_id", shortID(st.CertificateID), "thing", thing)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check interrupted registration: connect %s: %w", thing, err)
	}
	if err := conn.Close(); err != nil {
		p.log.Debug("close test session", "err", err)
	}
	p.log.Info("interrupted registration had succeeded", "certificate_id", shortID(st.CertificateID), "thing", thing)
	st.Step, st.Thing, st.OwnershipToken = stepRegistered, thing, ""
	if err := st.save(p.dir); err != nil {
		return false, err
	}
	return true, nil
}

// rawDial opens a session, keeping one client ID's connects over a
// second apart; errors are returned as the Dialer gave them.
func (p *Provisioner) rawDial(ctx context.Context, cert tls.Certificate, clientID string) (Conn, error) {
	if err := p.pace(ctx, clientID); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.cfg.StepTimeout))
	defer cancel()
	p.connects[clientID] = time.Now()
	return p.opts.Dial(ctx, cert, clientID)
}

// dial opens a session and maps an authenticated refusal of the
// certificate to a rejection; any other failure stays a transport error.
func (p *Provisioner) dial(ctx context.Context, cert tls.Certificate, clientID string) (Conn, error) {
	conn, err := p.rawDial(ctx, cert, clientID)
	if errors.Is(err, ErrUnauthorized) {
		return nil, &RejectedError{Op: "connect", StatusCode: 403, ErrorCode: "NotAuthorized", ErrorMessage: err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", clientID, err)
	}
	return conn, nil
}

func (p *Provisioner) claimPair() (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.cfg.ClaimCert, p.cfg.ClaimKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", ErrNoClaim, err)
	}
	return c, nil
}

func (p *Provisioner) claimClientID() string {
	if p.cfg.ClaimClientID != "" {
		return p.cfg.ClaimClientID
	}
	return p.cfg.SerialNumber
}

// newSuffix names one credential generation: key-<s>.pem, cert-<s>.pem.
func newSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// generateKey writes a fresh device key and records it in st.
func (p *Provisioner) generateKey(st *state) error {
	p.progress(ProgressGenerateKey)
	_, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	name := "key-" + newSuffix() + ".pem"
	if err := writeFileAtomic(filepath.Join(p.dir, name), keyPEM, 0o600); err != nil {
		return err
	}
	st.resetCredential(false)
	st.KeyFile, st.Step = name, stepKeyGenerated
	if err := st.save(p.dir); err != nil {
		return err
	}
	hook("key_generated")
	return nil
}

// create asks for a certificate (CSR or create-keys) and persists it with
// its ownership token.
func (p *Provisioner) create(ctx context.Context, conn Conn, st *state) error {
	prev := st.Step
	st.Step = stepCreateSent // saved with the loop-breaker record, before the request
	if err := p.checkLoopBreaker(st); err != nil {
		st.Step = prev
		return err
	}
	hook("create_sent")
	p.progress(ProgressCreate)
	op, topic, payload := "create", topicCreateKeys, []byte("{}")
	if p.cfg.KeyMode == KeyModeCSR {
		key, err := p.readKey(st.KeyFile)
		if err != nil {
			return err
		}
		der, err := newCSR(key, p.claimClientID())
		if err != nil {
			return err
		}
		payload, _ = json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(der)})
		op, topic = "create-from-csr", topicCreateCSR
	}
	raw, err := call(ctx, conn, op, topic, payload, time.Duration(p.cfg.StepTimeout))
	if err != nil {
		// No certificate came back (refused, lost or unanswered; AWS
		// deletes an unregistered certificate when its token expires),
		// so this request does not count towards the loop breaker. A
		// crash before this point leaves it counted.
		st.Creates = st.Creates[:len(st.Creates)-1]
		st.Step = prev
		return errors.Join(err, st.save(p.dir))
	}
	hook("create_received")
	resp, _, err := parseCreateResponse(raw, p.cfg.KeyMode == KeyModeCreateKeys)
	if err != nil {
		return err
	}
	return p.storeCreated(st, resp)
}

// storeCreated writes the new certificate (and AWS-generated key) and
// advances st to cert_created.
func (p *Provisioner) storeCreated(st *state, resp *createResponse) error {
	suffix := newSuffix()
	if resp.PrivateKey != "" {
		if _, err := pairFromPEM([]byte(resp.CertificatePEM), []byte(resp.PrivateKey)); err != nil {
			return fmt.Errorf("create response: %w", err)
		}
		st.KeyFile = "key-" + suffix + ".pem"
		if err := writeFileAtomic(filepath.Join(p.dir, st.KeyFile), []byte(resp.PrivateKey), 0o600); err != nil {
			return err
		}
	} else {
		keyPEM, err := os.ReadFile(filepath.Join(p.dir, st.KeyFile))
		if err != nil {
			return fmt.Errorf("read device key: %w", err)
		}
		if _, err := pairFromPEM([]byte(resp.CertificatePEM), keyPEM); err != nil {
			return fmt.Errorf("create response: %w", err)
		}
	}
	st.CertFile = "cert-" + suffix + ".pem"
	if err := writeFileAtomic(filepath.Join(p.dir, st.CertFile), []byte(resp.CertificatePEM), 0o644); err != nil {
		return err
	}
	hook("cert_written")
	st.Step, st.CertificateID = stepCertCreated, resp.CertificateID
	st.OwnershipToken, st.TokenExpires = resp.CertificateOwnershipToken, p.now().Add(tokenLifetime)
	if err := st.save(p.dir); err != nil {
		return err
	}
	p.log.Info("certificate created", "certificate_id", shortID(resp.CertificateID))
	hook("cert_created")
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (p *Provisioner) readKey(name string) (crypto.Signer, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, name))
	if err != nil {
		return nil, fmt.Errorf("read device key: %w", err)
	}
	return parseKey(b)
}

// parameters merges config, serial number, hardware model and run-time
// device parameters for RegisterThing.
func (p *Provisioner) parameters() map[string]string {
	out := maps.Clone(p.cfg.Parameters)
	if out == nil {
		out = map[string]string{}
	}
	if p.cfg.SerialNumber != "" {
		out["SerialNumber"] = p.cfg.SerialNumber
	}
	if p.cfg.HardwareModel != "" {
		out["HardwareModel"] = p.cfg.HardwareModel
	}
	if p.opts.DeviceParams != nil {
		for k, v := range p.opts.DeviceParams() {
			if v != "" {
				out[k] = v
			}
		}
	}
	return out
}

// register calls RegisterThing with the persisted ownership token. The
// step register_sent is durable before the request goes out.
func (p *Provisioner) register(ctx context.Context, conn Conn, st *state) error {
	p.progress(ProgressRegister)
	payload, err := json.Marshal(map[string]any{
		"certificateOwnershipToken": st.OwnershipToken,
		"parameters":                p.parameters(),
	})
	if err != nil {
		return fmt.Errorf("encode register request: %w", err)
	}
	resumed := st.Step == stepRegisterSent
	if !resumed {
		st.Step = stepRegisterSent
		if err := st.save(p.dir); err != nil {
			return err
		}
	}
	hook("register_sent")
	raw, err := call(ctx, conn, "register", topicRegister(p.cfg.Template), payload, time.Duration(p.cfg.StepTimeout))
	var rej *RejectedError
	switch {
	case errors.As(err, &rej) && rej.ErrorCode == "InvalidCertificateOwnershipToken":
		if resumed {
			// The token was used: an interrupted RegisterThing activated
			// the certificate under a thing name other than the expected
			// one. Queue it for a retire event before minting anew.
			p.log.Error("interrupted registration consumed the ownership token; retiring its certificate",
				"certificate_id", shortID(st.CertificateID), "expected_thing", p.expectedThing())
			st.retire(st.CertificateID, "orphaned")
			st.resetCredential(p.cfg.KeyMode == KeyModeCSR)
			// Our own token, consumed by our own request: not a refusal
			// of the device, so not counted towards a hold.
			return errors.Join(fmt.Errorf("interrupted registration: %s: minting a new certificate", rej.ErrorMessage), st.save(p.dir))
		}
		st.resetCredential(p.cfg.KeyMode == KeyModeCSR) // the next attempt mints again (loop breaker applies)
		return errors.Join(err, st.save(p.dir))
	case errors.As(err, &rej) && !rej.Transient():
		st.Step = stepCertCreated // refused: the request was not carried out
		return errors.Join(err, st.save(p.dir))
	case err != nil:
		return err // unanswered: stays register_sent (resume rule)
	}
	hook("register_received")
	resp, err := parseRegisterResponse(raw)
	if err != nil {
		return err
	}
	st.Step, st.Thing, st.DeviceConfig = stepRegistered, resp.ThingName, resp.DeviceConfiguration
	st.OwnershipToken = ""
	if err := st.save(p.dir); err != nil {
		return err
	}
	hook("registered")
	return nil
}

// commit makes the registered credential the device identity.
func (p *Provisioner) commit(st *state) (*Identity, error) {
	p.progress(ProgressPersist)
	_, leaf, err := loadKeyPair(filepath.Join(p.dir, st.CertFile), filepath.Join(p.dir, st.KeyFile))
	if err != nil {
		st.resetCredential(false)
		return nil, errors.Join(fmt.Errorf("registered credential unusable: %w", err), st.save(p.dir))
	}
	rec := identityRecord{Thing: st.Thing, CertFile: st.CertFile, KeyFile: st.KeyFile, Source: st.Method,
		NotAfter: leaf.NotAfter, DeviceConfiguration: st.DeviceConfig}
	if err := commitIdentity(p.dir, rec); err != nil {
		return nil, err
	}
	hook("committed")
	fresh := &state{Creates: st.Creates, Retire: st.Retire}
	if err := fresh.save(p.dir); err != nil {
		p.log.Warn("reset provisioning state", "err", err)
	}
	return loadIdentity(p.dir, &rec)
}

// static returns the pre-installed identity of method "static".
func (p *Provisioner) static() (*Identity, error) {
	cert, leaf, err := loadKeyPair(p.cfg.CertFile, p.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("static identity: %w", err)
	}
	thing := p.cfg.ThingName
	if thing == "" {
		thing = leaf.Subject.CommonName
	}
	return &Identity{Thing: thing, CertFile: p.cfg.CertFile, KeyFile: p.cfg.KeyFile,
		NotAfter: leaf.NotAfter, Source: MethodStatic, Certificate: cert}, nil
}

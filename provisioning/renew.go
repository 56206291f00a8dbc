package provisioning

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// NeedsRenewal reports whether id expires within Config.RenewBefore.
// Static identities and a zero RenewBefore never need renewal.
func (p *Provisioner) NeedsRenewal(id *Identity) bool {
	if id == nil || id.Source == MethodStatic || p.cfg.RenewBefore <= 0 {
		return false
	}
	return !p.now().Before(id.NotAfter.Add(-time.Duration(p.cfg.RenewBefore)))
}

// RenewalPending reports whether an interrupted fleet renewal waits to be
// resumed by Renew (its certificate may already be ACTIVE).
func (p *Provisioner) RenewalPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := readState(p.dir)
	return err == nil && st.Renewal != nil
}

// Renew obtains a new certificate and key for the current identity: for
// fleet identities by CreateCertificateFromCsr and RegisterThing over
// current, the agent's own live session (no second connection with the
// thing name), for EST ones by /simplereenroll.
//
// The new certificate is adopted only once a connection with it works:
// if current implements Switcher, the session itself is moved to the new
// certificate (so two connections with one client ID never overlap);
// otherwise a test connection is dialled. If that fails the new files are
// deleted, the old identity stays and the error wraps ErrRolledBack.
//
// A fleet renewal persists its step before RegisterThing is sent; an
// interrupted one (crash, lost session) is resumed by the next Renew:
// RegisterThing again with the same token, and if the token was already
// used (the certificate is ACTIVE), the switch. After the switch Renew
// publishes a certificate event (old and new certificate IDs, see
// docs/provisioning.md) over current, so a backend rule deactivates the
// old certificate; events that could not be sent stay queued for
// FlushEvents. Attempts that minted nothing do not count against
// Config.MaxCertificates.
func (p *Provisioner) Renew(ctx context.Context, current Conn) (*Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, err := Load(p.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if old.Source == MethodStatic || p.cfg.Method == MethodStatic {
		return nil, errors.New("renew: a static identity cannot be renewed")
	}
	st, err := readState(p.dir)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", old.Thing, err)
	}
	if err := p.cleanOrphans(st); err != nil {
		return nil, fmt.Errorf("renew %s: %w", old.Thing, err)
	}
	var id *Identity
	if old.Source == MethodEST {
		id, err = p.renewEST(ctx, current, st, old)
	} else {
		id, err = p.renewFleet(ctx, current, st, old)
	}
	if err != nil {
		var perm *permanentError
		if errors.As(err, &perm) {
			err = perm.err
		}
		return nil, fmt.Errorf("renew %s: %w", old.Thing, err)
	}
	p.log.Info("certificate renewed", "thing", id.Thing, "not_after", id.NotAfter)
	if current != nil {
		if err := p.flushEvents(ctx, current, id); err != nil {
			p.log.Warn("certificate event not sent; kept for the next attempt", "err", err)
		}
	}
	return id, nil
}

// renewEST re-enrolls over HTTPS; current is only used for the switch.
func (p *Provisioner) renewEST(ctx context.Context, current Conn, st *state, old *Identity) (*Identity, error) {
	if err := p.checkLoopBreaker(st); err != nil {
		return nil, err
	}
	p.progress(ProgressGenerateKey)
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	hook("renew_create_sent")
	certPEMBytes, err := p.reenrollEST(ctx, old, key)
	if err != nil {
		st.Creates = st.Creates[:len(st.Creates)-1] // nothing was issued
		return nil, errors.Join(err, st.save(p.dir))
	}
	suffix := newSuffix()
	r := &renewal{Step: stepRegistered, KeyFile: "key-" + suffix + ".pem", CertFile: "cert-" + suffix + ".pem"}
	if err := p.writePair(r, keyPEM, certPEMBytes); err != nil {
		return nil, err
	}
	return p.adopt(ctx, current, st, old, r)
}

// renewFleet runs CreateCertificateFromCsr and RegisterThing over current,
// or resumes an interrupted renewal.
func (p *Provisioner) renewFleet(ctx context.Context, current Conn, st *state, old *Identity) (*Identity, error) {
	if current == nil {
		return nil, errors.New("fleet renewal needs the current connection")
	}
	r := st.Renewal
	if r != nil && r.Step == stepRegisterSent && !p.now().Before(r.TokenExpires) {
		p.log.Info("interrupted renewal: ownership token expired, retiring its certificate", "certificate_id", shortID(r.CertificateID))
		if err := p.dropRenewal(st, true); err != nil {
			return nil, err
		}
		r = nil
	}
	if r == nil {
		var err error
		if r, err = p.renewCreate(ctx, current, st, old.Thing, certificateID(old.Certificate)); err != nil {
			return nil, err
		}
	}
	if r.Step == stepRegisterSent {
		used, err := p.renewRegister(ctx, current, st, r, old.Thing)
		if err != nil {
			return nil, err
		}
		if used {
			p.log.Info("interrupted renewal: ownership token already used, trying the new certificate",
				"certificate_id", shortID(r.CertificateID))
		}
	}
	return p.adopt(ctx, current, st, old, r)
}

// renewCreate generates a key, requests a certificate and persists both
// with step register_sent before RegisterThing goes out.
func (p *Provisioner) renewCreate(ctx context.Context, current Conn, st *state, thing, oldID string) (*renewal, error) {
	if err := p.checkLoopBreaker(st); err != nil {
		return nil, err
	}
	p.progress(ProgressGenerateKey)
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	der, err := newCSR(key, thing)
	if err != nil {
		return nil, err
	}
	hook("renew_create_sent")
	p.progress(ProgressCreate)
	payload, _ := json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(der)})
	raw, err := call(ctx, current, "create-from-csr", topicCreateCSR, payload, time.Duration(p.cfg.StepTimeout))
	if err != nil {
		// No certificate came back: not counted (a crash before here
		// leaves it counted).
		st.Creates = st.Creates[:len(st.Creates)-1]
		return nil, errors.Join(err, st.save(p.dir))
	}
	hook("renew_create_received")
	resp, _, err := parseCreateResponse(raw, false)
	if err != nil {
		return nil, err
	}
	suffix := newSuffix()
	r := &renewal{Step: stepRegisterSent, KeyFile: "key-" + suffix + ".pem", CertFile: "cert-" + suffix + ".pem",
		CertificateID: resp.CertificateID, OwnershipToken: resp.CertificateOwnershipToken, TokenExpires: p.now().Add(tokenLifetime),
		OldCertificate: oldID}
	if err := p.writePair(r, keyPEM, []byte(resp.CertificatePEM)); err != nil {
		return nil, err
	}
	st.Renewal = r
	if err := st.save(p.dir); err != nil { // durable before RegisterThing is sent
		return nil, errors.Join(err, removeFiles(p.renewalFiles(r)))
	}
	p.log.Info("renewal certificate created", "certificate_id", shortID(r.CertificateID))
	return r, nil
}

// renewRegister calls RegisterThing for the renewal. used reports that the
// token had already been used, i.e. an interrupted earlier RegisterThing
// activated the certificate.
func (p *Provisioner) renewRegister(ctx context.Context, current Conn, st *state, r *renewal, thing string) (used bool, err error) {
	p.progress(ProgressRegister)
	tmpl := p.cfg.RenewTemplate
	if tmpl == "" {
		tmpl = p.cfg.Template
	}
	payload, err := json.Marshal(map[string]any{"certificateOwnershipToken": r.OwnershipToken, "parameters": p.parameters()})
	if err != nil {
		return false, fmt.Errorf("encode register request: %w", err)
	}
	hook("renew_register_sent")
	raw, err := call(ctx, current, "register", topicRegister(tmpl), payload, time.Duration(p.cfg.StepTimeout))
	var rej *RejectedError
	switch {
	case errors.As(err, &rej) && rej.ErrorCode == "InvalidCertificateOwnershipToken":
		return true, nil
	case errors.As(err, &rej) && !rej.Transient():
		// Refused: the certificate stays PENDING and AWS deletes it.
		return false, errors.Join(err, p.dropRenewal(st, false))
	case err != nil:
		return false, err // unanswered: resumed by the next Renew
	}
	hook("renew_register_received")
	reg, err := parseRegisterResponse(raw)
	if err != nil {
		return false, err
	}
	if reg.ThingName != thing {
		return false, errors.Join(fmt.Errorf("renewal registered thing %q, want %q", reg.ThingName, thing), p.dropRenewal(st, true))
	}
	r.Step, r.OwnershipToken = stepRegistered, ""
	if err := st.save(p.dir); err != nil {
		return false, err
	}
	hook("renew_registered")
	return false, nil
}

// adopt switches to the renewed credential r and commits it, or rolls
// back to old.
func (p *Provisioner) adopt(ctx context.Context, current Conn, st *state, old *Identity, r *renewal) (*Identity, error) {
	pair, leaf, err := loadKeyPair(filepath.Join(p.dir, r.CertFile), filepath.Join(p.dir, r.KeyFile))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("new certificate: %w", err), p.dropRenewal(st, true))
	}
	if r.CertificateID == "" {
		r.CertificateID = certificateID(pair)
	}
	if err := p.switchTo(ctx, current, pair, old.Thing); err != nil {
		p.log.Warn("renewed certificate failed to connect, rolling back", "thing", old.Thing, "err", err)
		return nil, errors.Join(fmt.Errorf("%w: %w", ErrRolledBack, err), p.dropRenewal(st, true))
	}
	rec := identityRecord{Thing: old.Thing, CertFile: r.CertFile, KeyFile: r.KeyFile,
		Source: old.Source, NotAfter: leaf.NotAfter, DeviceConfiguration: old.DeviceConfiguration}
	if err := commitIdentity(p.dir, rec); err != nil {
		return nil, err
	}
	hook("renew_committed")
	if old.Source != MethodEST {
		st.retire(certificateID(old.Certificate), "renewed")
	}
	st.Renewal = nil
	if err := st.save(p.dir); err != nil {
		p.log.Warn("save provisioning state", "err", err)
	}
	if filepath.Dir(old.CertFile) == p.dir {
		if err := removeFiles([]string{old.CertFile, old.KeyFile}); err != nil {
			p.log.Warn("remove retired credential", "err", err)
		}
	}
	return loadIdentity(p.dir, &rec)
}

// switchTo moves current to the new certificate (Switcher), or dials a
// test connection when current cannot switch.
func (p *Provisioner) switchTo(ctx context.Context, current Conn, pair tls.Certificate, thing string) error {
	p.progress(ProgressTestConnect)
	if sw, ok := current.(Switcher); ok {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Duration(p.cfg.StepTimeout))
		defer cancel()
		return sw.SwitchCertificate(ctx, pair)
	}
	conn, err := p.dial(ctx, pair, thing)
	if err != nil {
		return err
	}
	return conn.Close()
}

// dropRenewal deletes an in-flight renewal's files; with mayBeActive its
// certificate is queued for a retire event.
func (p *Provisioner) dropRenewal(st *state, mayBeActive bool) error {
	r := st.Renewal
	if r == nil {
		return nil
	}
	if mayBeActive {
		st.retire(r.CertificateID, "orphaned")
	}
	st.Renewal = nil
	return errors.Join(st.save(p.dir), removeFiles(p.renewalFiles(r)))
}

func (p *Provisioner) renewalFiles(r *renewal) []string {
	return []string{filepath.Join(p.dir, r.KeyFile), filepath.Join(p.dir, r.CertFile)}
}

func (p *Provisioner) writePair(r *renewal, keyPEM, certPEMBytes []byte) error {
	files := p.renewalFiles(r)
	if err := writeFileAtomic(files[0], keyPEM, 0o600); err != nil {
		return errors.Join(err, removeFiles(files))
	}
	if err := writeFileAtomic(files[1], certPEMBytes, 0o644); err != nil {
		return errors.Join(err, removeFiles(files))
	}
	return nil
}

// certificateID is AWS IoT's certificate ID: the hex SHA-256 of the DER.
func certificateID(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// CertificateEvent is the payload of <prefix>/<thing>/certificate/rotated:
// a certificate that is no longer (or never was) the device's identity
// and may still be ACTIVE. A backend rule deactivates OldCertificateID
// after checking that the publishing principal is NewCertificateID.
type CertificateEvent struct {
	Version          int    `json:"v"`
	Thing            string `json:"thing"`
	Reason           string `json:"reason"` // "renewed" or "orphaned"
	OldCertificateID string `json:"old_certificate_id"`
	NewCertificateID string `json:"new_certificate_id"`
	Time             int64  `json:"ts"` // Unix milliseconds
}

// EventTopic is the topic certificate events are published on.
func (p *Provisioner) EventTopic(thing string) string {
	prefix := p.opts.EventTopicPrefix
	if prefix == "" {
		prefix = "dt/tcu"
	}
	return prefix + "/" + thing + "/certificate/rotated"
}

// FlushEvents publishes queued certificate events over conn, a session
// authenticated by the current identity; sent events are forgotten.
func (p *Provisioner) FlushEvents(ctx context.Context, conn Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, err := Load(p.opts.StateDir)
	if err != nil {
		return fmt.Errorf("certificate events: %w", err)
	}
	return p.flushEvents(ctx, conn, id)
}

// PendingEvents reports how many certificate events wait to be sent.
func (p *Provisioner) PendingEvents() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := readState(p.dir)
	if err != nil {
		return 0
	}
	return len(st.Retire)
}

func (p *Provisioner) flushEvents(ctx context.Context, conn Conn, id *Identity) error {
	st, err := readState(p.dir)
	if err != nil || len(st.Retire) == 0 {
		return err
	}
	current := certificateID(id.Certificate)
	var kept []retirement
	var errs []error
	for _, r := range st.Retire {
		if r.OldCertificateID == current {
			continue // never ask to retire the certificate in use
		}
		b, err := json.Marshal(CertificateEvent{Version: 1, Thing: id.Thing, Reason: r.Reason,
			OldCertificateID: r.OldCertificateID, NewCertificateID: current, Time: p.now().UnixMilli()})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, time.Duration(p.cfg.StepTimeout))
			err = conn.Publish(pctx, p.EventTopic(id.Thing), b)
			cancel()
		}
		if err != nil {
			kept = append(kept, r)
			errs = append(errs, err)
			continue
		}
		p.log.Info("certificate event sent", "reason", r.Reason, "old_certificate_id", shortID(r.OldCertificateID),
			"new_certificate_id", shortID(current))
	}
	st.Retire = kept
	return errors.Join(append(errs, st.save(p.dir))...)
}

func removeFiles(names []string) error {
	var errs []error
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(names) > 0 {
		errs = append(errs, fsutil.SyncDir(filepath.Dir(names[0])))
	}
	return errors.Join(errs...)
}

package provisioning

import (
	"context"
	"crypto"
	"crypto/tls"
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

// Renew obtains a new certificate and key for the current identity: for
// fleet identities by CreateCertificateFromCsr and RegisterThing over
// current (the live session of the current identity), for EST ones by
// /simplereenroll. The new certificate is adopted only after a test
// connection with it succeeds; otherwise it is discarded and the error
// wraps ErrRolledBack. The caller reconnects with the returned identity.
// The test connection uses the thing name as client ID, so the broker may
// drop the current session; the caller's reconnect logic covers that.
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
	if err := p.checkLoopBreaker(st); err != nil {
		var perm *permanentError
		if errors.As(err, &perm) {
			err = perm.err
		}
		return nil, fmt.Errorf("renew %s: %w", old.Thing, err)
	}
	id, err := p.renew(ctx, current, old)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", old.Thing, err)
	}
	p.log.Info("certificate renewed", "thing", id.Thing, "not_after", id.NotAfter)
	return id, nil
}

func (p *Provisioner) renew(ctx context.Context, current Conn, old *Identity) (*Identity, error) {
	p.progress(ProgressGenerateKey)
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	var certPEMBytes []byte
	if old.Source == MethodEST {
		certPEMBytes, err = p.reenrollEST(ctx, old, key)
	} else {
		certPEMBytes, err = p.renewFleet(ctx, current, old.Thing, key)
	}
	if err != nil {
		return nil, err
	}
	pair, err := pairFromPEM(certPEMBytes, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	suffix := newSuffix()
	rec := identityRecord{Thing: old.Thing, CertFile: "cert-" + suffix + ".pem", KeyFile: "key-" + suffix + ".pem",
		Source: old.Source, NotAfter: pair.Leaf.NotAfter, DeviceConfiguration: old.DeviceConfiguration}
	newFiles := []string{filepath.Join(p.dir, rec.KeyFile), filepath.Join(p.dir, rec.CertFile)}
	if err := p.writePair(newFiles, keyPEM, certPEMBytes); err != nil {
		return nil, errors.Join(err, removeFiles(newFiles))
	}
	if err := p.testConnect(ctx, pair, old.Thing); err != nil {
		p.log.Warn("renewed certificate failed test connect, rolling back", "thing", old.Thing, "err", err)
		return nil, errors.Join(fmt.Errorf("%w: %w", ErrRolledBack, err), removeFiles(newFiles))
	}
	if err := commitIdentity(p.dir, rec); err != nil {
		return nil, errors.Join(err, removeFiles(newFiles))
	}
	hook("renew_committed")
	if filepath.Dir(old.CertFile) == p.dir {
		if err := removeFiles([]string{old.CertFile, old.KeyFile}); err != nil {
			p.log.Warn("remove retired credential", "err", err)
		}
	}
	return loadIdentity(p.dir, &rec)
}

func (p *Provisioner) writePair(files []string, keyPEM, certPEMBytes []byte) error {
	if err := writeFileAtomic(files[0], keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(files[1], certPEMBytes, 0o644)
}

// testConnect opens and closes a session with the new credential.
func (p *Provisioner) testConnect(ctx context.Context, pair tls.Certificate, thing string) error {
	p.progress(ProgressTestConnect)
	conn, err := p.dial(ctx, pair, thing)
	if err != nil {
		return err
	}
	return conn.Close()
}

// renewFleet runs CreateCertificateFromCsr and RegisterThing over current.
func (p *Provisioner) renewFleet(ctx context.Context, current Conn, thing string, key crypto.Signer) ([]byte, error) {
	if current == nil {
		return nil, errors.New("fleet renewal needs the current connection")
	}
	der, err := newCSR(key, thing)
	if err != nil {
		return nil, err
	}
	p.progress(ProgressCreate)
	payload, _ := json.Marshal(map[string]string{"certificateSigningRequest": csrPEM(der)})
	raw, err := call(ctx, current, "create-from-csr", topicCreateCSR, payload, time.Duration(p.cfg.StepTimeout))
	if err != nil {
		return nil, err
	}
	resp, _, err := parseCreateResponse(raw, false)
	if err != nil {
		return nil, err
	}
	p.progress(ProgressRegister)
	tmpl := p.cfg.RenewTemplate
	if tmpl == "" {
		tmpl = p.cfg.Template
	}
	payload, err = json.Marshal(map[string]any{"certificateOwnershipToken": resp.CertificateOwnershipToken, "parameters": p.parameters()})
	if err != nil {
		return nil, fmt.Errorf("encode register request: %w", err)
	}
	raw, err = call(ctx, current, "register", topicRegister(tmpl), payload, time.Duration(p.cfg.StepTimeout))
	if err != nil {
		return nil, err
	}
	reg, err := parseRegisterResponse(raw)
	if err != nil {
		return nil, err
	}
	if reg.ThingName != thing {
		return nil, fmt.Errorf("renewal registered thing %q, want %q", reg.ThingName, thing)
	}
	return []byte(resp.CertificatePEM), nil
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

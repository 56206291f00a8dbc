package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// renewCheckEvery is how often the certificate's expiry is checked.
const renewCheckEvery = time.Hour

// renewLoop renews the identity's certificate before it expires. It
// checks at start and every renewCheckEvery; when the certificate is
// inside the renewal window, or an interrupted renewal waits to be
// resumed, it renews over the agent's own MQTT session (no second
// connection with the thing name: the provisioning package waits for the
// session to be connected, runs CreateCertificateFromCsr and
// RegisterThing over it, then switches the session to the new
// certificate and commits it only once that connection is up). Queued
// certificate events (old certificate to deactivate) are sent over the
// session too. cert is what the session presents on its next connect.
func (a *Agent) renewLoop(ctx context.Context, p *provisioning.Provisioner, id *provisioning.Identity, cert *atomic.Pointer[tls.Certificate], log *slog.Logger) {
	a.mu.Lock()
	sess := a.session
	a.mu.Unlock()
	if sess == nil {
		return
	}
	conn := sess.ProvisioningConn(cert)
	// Failed renewals retry with the provisioning retry bounds.
	pc := a.sec.Provisioning
	bo := backoff.New(max(time.Duration(pc.RetryMin), time.Second), max(time.Duration(pc.RetryMax), time.Minute))
	wait := time.Duration(0)
	for backoff.Wait(ctx, wait) {
		wait = renewCheckEvery
		if conn.Ready(ctx) != nil {
			return // ctx ended
		}
		if p.PendingEvents() > 0 {
			if err := p.FlushEvents(ctx, conn); err != nil && ctx.Err() == nil {
				log.Warn("certificate event not sent", "err", err)
				wait = bo.Next()
			}
		}
		if !p.NeedsRenewal(id) && !p.RenewalPending() {
			continue
		}
		log.Info("certificate renewal due", "not_after", id.NotAfter)
		next, err := p.Renew(ctx, conn)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var hold *provisioning.HoldError
			if errors.As(err, &hold) {
				log.Error("certificate renewal on hold; keeping the current certificate", "until", hold.Until, "err", err)
				wait = max(time.Until(hold.Until), time.Minute)
				continue
			}
			log.Error("certificate renewal failed; keeping the current certificate", "err", err)
			wait = bo.Next()
			continue
		}
		bo.Reset()
		id = next
		cert.Store(&next.Certificate) // already presented by the session; kept for later connects
		a.setIdentity(identityInfo{thing: next.Thing, source: next.Source, notAfter: next.NotAfter})
		log.Info("certificate renewed", "not_after", next.NotAfter)
	}
}

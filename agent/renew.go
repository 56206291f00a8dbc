package agent

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// renewCheckEvery is how often the certificate's expiry is checked.
const renewCheckEvery = time.Hour

// renewLoop renews the identity's certificate before it expires: it
// checks at start and every renewCheckEvery, and when the certificate is
// inside the configured renewal window it obtains a new one over a
// short-lived session authenticated with the current certificate (EST needs
// none). The provisioning package adopts the new certificate only after a
// test connection with it succeeded. cert is what the MQTT session uses on
// its next connect; the renewal's own connection (same client ID) makes the
// main session reconnect, so it picks the new certificate up at once.
func (a *Agent) renewLoop(ctx context.Context, p *provisioning.Provisioner, id *provisioning.Identity, cert *atomic.Pointer[tls.Certificate], log *slog.Logger) {
	// Failed renewals retry with the provisioning retry bounds.
	pc := a.sec.Provisioning
	bo := backoff.New(max(time.Duration(pc.RetryMin), time.Second), max(time.Duration(pc.RetryMax), time.Minute))
	wait := time.Duration(0)
	for backoff.Wait(ctx, wait) {
		wait = renewCheckEvery
		if !p.NeedsRenewal(id) {
			continue
		}
		log.Info("certificate renewal due", "not_after", id.NotAfter)
		var conn provisioning.Conn
		if id.Source != provisioning.MethodEST {
			c, err := uplink.DialConn(ctx, a.sec.MQTT, id.Certificate, id.Thing, log.With("component", "renew_mqtt"))
			if err != nil {
				log.Warn("certificate renewal: cannot connect", "err", err)
				wait = bo.Next()
				continue
			}
			conn = c
		}
		next, err := p.Renew(ctx, conn)
		if conn != nil {
			_ = conn.Close()
		}
		if err != nil {
			log.Error("certificate renewal failed; keeping the current certificate", "err", err)
			wait = bo.Next()
			continue
		}
		bo.Reset()
		id = next
		cert.Store(&next.Certificate)
		a.setIdentity(identityInfo{thing: next.Thing, source: next.Source, notAfter: next.NotAfter})
		log.Info("certificate renewed", "not_after", next.NotAfter)
	}
}

package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// SessionConn runs provisioning requests (certificate renewal, its
// events) over the agent's own Session, so no second connection uses the
// thing name as client ID. It has the method set of provisioning.Conn and
// provisioning.Switcher. Subscribe and Publish wait (within ctx) until
// the session is connected; Close does not end the session.
type SessionConn struct {
	s    *Session
	cert *atomic.Pointer[tls.Certificate] // what the session's next connect presents
}

// ProvisioningConn returns s as a provisioning connection. cert must be
// the pointer the session's Options.Certificate reads: SwitchCertificate
// stores the new certificate there.
func (s *Session) ProvisioningConn(cert *atomic.Pointer[tls.Certificate]) *SessionConn {
	return &SessionConn{s: s, cert: cert}
}

// current waits until the session is connected and returns its
// connection. It blocks on the session's change notification: no timer.
func (p *SessionConn) current(ctx context.Context) (*conn, error) {
	for {
		c, changed := p.s.state()
		if c != nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the mqtt session: %w: %w", ErrNotConnected, ctx.Err())
		case <-changed:
		}
	}
}

// Ready waits until the session is connected.
func (p *SessionConn) Ready(ctx context.Context) error {
	_, err := p.current(ctx)
	return err
}

// Subscribe subscribes topic at QoS 1 on the current connection and
// routes its messages to fn (not to the session's Handler). It returns
// after a successful SUBACK. A reconnect of the session loses the route;
// the provisioning step then times out and is retried.
func (p *SessionConn) Subscribe(ctx context.Context, topic string, fn func(topic string, payload []byte)) error {
	if err := validFilter(topic); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	c, err := p.current(ctx)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	tok := c.client.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		p.s.rate.take() // inbound publishes count against the connection's rate
		fn(m.Topic(), m.Payload())
		m.Ack() // fn does not block; needed once the session acknowledges manually (idempotent otherwise)
	})
	if err := waitToken(ctx, tok, p.s.cfg.AckTimeout.Std()); err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	for f, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code == 0x80 || code > 2 {
			return fmt.Errorf("subscribe %s: %w (suback 0x%02x)", f, errSubscribeRefused, code)
		}
	}
	return nil
}

// Unsubscribe removes a subscription made by Subscribe.
func (p *SessionConn) Unsubscribe(ctx context.Context, topic string) error {
	c, err := p.current(ctx)
	if err != nil {
		return fmt.Errorf("unsubscribe %s: %w", topic, err)
	}
	if err := waitToken(ctx, c.client.Unsubscribe(topic), p.s.cfg.AckTimeout.Std()); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", topic, err)
	}
	return nil
}

// Publish waits for the session and publishes at QoS 1 (see
// Session.Publish).
func (p *SessionConn) Publish(ctx context.Context, topic string, payload []byte) error {
	if _, err := p.current(ctx); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return p.s.Publish(ctx, topic, payload)
}

// Close does nothing: the session belongs to the agent.
func (p *SessionConn) Close() error { return nil }

// errSwitch ends the connection for a certificate switch.
var errSwitch = errors.New("switching to a renewed certificate")

// SwitchCertificate moves the session to cert: it stores cert for the
// next connect and ends the current connection; the session reconnects
// (keeping its 1.1 s connect spacing, so the old and the new connection
// never overlap and the broker's connect rate is kept). It returns nil
// once the session is connected again, which is with cert. If the broker
// refuses cert, or ctx ends first, the previous certificate is restored
// and the error returned; the session then reconnects with it after its
// auth backoff (on a refusal) or its normal backoff.
func (p *SessionConn) SwitchCertificate(ctx context.Context, cert tls.Certificate) error {
	c0, err := p.current(ctx)
	if err != nil {
		return fmt.Errorf("switch certificate: %w", err)
	}
	prev := p.cert.Load()
	auth0 := p.s.st.authFailures.Load()
	p.cert.Store(&cert)
	c0.fail(errSwitch)
	for {
		c, changed := p.s.state()
		if c != nil && c != c0 {
			p.s.log.Info("mqtt session switched to the renewed certificate")
			return nil
		}
		if p.s.st.authFailures.Load() != auth0 {
			p.cert.Store(prev)
			return fmt.Errorf("switch certificate: %w: the broker refused the new certificate", ErrRefused)
		}
		select {
		case <-ctx.Done():
			p.cert.Store(prev)
			return fmt.Errorf("switch certificate: %w", ctx.Err())
		case <-changed: // a new connection or a refused identity
		}
	}
}

package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Conn is a plain short-lived MQTT connection (clean session, no
// reconnect, no buffer), used for fleet provisioning by claim. Limits are
// those of the Session: QoS 1 only, ≤ 8 filters per SUBSCRIBE, SUBACK
// codes checked, publish rate capped.
type Conn struct {
	cfg    Config
	log    *slog.Logger
	client mqtt.Client
	rate   *limiter

	mu       sync.Mutex
	handlers map[string]func(topic string, payload []byte) // guarded by mu; by filter
	lost     chan struct{}
	lostOnce sync.Once
}

// DialConn connects once with cert as identity and clientID as client ID.
// A zero cert is allowed only for a plaintext broker.
func DialConn(ctx context.Context, cfg Config, cert tls.Certificate, clientID string, log *slog.Logger) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dial conn: %w", err)
	}
	if log == nil {
		return nil, errors.New("dial conn: nil logger")
	}
	c := &Conn{cfg: cfg, log: log, rate: newLimiter(cfg.MaxPublishRate, time.Now),
		handlers: make(map[string]func(string, []byte)), lost: make(chan struct{})}
	var tc *tls.Config
	if cfg.tlsEnabled() {
		var getCert func() (*tls.Certificate, error)
		if len(cert.Certificate) > 0 {
			if err := checkValidity(&cert, time.Now()); err != nil {
				return nil, fmt.Errorf("dial conn: %w", err)
			}
			getCert = func() (*tls.Certificate, error) { return &cert, nil }
		}
		var err error
		if tc, err = tlsConfig(cfg, getCert); err != nil {
			return nil, fmt.Errorf("dial conn: %w", err)
		}
	}
	cd, err := connect(ctx, connectParams{
		cfg: cfg, clientID: clientID, tls: tc, clean: true,
		onMsg:  c.dispatch,
		onLost: func(error) { c.lostOnce.Do(func() { close(c.lost) }) },
	})
	if err != nil {
		return nil, fmt.Errorf("dial conn %s: %w", cfg.Broker, err)
	}
	c.client = cd.client
	return c, nil
}

func (c *Conn) dispatch(_ mqtt.Client, m mqtt.Message) {
	c.rate.take()
	c.mu.Lock()
	var fns []func(string, []byte)
	for f, fn := range c.handlers {
		if topicMatch(f, m.Topic()) {
			fns = append(fns, fn)
		}
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn(m.Topic(), m.Payload())
	}
}

// Subscribe subscribes topic (a filter) at QoS 1 and routes its messages
// to fn. It returns after a successful SUBACK.
func (c *Conn) Subscribe(ctx context.Context, topic string, fn func(topic string, payload []byte)) error {
	if err := validFilter(topic); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	c.mu.Lock()
	if _, dup := c.handlers[topic]; !dup && len(c.handlers) >= AWSMaxSubscriptions {
		c.mu.Unlock()
		return fmt.Errorf("subscribe %s: %d subscriptions already", topic, AWSMaxSubscriptions)
	}
	c.handlers[topic] = fn
	c.mu.Unlock()
	if err := subscribe(ctx, c.client, []string{topic}, c.cfg.AckTimeout.Std()); err != nil {
		c.mu.Lock()
		delete(c.handlers, topic)
		c.mu.Unlock()
		return err
	}
	return nil
}

// Unsubscribe removes a subscription made by Subscribe.
func (c *Conn) Unsubscribe(ctx context.Context, topic string) error {
	c.mu.Lock()
	delete(c.handlers, topic)
	c.mu.Unlock()
	if err := waitToken(ctx, c.client.Unsubscribe(topic), c.cfg.AckTimeout.Std()); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", topic, err)
	}
	return nil
}

// Publish sends payload at QoS 1 (not retained) and waits for the PUBACK.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := validTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > c.cfg.MaxPayload {
		return fmt.Errorf("publish %s: payload %d bytes exceeds %d", topic, len(payload), c.cfg.MaxPayload)
	}
	if !c.rate.wait(ctx.Done(), c.lost, 1) {
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	if err := waitToken(ctx, c.client.Publish(topic, 1, false, payload), c.cfg.AckTimeout.Std()); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Close disconnects.
func (c *Conn) Close() error {
	c.client.Disconnect(250)
	c.lostOnce.Do(func() { close(c.lost) })
	return nil
}

// topicMatch reports whether topic matches the MQTT filter.
func topicMatch(filter, topic string) bool {
	for {
		fl, frest, fmore := cut(filter)
		tl, trest, tmore := cut(topic)
		switch {
		case fl == "#":
			return true
		case fl != "+" && fl != tl:
			return false
		case !fmore || !tmore:
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}

func cut(s string) (head, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

package fleetprov_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/provisioning"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memBroker is an in-memory broker: it satisfies fleetprov.Broker,
// fleetprov.Disconnecter and fleetprov.Registry, and dials
// provisioning.Conn sessions.
type memBroker struct {
	ca *x509.Certificate

	mu       sync.Mutex
	handlers []handler         // guarded by mu
	conns    map[*memConn]bool // guarded by mu
	things   map[string]string // guarded by mu; cert DER -> thing
	refuse   func(*x509.Certificate) bool
	// AWS: one connection per client ID (a second connect disconnects
	// the first), at most one CONNECT per second per client ID.
	lastConnect    map[string]time.Time // guarded by mu
	rateViolations int                  // guarded by mu
	kicked         int                  // guarded by mu
}

type handler struct {
	filter string
	fn     func(clientID, topic string, payload []byte)
}

func newBroker(ca *x509.Certificate) *memBroker {
	return &memBroker{ca: ca, conns: map[*memConn]bool{}, things: map[string]string{}, lastConnect: map[string]time.Time{}}
}

func (b *memBroker) Handle(filter string, fn func(clientID, topic string, payload []byte)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers = append(b.handlers, handler{filter, fn})
}

func (b *memBroker) Publish(topic string, payload []byte) error {
	b.mu.Lock()
	var fns []func(string, []byte)
	for c := range b.conns {
		if fn := c.sub(topic); fn != nil {
			fns = append(fns, fn)
		}
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(topic, payload)
	}
	return nil
}

// PublishTo delivers only to clientID's sessions, as AWS answers
// provisioning requests.
func (b *memBroker) PublishTo(clientID, topic string, payload []byte) error {
	b.mu.Lock()
	var fns []func(string, []byte)
	for c := range b.conns {
		if fn := c.sub(topic); fn != nil && c.clientID == clientID {
			fns = append(fns, fn)
		}
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(topic, payload)
	}
	return nil
}

func (b *memBroker) Disconnect(clientID string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		if c.clientID == clientID {
			delete(b.conns, c)
		}
	}
	return nil
}

func (b *memBroker) ActivateThing(certDER []byte, thing string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.things[string(certDER)] = thing
}

// DeactivateCertificate implements fleetprov.Deactivator.
func (b *memBroker) DeactivateCertificate(certDER []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.things, string(certDER))
}

// violations returns the connect-rate violations and kicked sessions.
func (b *memBroker) violations() (rate, kicked int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rateViolations, b.kicked
}

func (b *memBroker) thingOf(cert tls.Certificate) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.things[string(cert.Certificate[0])]
}

// Dial opens a session; certificates issued by the CA must have been
// activated and must connect with their thing name as client ID.
func (b *memBroker) Dial(_ context.Context, cert tls.Certificate, clientID string) (provisioning.Conn, error) {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if b.refuse != nil && b.refuse(leaf) {
		return nil, provisioning.ErrUnauthorized
	}
	if leaf.CheckSignatureFrom(b.ca) == nil && !strings.HasPrefix(leaf.Subject.CommonName, "claim") {
		if thing := b.thingOf(cert); thing == "" || thing != clientID {
			return nil, errors.Join(provisioning.ErrUnauthorized, errors.New("certificate not active for this client id"))
		}
	}
	c := &memConn{b: b, clientID: clientID, subs: map[string]func(string, []byte){}}
	b.mu.Lock()
	now := time.Now()
	if last, ok := b.lastConnect[clientID]; ok && now.Sub(last) < time.Second {
		b.rateViolations++
	}
	b.lastConnect[clientID] = now
	for o := range b.conns {
		if o.clientID == clientID {
			delete(b.conns, o) // the older session is disconnected
			b.kicked++
		}
	}
	b.conns[c] = true
	b.mu.Unlock()
	return c, nil
}

type memConn struct {
	b        *memBroker
	clientID string
	mu       sync.Mutex
	subs     map[string]func(string, []byte)
}

func (c *memConn) live() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if !c.b.conns[c] {
		return errors.New("connection lost")
	}
	return nil
}

func (c *memConn) sub(topic string) func(string, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[topic]
}

func (c *memConn) Subscribe(_ context.Context, topic string, fn func(string, []byte)) error {
	if err := c.live(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs[topic] = fn
	return nil
}

func (c *memConn) Unsubscribe(_ context.Context, topic string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, topic)
	return nil
}

func (c *memConn) Publish(_ context.Context, topic string, payload []byte) error {
	if err := c.live(); err != nil {
		return err
	}
	c.b.mu.Lock()
	hs := append([]handler(nil), c.b.handlers...)
	c.b.mu.Unlock()
	for _, h := range hs {
		if match(h.filter, topic) {
			h.fn(c.clientID, topic, payload)
		}
	}
	return nil
}

func (c *memConn) Close() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	delete(c.b.conns, c)
	return nil
}

// match applies MQTT wildcards (+, #).
func match(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, p := range f {
		if p == "#" {
			return true
		}
		if i >= len(t) || (p != "+" && p != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

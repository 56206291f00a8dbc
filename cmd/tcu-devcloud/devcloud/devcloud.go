// Package devcloud is a local stand-in for AWS IoT Core: an embedded
// MQTT broker (mochi-mqtt) with a plain listener for development and a
// mutual-TLS listener backed by its own test CA, per-certificate topic
// permissions, the AWS per-connection limits, fault knobs for tests, a
// command sender and a console; the AWS IoT Jobs device MQTT API (Jobs),
// an HTTPS file server for job bundles with its own CA and presigned-like
// URLs (FileServer), the tcu.config.v1 bundle builder and signer, and a
// control plane the CLI reaches over the plain listener (ctl.go). It is
// used by cmd/tcu-devcloud and in-process by tests.
package devcloud

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Limits are the AWS IoT Core per-connection limits the broker enforces.
// Zero fields take the AWS values.
type Limits struct {
	MaxPayload             int // bytes; larger publish → disconnect (128 KiB)
	MaxInflight            int // unacknowledged QoS 1 publishes; more → disconnect (100)
	MaxPublishRate         int // publishes/s in+out per connection; excess is discarded (100)
	MaxFiltersPerSubscribe int // filters per SUBSCRIBE; more → disconnect (8)
	MaxSubscriptions       int // per connection; more → disconnect (50)
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxPayload, 128*1024)
	def(&l.MaxInflight, 100)
	def(&l.MaxPublishRate, 100)
	def(&l.MaxFiltersPerSubscribe, 8)
	def(&l.MaxSubscriptions, 50)
	return l
}

// Options configure a Cloud.
type Options struct {
	// Addr is the plain TCP listener ("127.0.0.1:1883"; port 0 picks one);
	// empty disables it. Plain clients are not restricted by topic.
	Addr string
	// TLSAddr is the mutual-TLS listener; empty disables it.
	TLSAddr string
	// CADir holds the test CA (created if absent); empty keeps it in memory.
	CADir string
	// Limits enforced per connection (zero = AWS values).
	Limits Limits
	// CommandValidity is the valid_ms of commands sent (default 30s).
	CommandValidity time.Duration
	// Console receives one line per telemetry batch, event, status and
	// command response; nil disables the console.
	Console io.Writer
	// QuietTelemetry suppresses telemetry lines on the console.
	QuietTelemetry bool
	// JobsMinute is the length of a minute for the Jobs timers
	// (stepTimeoutInMinutes); tests shorten it. Default one minute.
	JobsMinute time.Duration
	// Logger is required.
	Logger *slog.Logger
}

// Cloud is the running devcloud.
type Cloud struct {
	opts    Options
	limits  Limits
	ca      *CA
	server  *Identity
	log     *slog.Logger
	hook    *hook
	faults  *Faults
	router  router
	jobs    *Jobs
	serving jobsServing

	mu       sync.Mutex
	srv      *mqtt.Server            // guarded by mu; nil while stopped
	addr     string                  // guarded by mu; resolved after the first Start
	tlsAddr  string                  // guarded by mu
	things   map[[32]byte]string     // guarded by mu; activated certificates
	timeline []ConnectEvent          // guarded by mu
	stats    map[string]*ClientStats // guarded by mu; by client ID
}

// New creates the CA (or loads it from CADir) and the broker; it does not
// listen yet.
func New(opts Options) (*Cloud, error) {
	if opts.Logger == nil {
		return nil, errors.New("devcloud: nil logger")
	}
	if opts.Addr == "" && opts.TLSAddr == "" {
		return nil, errors.New("devcloud: no listener address")
	}
	if opts.CommandValidity == 0 {
		opts.CommandValidity = 30 * time.Second
	}
	ca, err := LoadOrCreateCA(opts.CADir)
	if err != nil {
		return nil, fmt.Errorf("devcloud: %w", err)
	}
	srvID, err := ca.ServerIdentity()
	if err != nil {
		return nil, fmt.Errorf("devcloud: %w", err)
	}
	if opts.CADir != "" {
		if _, _, err := srvID.WriteFiles(opts.CADir, "server"); err != nil {
			return nil, fmt.Errorf("devcloud: %w", err)
		}
	}
	c := &Cloud{opts: opts, limits: opts.Limits.withDefaults(), ca: ca, server: srvID, log: opts.Logger,
		addr: opts.Addr, tlsAddr: opts.TLSAddr,
		things: make(map[[32]byte]string), stats: make(map[string]*ClientStats)}
	c.faults = &Faults{c: c}
	c.hook = &hook{c: c, clients: make(map[*mqtt.Client]*clientState)}
	c.router.init()
	c.jobs = newJobs(c, opts.JobsMinute)
	c.router.add("$aws/things/+/jobs/#", c.jobs.handle)
	c.router.add(ctlPrefix+"#", c.control)
	if opts.Console != nil {
		c.startConsole(opts.Console, opts.QuietTelemetry)
	}
	return c, nil
}

// CA returns the test CA.
func (c *Cloud) CA() *CA { return c.ca }

// Faults returns the fault knobs.
func (c *Cloud) Faults() *Faults { return c.faults }

// Addr is the plain listener's address once started ("" if disabled).
func (c *Cloud) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// TLSAddr is the mutual-TLS listener's address once started.
func (c *Cloud) TLSAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tlsAddr
}

// Start listens and serves. After Stop it may be called again and listens
// on the same addresses (a broker restart; sessions are not kept). ctx
// bounds only the start itself.
func (c *Cloud) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		return errors.New("devcloud: already started")
	}
	mlog := slog.New(mochiHandler{c.log.Handler()}).With("component", "mochi")
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: mlog,
		Capabilities: capabilities()})
	if err := srv.AddHook(c.hook, nil); err != nil {
		return fmt.Errorf("devcloud: add hook: %w", err)
	}
	var lc net.ListenConfig
	if c.addr != "" {
		ln, err := lc.Listen(ctx, "tcp", c.addr)
		if err != nil {
			return fmt.Errorf("devcloud: listen %s: %w", c.addr, err)
		}
		c.addr = ln.Addr().String()
		if err := srv.AddListener(listeners.NewNet("plain", ln)); err != nil {
			return fmt.Errorf("devcloud: %w", err)
		}
	}
	if c.tlsAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", c.tlsAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("devcloud: listen %s: %w", c.tlsAddr, err)
		}
		c.tlsAddr = ln.Addr().String()
		tl := tls.NewListener(ln, c.serverTLS())
		if err := srv.AddListener(listeners.NewNet("mtls", tl)); err != nil {
			return fmt.Errorf("devcloud: %w", err)
		}
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("devcloud: serve: %w", err)
	}
	c.srv = srv
	c.log.Info("devcloud broker listening", "addr", c.addr, "tls_addr", c.tlsAddr)
	return nil
}

func capabilities() *mqtt.Capabilities {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MaximumSessionExpiryInterval = 3600 // AWS persistent session expiry
	return caps
}

func (c *Cloud) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.server.Certificate},
		ClientCAs:    c.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"x-amzn-mqtt-ca", "mqtt"},
	}
}

// Stop closes the listeners and every connection.
func (c *Cloud) Stop() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	c.hook.reset()
}

// Close stops the broker for good.
func (c *Cloud) Close() error {
	c.Stop()
	c.faults.stopTimers()
	c.jobs.close()
	return nil
}

func (c *Cloud) current() *mqtt.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv
}

// Publish delivers payload on topic to subscribers (QoS 1, not retained).
// It implements fleetprov.Broker.
func (c *Cloud) Publish(topic string, payload []byte) error {
	srv := c.current()
	if srv == nil {
		return errors.New("devcloud: publish: broker stopped")
	}
	if err := srv.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("devcloud: publish %s: %w", topic, err)
	}
	return nil
}

// ActivateThing makes a certificate (DER) a thing certificate for thing,
// whatever its subject says. It implements fleetprov.Registry.
func (c *Cloud) ActivateThing(certDER []byte, thing string) {
	c.mu.Lock()
	c.things[sha256.Sum256(certDER)] = thing
	c.mu.Unlock()
}

// DeactivateCertificate makes the broker refuse a certificate activated
// by ActivateThing (a certificate event retired it). It implements
// fleetprov.Deactivator.
func (c *Cloud) DeactivateCertificate(certDER []byte) {
	c.mu.Lock()
	delete(c.things, sha256.Sum256(certDER))
	c.mu.Unlock()
}

func (c *Cloud) activated(certDER []byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.things[sha256.Sum256(certDER)]
	return t, ok
}

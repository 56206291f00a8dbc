package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Options configure a Session.
type Options struct {
	// Config is the [mqtt] configuration section.
	Config Config
	// Thing is the thing name: the MQTT client ID and the {thing} of every
	// topic.
	Thing string
	// Certificate returns the current identity. It is called before every
	// connect, so a renewed certificate is picked up. Nil only for a
	// plaintext development broker.
	Certificate func() (*tls.Certificate, error)
	// Queue is the durable buffer drained by the session.
	Queue Queue
	// Subscriptions are QoS 1 filters (≤ 50), e.g. cmd/tcu/{thing}/request/+.
	Subscriptions []string
	// Handler receives inbound messages, one at a time in arrival order,
	// on paho's router goroutine: it must return at once (it blocks the
	// reading of the connection, PUBACKs of our own publishes included).
	// Acknowledgement is manual: the broker gets the PUBACK only when the
	// handler (or whoever it hands the message to) calls Message.Ack. A
	// message never acknowledged is redelivered by the broker (persistent
	// session) after the next reconnect. Acknowledgement is manual for
	// every message of the session: anything else that subscribes on it
	// (paho callbacks included) must call Ack too, or the broker's window
	// of unacknowledged messages (mosquitto 20, AWS IoT 100) fills and it
	// stops delivering, commands included.
	Handler func(Message)
	// OnConnect, if set, is called after every connect once the
	// subscriptions are in place (Publish works), on the session's
	// goroutine: it must return at once.
	OnConnect func()
	// Logger is required.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StateDir keeps what adaptive keep-alive learned per network
	// (uplink-keepalive.json); empty = memory only.
	StateDir string
}

// Stats is a snapshot of the session counters.
type Stats struct {
	Connected       bool
	Connects        uint64 // successful connects
	Reconnects      uint64 // successful connects after the first
	ConnectFailures uint64
	AuthFailures    uint64
	Published       uint64 // messages handed to the broker
	Acked           uint64 // messages acknowledged (PUBACK)
	AckedRecords    uint64 // buffer records acknowledged
	ReleasedRecords uint64 // records returned to the buffer unacknowledged
	DroppedRecords  uint64 // undecodable or oversize records dropped
	BytesPublished  uint64
	Received        uint64 // inbound messages
	Inflight        int64  // messages awaiting PUBACK now
	// KeepAliveSwitches counts clean reconnects made to apply a changed
	// keep-alive (not in Reconnects).
	KeepAliveSwitches uint64
	// LastError is the most recent connect failure or connection loss
	// (empty until one happened).
	LastError string
}

type counters struct {
	connects, reconnects, connectFailures, authFailures atomic.Uint64
	published, acked, ackedRecords, released, dropped   atomic.Uint64
	bytes, received                                     atomic.Uint64
	inflight                                            atomic.Int64
	kaSwitches                                          atomic.Uint64
	drainLoops, idleWaits                               atomic.Uint64 // drain loop iterations, idle waits (tests)
	lastErr                                             atomic.Pointer[string]
}

// topicSet holds the device's own topics.
type topicSet struct{ telemetry, events, status string }

// Session is the agent's one MQTT session. Create it with New; Run owns
// the connection until its context ends.
type Session struct {
	opts    Options
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	topics  topicSet
	tls     *tls.Config
	rate    *limiter // publishes/s, inbound included
	backlog *limiter // backlog records/s
	boff    backoff.Policy

	mu   sync.Mutex
	conn *conn // guarded by mu; nil while offline
	// changed is closed and replaced on every change of conn and every
	// refused identity (guarded by mu): waiters block on it instead of
	// polling.
	changed chan struct{}
	subsOK  bool // guarded by mu; subscriptions confirmed by SUBACK
	// subsPausedUntil: after a SUBACK refusal subscriptions wait (guarded by mu).
	subsPausedUntil time.Time
	rare            map[string]time.Time // guarded by mu; last time logRare logged a message

	// hooks are the run-time overrides of profile_hooks.go.
	hooks hooks
	// noEagerBatch turns adaptive batching off (tests compare).
	noEagerBatch bool
	// learner is the adaptive keep-alive; nil when off.
	learner *kaLearner
	// kaSwitched is when the drain last reconnected for a keep-alive
	// (kaswitch.go); switched: the connection before this one ended so
	// (both Run's goroutine only).
	kaSwitched time.Time
	switched   bool
	// swallowed: lease consumed a Ready signal (drain goroutine only).
	swallowed bool
	// testBeforeIdle, if set, runs just before the drain's idle wait;
	// quiet: only an append or ctx can end this wait.
	testBeforeIdle func(quiet bool)

	st counters
}

// New validates opts and returns a Session; it does no I/O.
func New(opts Options) (*Session, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("uplink config: %w", err)
	}
	if err := validThing(opts.Thing); err != nil {
		return nil, err
	}
	if opts.Queue == nil || opts.Logger == nil {
		return nil, errors.New("uplink: queue and logger are required")
	}
	if len(opts.Subscriptions) > AWSMaxSubscriptions {
		return nil, fmt.Errorf("uplink: %d subscriptions, limit %d", len(opts.Subscriptions), AWSMaxSubscriptions)
	}
	for _, f := range opts.Subscriptions {
		if err := validFilter(f); err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Session{opts: opts, cfg: cfg, log: opts.Logger, now: opts.Now, changed: make(chan struct{})}
	s.topics = cfg.streamTopics(opts.Thing)
	if cfg.tlsEnabled() {
		tc, err := tlsConfig(cfg, opts.Certificate)
		if err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
		tc.Time = opts.Now // certificate validity is judged on the agent's clock
		s.tls = tc
	}
	// Rates and the connect spacing use the monotonic clock: a wall clock
	// corrected backwards (GNSS, NTP) must not stall publishing.
	s.rate = newPublishLimiter(cfg.MaxPublishRate, int64(cfg.MaxThroughput), time.Now)
	s.backlog = newLimiter(cfg.BacklogRate, time.Now)
	s.boff = backoff.Policy{Base: cfg.BackoffInitial.Std(), Max: cfg.BackoffMax.Std(), Rand: rand.Int64N}
	s.hooks.init(cfg)
	if cfg.AdaptiveKeepAlive {
		s.learner = newKALearner(opts.StateDir, opts.Logger)
	}
	return s, nil
}

func validThing(t string) error {
	if t == "" || len(t) > 128 {
		return fmt.Errorf("uplink: thing name %q must be 1–128 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-') {
			return fmt.Errorf("uplink: thing name %q has %q (allowed: a-zA-Z0-9:_-)", t, r)
		}
	}
	return nil
}

// Run connects, drains the queue and reconnects until ctx is done. On
// cancel it waits up to ShutdownGrace for in-flight PUBACKs, publishes the
// offline status and disconnects. It returns nil.
func (s *Session) Run(ctx context.Context) error {
	var (
		last     time.Time
		lastErr  error
		attempt  int
		authSeen string
	)
	quickNext := false
	for first := true; ; first = false {
		wait := s.nextDelay(first, attempt, lastErr)
		if quickNext {
			wait, quickNext = 0, false
		}
		if !last.IsZero() {
			wait = max(wait, minConnectSpacing-time.Since(last))
		}
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
		last = time.Now()
		c, err := s.dial(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.switched = false // the next connect ends an outage: a reconnect
			s.st.connectFailures.Add(1)
			s.st.setLastError(err)
			lastErr = err
			attempt++
			if errors.Is(err, ErrAuth) {
				s.st.authFailures.Add(1)
				s.notify()
				if err.Error() != authSeen { // log once per distinct cause
					s.log.Error("mqtt identity refused", "broker", s.cfg.Broker, "thing", s.opts.Thing, "err", err, "retry_in", s.cfg.AuthBackoff.Std())
					authSeen = err.Error()
				}
			} else if attempt&(attempt-1) == 0 { // 1st, 2nd, 4th, 8th... failure
				s.log.Warn("mqtt connect failed", "broker", s.cfg.Broker, "attempt", attempt, "err", err)
			}
			continue
		}
		attempt, lastErr, authSeen = 0, nil, ""
		err = s.serve(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errKeepAliveSwitch) {
			// Not an outage: reconnect at once with the new keep-alive.
			s.st.kaSwitches.Add(1)
			s.log.Info("mqtt reconnecting to apply a new keep-alive", "keep_alive", c.ka, "new_keep_alive", s.keepAliveTarget())
			s.switched, quickNext = true, true
			continue
		}
		quick := (pathLoss(err) || pathLoss(c.dial.lastError())) && time.Since(last) >= min(quickReconnectAfter, c.ka)
		s.log.Warn("mqtt connection lost", "broker", s.cfg.Broker, "err", err, "reconnect_now", quick)
		s.st.setLastError(err)
		if quick {
			// The path failed, not the broker: reconnect at once (the
			// connect spacing still applies). Failures from here on
			// back off as usual.
			quickNext = true
		}
	}
}

// nextDelay is the wait before the next connect attempt: jittered on the
// first attempt after start, long after an identity refusal, full-jitter
// exponential otherwise.
func (s *Session) nextDelay(first bool, attempt int, lastErr error) time.Duration {
	switch {
	case first:
		if j := s.cfg.FirstConnectJitter.Std(); j > 0 {
			return time.Duration(s.boff.Rand(int64(j)))
		}
		return 0
	case errors.Is(lastErr, ErrAuth):
		half := s.cfg.AuthBackoff.Std() / 2
		return half + time.Duration(s.boff.Rand(int64(half)))
	case localNetworkDown(lastErr):
		// No route or no DNS: the attempt fails on the device without
		// reaching the broker, so poll often to reconnect promptly when
		// the network returns (still jittered across the fleet).
		b := s.boff
		b.Max = min(b.Max, networkPoll)
		return b.Delay(attempt)
	}
	return s.boff.Delay(attempt)
}

// minConnectSpacing keeps CONNECTs of one client ID over 1 s apart as
// the broker sees them (AWS: 1 CONNECT/s), with a margin for handshake
// time differences.
const minConnectSpacing = 1100 * time.Millisecond

// networkPoll caps the backoff window while the local network is down.
const networkPoll = 30 * time.Second

// localNetworkDown reports a failure that never reached the broker: no
// route to it or no name resolution.
func localNetworkDown(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETDOWN)
}

// dial makes one connection attempt.
func (s *Session) dial(ctx context.Context) (*conn, error) {
	var cert *tls.Certificate
	if s.tls != nil && s.opts.Certificate != nil {
		var err error
		if cert, err = s.opts.Certificate(); err != nil {
			return nil, fmt.Errorf("%w: load client certificate: %v", ErrAuth, err)
		}
		if err := checkValidity(cert, s.now()); err != nil {
			return nil, err
		}
	}
	c := &conn{lost: make(chan struct{}), pahoDone: make(chan struct{}), window: make(chan struct{}, s.cfg.InflightWindow),
		ka: s.connKeepAlive(), watch: newLinkWatch(), drained: make(chan struct{}, 1)}
	cd, err := connect(ctx, connectParams{
		cfg: s.cfg, clientID: s.opts.Thing, tls: s.tls, clean: false, manualAck: true,
		keepAlive: c.ka, watch: c.watch,
		will:   &will{topic: s.topics.status, payload: s.statusPayload("offline")},
		onMsg:  s.inbound,
		onLost: func(err error) { c.fail(err); close(c.pahoDone) },
	})
	if err != nil && notYetValid(err) && clockBehind(cert, s.now()) {
		// Not an identity problem: retry with the normal backoff until
		// the clock is set.
		return nil, fmt.Errorf("broker certificate not valid at local time %s: system clock is behind our own certificate's issue date: %v",
			s.now().UTC().Format(time.RFC3339), err)
	}
	if err != nil {
		return nil, err
	}
	if s.learner != nil {
		c.net = s.learner.key()
		if k := s.learner.interval(c.net, c.ka); k < c.ka {
			c.probe = k
		}
	}
	c.connected = cd
	c.since = s.now()
	return c, nil
}

func (s *Session) statusPayload(state string) []byte {
	b := []byte(`{"v":1,"device":`)
	b = strconv.AppendQuote(b, s.opts.Thing)
	b = append(b, `,"status":`...)
	b = strconv.AppendQuote(b, state)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, s.now().UnixMilli(), 10)
	return append(b, '}')
}

// Message is one inbound message.
type Message struct {
	Topic   string
	Payload []byte
	// Duplicate is the MQTT DUP flag: the broker delivered this message
	// before (and got no PUBACK for it).
	Duplicate bool
	ack       func()
}

// Ack sends the message's PUBACK (QoS 1); later calls do nothing. An
// acknowledgement after the connection it arrived on was lost is dropped
// by paho; the broker then redelivers the message on the next connection.
func (m Message) Ack() {
	if m.ack != nil {
		m.ack()
	}
}

func (s *Session) inbound(_ mqtt.Client, m mqtt.Message) {
	// Inbound publishes count against the same limit; take never blocks
	// for long, but it runs on the router goroutine, so only bookkeeping.
	s.rate.take()
	s.st.received.Add(1)
	if s.opts.Handler == nil {
		m.Ack() // nobody will: do not leave it unacknowledged forever
		return
	}
	s.opts.Handler(Message{Topic: m.Topic(), Payload: m.Payload(), Duplicate: m.Duplicate(), ack: m.Ack})
}

// setConn sets the current connection (nil: offline) and wakes the
// waiters of state.
func (s *Session) setConn(c *conn) {
	s.mu.Lock()
	s.conn = c
	s.notifyLocked()
	s.mu.Unlock()
}

// notify wakes the waiters of state.
func (s *Session) notify() {
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Session) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// state returns the current connection (nil while offline) and a channel
// closed at the next change of it or the next refused identity.
func (s *Session) state() (*conn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.changed
}

// Connected reports whether the session is online.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// Stats returns a snapshot of the counters.
func (s *Session) Stats() Stats {
	return Stats{
		Connected: s.Connected(), Connects: s.st.connects.Load(), Reconnects: s.st.reconnects.Load(),
		ConnectFailures: s.st.connectFailures.Load(), AuthFailures: s.st.authFailures.Load(),
		Published: s.st.published.Load(), Acked: s.st.acked.Load(), AckedRecords: s.st.ackedRecords.Load(),
		ReleasedRecords: s.st.released.Load(), DroppedRecords: s.st.dropped.Load(),
		BytesPublished: s.st.bytes.Load(), Received: s.st.received.Load(), Inflight: s.st.inflight.Load(),
		KeepAliveSwitches: s.st.kaSwitches.Load(),
		LastError:         s.st.lastError(),
	}
}

func (c *counters) setLastError(err error) {
	if err != nil {
		msg := err.Error()
		c.lastErr.Store(&msg)
	}
}

func (c *counters) lastError() string {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Publish sends payload to topic at QoS 1 and waits for the PUBACK. It
// fails with ErrNotConnected while offline. It shares the in-flight
// window and the publish rate with the drain.
func (s *Session) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := validTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > s.cfg.MaxPayload {
		return fmt.Errorf("publish %s: payload %d bytes exceeds %d", topic, len(payload), s.cfg.MaxPayload)
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	return s.publishWait(ctx, c, topic, payload, false)
}

// connKeepAlive is the keep-alive of the next connection.
func (s *Session) connKeepAlive() time.Duration {
	return s.keepAliveTarget()
}

package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// connectParams describe one connection attempt.
type connectParams struct {
	cfg      Config
	clientID string
	tls      *tls.Config // nil for plaintext
	clean    bool
	// manualAck: inbound messages are handed over in arrival order on one
	// goroutine and acknowledged only by Message.Ack (the session's
	// durable command intake). Otherwise paho acknowledges each message
	// when its handler returns.
	manualAck bool
	will      *will
	onMsg     mqtt.MessageHandler
	onLost    func(error)
	// keepAlive overrides cfg.KeepAlive when not zero (profiles, adaptive
	// keep-alive, tests).
	keepAlive time.Duration
	// watch is told about every read on the connection (dead-link
	// detection); nil for none.
	watch *linkWatch
}

type will struct {
	topic   string
	payload []byte
}

// connected is an established paho client plus its dialer.
type connected struct {
	client  mqtt.Client
	dial    *dialer
	present bool
}

// connect makes exactly one MQTT connection attempt (no 3.1 fallback, no
// paho retries, no paho persistence) and classifies failures: ErrAuth for
// identity problems, otherwise a network or broker error.
func connect(ctx context.Context, p connectParams) (*connected, error) {
	u, err := url.Parse(p.cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("parse broker url: %w", err)
	}
	d := &dialer{tls: p.tls, timeout: p.cfg.ConnectTimeout.Std(), watch: p.watch}
	ka := p.cfg.KeepAlive.Std()
	if p.keepAlive > 0 {
		ka = p.keepAlive
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := mqtt.NewClientOptions()
	o.AddBroker("tcp://" + u.Host) // the custom dialer does TLS itself
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return d.dial(dctx, u.Host) })
	o.SetClientID(p.clientID)
	o.SetProtocolVersion(4)
	o.SetCleanSession(p.clean)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetStore(nopStore{})
	o.SetOrderMatters(p.manualAck)
	o.SetAutoAckDisabled(p.manualAck)
	if p.watch != nil {
		// The session pings itself (linkwatch.go): paho's keep-alive
		// goroutine would wake every 5 s whatever the keep-alive. paho
		// then writes 0 in CONNECT; the socket wrapper puts ka there.
		o.SetKeepAlive(0)
		d.connectKA = uint16(min(ka/time.Second, 65535))
	} else {
		o.SetKeepAlive(ka)
		o.SetPingTimeout(pingWait(ka))
	}
	o.SetConnectTimeout(p.cfg.ConnectTimeout.Std())
	o.SetWriteTimeout(p.cfg.AckTimeout.Std())
	if p.will != nil {
		o.SetBinaryWill(p.will.topic, p.will.payload, 1, true)
	}
	if p.onMsg != nil {
		o.SetDefaultPublishHandler(p.onMsg)
	}
	if p.onLost != nil {
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { p.onLost(err) })
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		cancel()
		<-tok.Done() // bounded by ConnectTimeout; the dial is cancelled
	}
	if err := tok.Error(); err != nil {
		return nil, classifyConnect(err, tok.(*mqtt.ConnectToken).ReturnCode(), d.lastError(), p.tls != nil && d.last() != nil)
	}
	if ctx.Err() != nil {
		c.Disconnect(0)
		return nil, ctx.Err()
	}
	return &connected{client: c, dial: d, present: tok.(*mqtt.ConnectToken).SessionPresent()}, nil
}

// classifyConnect turns a failed CONNECT into a clear error. afterTLS
// means the TLS handshake had completed: a broker that then closes the
// connection before CONNACK is refusing the identity (AWS IoT and
// mosquitto may close without an alert), per aws-iot-reference.md §6.3.
func classifyConnect(err error, rc byte, ioErr error, afterTLS bool) error {
	switch rc {
	case packets.ErrRefusedNotAuthorised, packets.ErrRefusedBadUsernameOrPassword:
		return fmt.Errorf("%w: %w: broker refused connect: %w", ErrAuth, ErrRefused, err)
	case packets.ErrRefusedIDRejected:
		return fmt.Errorf("%w: %w: broker rejected client id: %w", ErrAuth, ErrRefused, err)
	}
	if errors.Is(err, ErrAuth) {
		return err
	}
	if isRemoteCertAlert(ioErr) {
		return fmt.Errorf("%w: %w: broker rejected the client certificate: %w", ErrAuth, ErrRefused, ioErr)
	}
	if afterTLS && rc == packets.ErrNetworkError && (errors.Is(ioErr, io.EOF) || errors.Is(ioErr, syscall.ECONNRESET)) {
		return fmt.Errorf("%w: %w: broker closed the connection before CONNACK (client certificate or policy refused): %w", ErrAuth, ErrRefused, ioErr)
	}
	if ioErr != nil && !strings.Contains(err.Error(), ioErr.Error()) {
		return fmt.Errorf("connect: %w (%v)", err, ioErr)
	}
	return fmt.Errorf("connect: %w", err)
}

// subscribe subscribes filters at QoS 1, at most 8 per SUBSCRIBE, and
// checks every SUBACK return code.
func subscribe(ctx context.Context, c mqtt.Client, filters []string, timeout time.Duration) error {
	for i := 0; i < len(filters); i += AWSMaxFiltersPerSubscribe {
		chunk := filters[i:min(i+AWSMaxFiltersPerSubscribe, len(filters))]
		m := make(map[string]byte, len(chunk))
		for _, f := range chunk {
			m[f] = 1
		}
		tok := c.SubscribeMultiple(m, nil)
		if err := waitToken(ctx, tok, timeout); err != nil {
			return fmt.Errorf("subscribe %v: %w", chunk, err)
		}
		for f, code := range tok.(*mqtt.SubscribeToken).Result() {
			if code == 0x80 || code > 2 {
				return fmt.Errorf("subscribe %s: %w (suback 0x%02x)", f, errSubscribeRefused, code)
			}
		}
	}
	return nil
}

// errSubscribeRefused is a SUBACK failure code: the policy does not
// allow the filter.
var errSubscribeRefused = errors.New("broker refused")

// errTimeout is returned when a token does not complete in time.
var errTimeout = errors.New("timed out")

func waitToken(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errTimeout
	}
}

// validTopic checks a publish topic: no wildcards, ≤ 256 bytes.
func validTopic(topic string) error {
	if topic == "" || len(topic) > 256 || strings.ContainsAny(topic, "+#\x00") {
		return fmt.Errorf("invalid topic %q", topic)
	}
	return nil
}

// validFilter checks a subscription filter.
func validFilter(f string) error {
	if f == "" || len(f) > 256 {
		return fmt.Errorf("invalid filter %q", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("invalid filter %q: misplaced #", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("invalid filter %q: misplaced +", f)
		}
	}
	return nil
}

// nopStore disables paho's own persistence: durability lives in the
// buffer, and the session re-publishes unacknowledged records itself.
type nopStore struct{}

func (nopStore) Open()                             {}
func (nopStore) Put(string, packets.ControlPacket) {}
func (nopStore) Get(string) packets.ControlPacket  { return nil }
func (nopStore) All() []string                     { return nil }
func (nopStore) Del(string)                        {}
func (nopStore) Close()                            {}
func (nopStore) Reset()                            {}

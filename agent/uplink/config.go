package uplink

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// AWS IoT Core limits (aws-iot-reference.md §6.1). Config values are
// validated against them.
const (
	// AWSMaxInflight is the broker's cap on unacknowledged QoS 1 publishes.
	AWSMaxInflight = 100
	// AWSMaxPublishRate is the per-connection publish rate, inbound and
	// outbound together.
	AWSMaxPublishRate = 100
	// AWSMaxPayload is the largest PUBLISH payload the broker accepts.
	AWSMaxPayload = 128 * 1024
	// AWSMaxFiltersPerSubscribe is the number of topic filters one
	// SUBSCRIBE packet may carry.
	AWSMaxFiltersPerSubscribe = 8
	// AWSMaxSubscriptions is the number of subscriptions per connection.
	AWSMaxSubscriptions = 50
	// AWSMaxThroughput is the per-connection throughput (bytes/s); AWS
	// delays the excess.
	AWSMaxThroughput = 512 * 1024
	// AWSMaxTopicBytes and AWSMaxTopicSlashes bound a publish topic,
	// not counting the Basic Ingest prefix $aws/rules/<rule>/.
	AWSMaxTopicBytes   = 256
	AWSMaxTopicSlashes = 7
	// AWSMinKeepAlive and AWSMaxKeepAlive bound the keep-alive interval.
	AWSMinKeepAlive = 30 * time.Second
	AWSMaxKeepAlive = 1200 * time.Second
)

// ALPNProtocol is the ALPN name AWS IoT Core needs for MQTT with a client
// certificate on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

// Encodings of stream batches ([mqtt] encoding).
const (
	// EncodingJSON is the JSON envelope of PRODUCT.md.
	EncodingJSON = "json"
	// EncodingCompact is the compact batch of agent/record/wire
	// (docs/wire.md).
	EncodingCompact = "compact"
)

// basicIngestRe matches the Basic Ingest prefix $aws/rules/<rule>/.
var basicIngestRe = regexp.MustCompile(`^\$aws/rules/([a-zA-Z0-9_]{1,128})/`)

// Duration is a time.Duration that reads and writes as a TOML string
// such as "30s" or "2m".
type Duration = units.Duration

// Config is the [mqtt] section of the agent configuration.
type Config struct {
	// Broker is the broker URL: "tls://host:8883", "tls://host:443" (ALPN
	// x-amzn-mqtt-ca is offered on 443) or, only with AllowPlaintext,
	// "tcp://127.0.0.1:1883".
	Broker string `toml:"broker"`
	// AllowPlaintext permits a tcp:// broker (local development only).
	AllowPlaintext bool `toml:"allow_plaintext"`
	// CAFile is a PEM bundle of CAs trusted for the broker certificate.
	// Empty means the system roots.
	CAFile string `toml:"ca_file"`
	// ServerName overrides the TLS server name (SNI and verification).
	ServerName string `toml:"server_name"`
	// KeepAlive is the MQTT keep-alive interval (30s–1200s). With
	// AdaptiveKeepAlive it is the upper bound.
	KeepAlive Duration `toml:"keep_alive"`
	// AdaptiveKeepAlive learns, per network, the longest idle interval
	// the path keeps the connection open (probing up from 30 s, falling
	// back after a silent drop) and pings at that interval; the CONNECT
	// keep-alive stays KeepAlive.
	AdaptiveKeepAlive bool `toml:"adaptive_keep_alive"`
	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNACK).
	ConnectTimeout Duration `toml:"connect_timeout"`
	// AckTimeout is how long a PUBACK may take before the connection is
	// considered broken and re-established.
	AckTimeout Duration `toml:"ack_timeout"`
	// InflightWindow is the number of unacknowledged QoS 1 publishes (≤ 100).
	InflightWindow int `toml:"inflight_window"`
	// MaxPublishRate is publishes per second, inbound messages included (≤ 100).
	MaxPublishRate int `toml:"max_publish_rate"`
	// MaxPayload is the largest message payload in bytes (≤ 128 KiB).
	MaxPayload int `toml:"max_payload"`
	// BatchLatency is the longest a record waits for others to share its
	// message.
	BatchLatency Duration `toml:"batch_latency"`
	// BacklogRate caps records per second published from the backlog
	// (records older than the current connection); 0 means no cap.
	BacklogRate int `toml:"backlog_rate"`
	// FirstConnectJitter spreads the first connect after start over
	// [0, FirstConnectJitter).
	FirstConnectJitter Duration `toml:"first_connect_jitter"`
	// BackoffInitial is the window of the first retry after a connection
	// is lost or an attempt fails; it doubles per failure (full jitter).
	BackoffInitial Duration `toml:"backoff_initial"`
	// BackoffMax caps the backoff window.
	BackoffMax Duration `toml:"backoff_max"`
	// AuthBackoff is the wait after the broker refused the identity
	// (certificate rejected, not authorized): retrying fast cannot help.
	AuthBackoff Duration `toml:"auth_backoff"`
	// ShutdownGrace bounds waiting for in-flight PUBACKs on shutdown.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// TopicPrefix is the prefix of the device topics ("dt/tcu").
	TopicPrefix string `toml:"topic_prefix"`
	// TelemetryTopic and EventsTopic override where stream batches go;
	// "{thing}" is replaced by the thing name. Empty means
	// TopicPrefix/{thing}/telemetry and …/events. A Basic Ingest topic
	// "$aws/rules/<rule>/<topic>" sends them straight to an IoT rule.
	TelemetryTopic string `toml:"telemetry_topic"`
	EventsTopic    string `toml:"events_topic"`
	// Encoding of stream batches: "json" (the envelope) or "compact".
	Encoding string `toml:"encoding"`
	// MaxThroughput caps the bytes/s published on the connection (AWS:
	// 512 KiB/s); 0 means no cap.
	MaxThroughput units.Size `toml:"max_throughput"`
}

// DefaultConfig returns the defaults documented in configs/tcu-agent.toml.
func DefaultConfig() Config {
	return Config{
		Broker:             "tls://127.0.0.1:8883",
		KeepAlive:          Duration(60 * time.Second),
		ConnectTimeout:     Duration(10 * time.Second),
		AckTimeout:         Duration(30 * time.Second),
		InflightWindow:     50,
		MaxPublishRate:     90,
		MaxPayload:         120 * 1024,
		BatchLatency:       Duration(time.Second),
		BacklogRate:        50000,
		FirstConnectJitter: Duration(500 * time.Millisecond),
		BackoffInitial:     Duration(10 * time.Second),
		BackoffMax:         Duration(5 * time.Minute),
		AuthBackoff:        Duration(10 * time.Minute),
		ShutdownGrace:      Duration(2 * time.Second),
		TopicPrefix:        "dt/tcu",
		Encoding:           EncodingJSON,
		MaxThroughput:      AWSMaxThroughput,
	}
}

// Validate reports every problem in c, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("mqtt.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if err := c.validateBroker(); err != nil {
		bad("broker", "%v", err)
	}
	if ka := c.KeepAlive.Std(); ka < AWSMinKeepAlive || ka > AWSMaxKeepAlive {
		bad("keep_alive", "%v is outside %v–%v", ka, AWSMinKeepAlive, AWSMaxKeepAlive)
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout", "must be positive")
	}
	if c.AckTimeout <= 0 {
		bad("ack_timeout", "must be positive")
	}
	if c.InflightWindow < 1 || c.InflightWindow > AWSMaxInflight {
		bad("inflight_window", "%d is outside 1–%d", c.InflightWindow, AWSMaxInflight)
	}
	if c.MaxPublishRate < 1 || c.MaxPublishRate > AWSMaxPublishRate {
		bad("max_publish_rate", "%d is outside 1–%d", c.MaxPublishRate, AWSMaxPublishRate)
	}
	if c.MaxPayload < 1024 || c.MaxPayload > AWSMaxPayload {
		bad("max_payload", "%d is outside 1024–%d", c.MaxPayload, AWSMaxPayload)
	}
	if c.BatchLatency < 0 || c.BacklogRate < 0 || c.FirstConnectJitter < 0 || c.ShutdownGrace < 0 {
		bad("batch_latency", "durations and rates must not be negative")
	}
	if c.BackoffInitial < Duration(time.Second) || c.BackoffMax < c.BackoffInitial {
		bad("backoff_initial", "need 1s ≤ backoff_initial ≤ backoff_max")
	}
	if c.AuthBackoff < Duration(time.Second) {
		bad("auth_backoff", "must be at least 1s")
	}
	if c.TopicPrefix == "" || strings.HasPrefix(c.TopicPrefix, "$") || strings.ContainsAny(c.TopicPrefix, "+#") {
		bad("topic_prefix", "%q is empty, reserved or has wildcards", c.TopicPrefix)
	}
	if c.Encoding != EncodingJSON && c.Encoding != EncodingCompact {
		bad("encoding", "%q is neither %q nor %q", c.Encoding, EncodingJSON, EncodingCompact)
	}
	if c.MaxThroughput != 0 && c.MaxThroughput < units.Size(c.MaxPayload) {
		bad("max_throughput", "%d bytes/s is below max_payload (%d); 0 means no cap", c.MaxThroughput, c.MaxPayload)
	}
	if err := validStreamTopic(c.TelemetryTopic); err != nil {
		bad("telemetry_topic", "%v", err)
	}
	if err := validStreamTopic(c.EventsTopic); err != nil {
		bad("events_topic", "%v", err)
	}
	return errors.Join(errs...)
}

// validStreamTopic checks a telemetry_topic/events_topic template with
// the longest thing name.
func validStreamTopic(t string) error {
	if t == "" {
		return nil
	}
	topic := strings.ReplaceAll(t, "{thing}", strings.Repeat("x", 128))
	if m := basicIngestRe.FindString(topic); m != "" {
		topic = topic[len(m):]
	} else if strings.HasPrefix(topic, "$") {
		return fmt.Errorf("%q: the only reserved topics allowed are Basic Ingest $aws/rules/<rule>/<topic>", t)
	}
	switch {
	case topic == "" || strings.ContainsAny(topic, "+#") || strings.Contains(topic, "//") || strings.HasSuffix(topic, "/"):
		return fmt.Errorf("%q is empty, has wildcards or empty levels", t)
	case len(topic) > AWSMaxTopicBytes:
		return fmt.Errorf("%q is longer than %d bytes with a 128-character thing name", t, AWSMaxTopicBytes)
	case strings.Count(topic, "/") > AWSMaxTopicSlashes:
		return fmt.Errorf("%q has more than %d slashes", t, AWSMaxTopicSlashes)
	}
	return nil
}

// streamTopics returns the device's topics for thing.
func (c Config) streamTopics(thing string) topicSet {
	base := c.TopicPrefix + "/" + thing + "/"
	ts := topicSet{telemetry: base + "telemetry", events: base + "events", status: base + "status"}
	if c.TelemetryTopic != "" {
		ts.telemetry = strings.ReplaceAll(c.TelemetryTopic, "{thing}", thing)
	}
	if c.EventsTopic != "" {
		ts.events = strings.ReplaceAll(c.EventsTopic, "{thing}", thing)
	}
	return ts
}

func (c Config) validateBroker() error {
	u, err := url.Parse(c.Broker)
	if err != nil {
		return fmt.Errorf("parse %q: %w", c.Broker, err)
	}
	if u.Host == "" || u.Port() == "" {
		return fmt.Errorf("%q needs host:port", c.Broker)
	}
	switch u.Scheme {
	case "tls", "ssl", "mqtts":
		return nil
	case "tcp", "mqtt":
		if !c.AllowPlaintext {
			return fmt.Errorf("%q is plaintext; set allow_plaintext for local development", c.Broker)
		}
		return nil
	}
	return fmt.Errorf("scheme %q not supported (tls or tcp)", u.Scheme)
}

func (c Config) tlsEnabled() bool {
	u, err := url.Parse(c.Broker)
	return err == nil && u.Scheme != "tcp" && u.Scheme != "mqtt"
}

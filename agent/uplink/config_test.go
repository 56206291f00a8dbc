package uplink

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"plaintext needs opt-in", func(c *Config) { c.Broker = "tcp://127.0.0.1:1883" }, "mqtt.broker"},
		{"plaintext allowed", func(c *Config) { c.Broker, c.AllowPlaintext = "tcp://127.0.0.1:1883", true }, ""},
		{"port 443", func(c *Config) { c.Broker = "tls://x.iot.eu-central-1.amazonaws.com:443" }, ""},
		{"no port", func(c *Config) { c.Broker = "tls://host" }, "mqtt.broker"},
		{"websocket", func(c *Config) { c.Broker = "wss://host:443" }, "mqtt.broker"},
		{"keepalive low", func(c *Config) { c.KeepAlive = Duration(29 * time.Second) }, "mqtt.keep_alive"},
		{"keepalive high", func(c *Config) { c.KeepAlive = Duration(1201 * time.Second) }, "mqtt.keep_alive"},
		{"window above AWS", func(c *Config) { c.InflightWindow = 101 }, "mqtt.inflight_window"},
		{"rate above AWS", func(c *Config) { c.MaxPublishRate = 101 }, "mqtt.max_publish_rate"},
		{"payload above AWS", func(c *Config) { c.MaxPayload = 128*1024 + 1 }, "mqtt.max_payload"},
		{"reserved prefix", func(c *Config) { c.TopicPrefix = "$aws/x" }, "mqtt.topic_prefix"},
		{"backoff below 1s", func(c *Config) { c.BackoffInitial = Duration(time.Millisecond) }, "mqtt.backoff_initial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want error naming %s", err, tt.want)
			}
		})
	}
}

func TestTLSConfigALPNAndSNI(t *testing.T) {
	c := DefaultConfig()
	c.Broker = "tls://abc-ats.iot.eu-central-1.amazonaws.com:443"
	tc, err := tlsConfig(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != "abc-ats.iot.eu-central-1.amazonaws.com" || len(tc.NextProtos) != 1 || tc.NextProtos[0] != ALPNProtocol || tc.MinVersion < 0x0303 {
		t.Errorf("tls config: server name %q, alpn %v, min version %x", tc.ServerName, tc.NextProtos, tc.MinVersion)
	}
	c.Broker = "tls://abc-ats.iot.eu-central-1.amazonaws.com:8883"
	if tc, _ := tlsConfig(c, nil); len(tc.NextProtos) != 0 {
		t.Errorf("ALPN %v on 8883, want none", tc.NextProtos)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := backoff.Policy{Base: time.Second, Max: 8 * time.Second, Rand: func(n int64) int64 { return n - 1 }}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for attempt, w := range want {
		if got := b.Delay(attempt); got != w-1 {
			t.Errorf("delay(%d) upper bound = %v, want %v", attempt, got+1, w)
		}
	}
	b.Rand = func(int64) int64 { return 0 }
	if got := b.Delay(3); got != 0 {
		t.Errorf("full jitter lower bound = %v, want 0", got)
	}
}

func TestLimiterSpacing(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(100, func() time.Time { return now })
	var waits []time.Duration
	for range 3 {
		waits = append(waits, l.reserve(1))
	}
	l.take() // an inbound message
	if got := l.reserve(1); got != 40*time.Millisecond {
		t.Errorf("after 3 reserves and 1 inbound, wait %v, want 40ms", got)
	}
	if waits[0] != 0 || waits[1] != 10*time.Millisecond || waits[2] != 20*time.Millisecond {
		t.Errorf("waits = %v", waits)
	}
}

func TestTopicMatch(t *testing.T) {
	tests := []struct {
		f, topic string
		want     bool
	}{
		{"$aws/certificates/create/json/accepted", "$aws/certificates/create/json/accepted", true},
		{"$aws/certificates/create/json/+", "$aws/certificates/create/json/rejected", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/+", "a/b/c", false},
		{"a/b", "a/c", false},
	}
	for _, tt := range tests {
		if got := topicMatch(tt.f, tt.topic); got != tt.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", tt.f, tt.topic, got, tt.want)
		}
	}
}

func TestNextDelayClasses(t *testing.T) {
	s, err := New(Options{Config: DefaultConfig(), Thing: "T1", Queue: nopQueue{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.boff.Rand = func(n int64) int64 { return n - 1 } // upper bound of each window
	noRoute := fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)})
	tests := []struct {
		name    string
		first   bool
		attempt int
		err     error
		want    time.Duration
	}{
		{"first connect jitter", true, 0, nil, 500 * time.Millisecond},
		{"after a loss", false, 0, nil, 10 * time.Second},
		{"third failure", false, 3, errors.New("connection refused"), 80 * time.Second},
		{"capped", false, 20, errors.New("connection refused"), 5 * time.Minute},
		{"identity refused", false, 1, fmt.Errorf("%w: x", ErrAuth), 10 * time.Minute},
		{"no route: poll", false, 20, noRoute, networkPoll},
		{"no dns: poll", false, 20, &net.DNSError{Err: "no such host", Name: "x"}, networkPoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.nextDelay(tt.first, tt.attempt, tt.err) + 1; got != tt.want {
				t.Errorf("nextDelay upper bound = %v, want %v", got, tt.want)
			}
		})
	}
}

type nopQueue struct{}

func (nopQueue) Lease(int, int) ([]Record, error) { return nil, nil }
func (nopQueue) Ack(...uint64) error              { return nil }
func (nopQueue) Release(...uint64)                {}
func (nopQueue) Ready() <-chan struct{}           { return nil }

func TestConfigValidateNewKeys(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"compact", func(c *Config) { c.Encoding = EncodingCompact }, ""},
		{"bad encoding", func(c *Config) { c.Encoding = "cbor" }, "mqtt.encoding"},
		{"empty encoding", func(c *Config) { c.Encoding = "" }, "mqtt.encoding"},
		{"no throughput cap", func(c *Config) { c.MaxThroughput = 0 }, ""},
		{"throughput below payload", func(c *Config) { c.MaxThroughput = 1000 }, "mqtt.max_throughput"},
		{"basic ingest", func(c *Config) { c.TelemetryTopic = "$aws/rules/tcu_telemetry/dt/tcu/{thing}/telemetry" }, ""},
		{"basic ingest events", func(c *Config) { c.EventsTopic = "$aws/rules/ev/{thing}" }, ""},
		{"other reserved", func(c *Config) { c.TelemetryTopic = "$aws/things/{thing}/x" }, "mqtt.telemetry_topic"},
		{"rule name", func(c *Config) { c.TelemetryTopic = "$aws/rules/bad-name/x" }, "mqtt.telemetry_topic"},
		{"wildcard", func(c *Config) { c.EventsTopic = "dt/+/events" }, "mqtt.events_topic"},
		{"too deep", func(c *Config) { c.EventsTopic = "$aws/rules/r/a/b/c/d/e/f/g/h/i" }, "mqtt.events_topic"},
		{"too long", func(c *Config) { c.EventsTopic = strings.Repeat("x", 129) + "/{thing}" }, "mqtt.events_topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want error naming %s", err, tt.want)
			}
		})
	}
}

func TestStreamTopics(t *testing.T) {
	c := DefaultConfig()
	if got := c.streamTopics("car1"); got != (topicSet{"dt/tcu/car1/telemetry", "dt/tcu/car1/events", "dt/tcu/car1/status"}) {
		t.Errorf("default topics %+v", got)
	}
	c.TelemetryTopic = "$aws/rules/tcu_telemetry/dt/tcu/{thing}/telemetry"
	if got := c.streamTopics("car1"); got.telemetry != "$aws/rules/tcu_telemetry/dt/tcu/car1/telemetry" || got.events != "dt/tcu/car1/events" {
		t.Errorf("basic ingest topics %+v", got)
	}
}

// TestSampleConfigDefaults: every [mqtt] key is documented in
// configs/tcu-agent.toml, and its commented-out "# key = value" defaults
// equal DefaultConfig.
func TestSampleConfigDefaults(t *testing.T) {
	text, err := os.ReadFile("../../configs/tcu-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(text, []byte("\n[mqtt]\n"))
	if start < 0 {
		t.Fatal("no [mqtt] section")
	}
	section := text[start+1:]
	if end := bytes.Index(section[1:], []byte("\n[")); end >= 0 {
		section = section[:end+1]
	}
	commented := regexp.MustCompile(`(?m)^# ([a-z_]+ = .*)$`)
	set := regexp.MustCompile(`(?m)^([a-z_]+) = `)
	var lines []string
	for _, m := range commented.FindAllSubmatch(section, -1) {
		lines = append(lines, string(m[1]))
	}
	var doc map[string]any
	if err := toml.Unmarshal([]byte(strings.Join(lines, "\n")), &doc); err != nil {
		t.Fatalf("commented defaults: %v", err)
	}
	defText, err := toml.Marshal(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := toml.Unmarshal(defText, &defaults); err != nil {
		t.Fatal(err)
	}
	for k, v := range doc {
		if fmt.Sprint(defaults[k]) != fmt.Sprint(v) {
			t.Errorf("configs/tcu-agent.toml: # %s = %v, DefaultConfig has %v", k, v, defaults[k])
		}
	}
	for _, m := range set.FindAllSubmatch(section, -1) {
		doc[string(m[1])] = true
	}
	for k := range defaults {
		if _, ok := doc[k]; !ok {
			t.Errorf("mqtt.%s is not documented in configs/tcu-agent.toml", k)
		}
	}
}

// TestThroughputCap: with a fake clock, publishes under the 512 KiB/s cap
// never put more than one message above the cap into any interval, and
// the publish rate still holds for small messages.
func TestThroughputCap(t *testing.T) {
	now := time.Unix(0, 0)
	l := newPublishLimiter(90, 512*1024, func() time.Time { return now })
	const size = 100 * 1024
	var sent int
	start := now
	for range 60 { // 6 MB of messages, each waits its reservation
		d := l.reserve(1)
		d = max(d, l.bytes.reserve(size))
		now = now.Add(d)
		sent += size
		if elapsed := now.Sub(start).Seconds(); float64(sent-size) > 512*1024*elapsed+1 {
			t.Fatalf("%d bytes by %.3fs: above 512 KiB/s plus one message", sent, elapsed)
		}
	}
	if rate := float64(sent-size) / now.Sub(start).Seconds(); rate < 0.99*512*1024 || rate > 512*1024 {
		t.Errorf("sustained %.0f bytes/s, want just under %d", rate, 512*1024)
	}
	// Small messages: the 90/s publish rate binds, not the bytes.
	now = now.Add(time.Hour)
	start = now
	for range 90 {
		d := max(l.reserve(1), l.bytes.reserve(100))
		now = now.Add(d)
	}
	if got := now.Sub(start); got < 980*time.Millisecond || got > time.Second {
		t.Errorf("90 small publishes took %v, want ≈ 1s at 90/s", got)
	}
	if l.byteDelay() != 0 {
		t.Errorf("byteDelay %v after small messages", l.byteDelay())
	}
	if newPublishLimiter(90, 0, time.Now).bytes != nil {
		t.Error("max_throughput 0 should mean no byte cap")
	}
}

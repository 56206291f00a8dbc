package uplink

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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

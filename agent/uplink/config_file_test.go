package uplink_test

import (
	"strings"
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
)

// TestNewKeysNameFileLine: bad values of the [mqtt] keys added for issue
// 20 are reported with file:line and key by the agent's config loader.
func TestNewKeysNameFileLine(t *testing.T) {
	text := `version = 1
[agent]
thing_name = "car1"
[mqtt]
broker = "tcp://127.0.0.1:1883"
allow_plaintext = true
encoding = "cbor"
max_throughput = "1KiB"
telemetry_topic = "$aws/things/x"
events_topic = "$aws/rules/tcu_events/dt/tcu/{thing}/events"
`
	cfg := uplink.DefaultConfig()
	_, err := config.Parse("/etc/tcu-agent/tcu-agent.toml", []byte(text), config.Extensions{"mqtt": &cfg})
	if err == nil {
		t.Fatal("Parse accepted bad values")
	}
	for _, want := range []string{
		"tcu-agent.toml:7: [mqtt] mqtt.encoding",
		"tcu-agent.toml:8: [mqtt] mqtt.max_throughput",
		"tcu-agent.toml:9: [mqtt] mqtt.telemetry_topic",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "events_topic") {
		t.Errorf("valid Basic Ingest events_topic refused: %v", err)
	}
	good := strings.NewReplacer(`"cbor"`, `"compact"`, `"1KiB"`, `"256KiB"`, `"$aws/things/x"`, `""`).Replace(text)
	cfg = uplink.DefaultConfig()
	if _, err := config.Parse("a.toml", []byte(good), config.Extensions{"mqtt": &cfg}); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if cfg.Encoding != uplink.EncodingCompact || cfg.MaxThroughput != 256*1024 {
		t.Errorf("decoded %q %d", cfg.Encoding, cfg.MaxThroughput)
	}
}

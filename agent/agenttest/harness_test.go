package agenttest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStreamGapsAndDuplicates checks the seq bookkeeping the system tests
// rely on, with seqs near the buffer's clock floor.
func TestStreamGapsAndDuplicates(t *testing.T) {
	t.Parallel()
	const base = 1795309083744554
	tests := []struct {
		name     string
		msgs     [][]uint64 // record seqs per message, as offsets from base
		wantGaps []Gap
		wantDups int
	}{
		{name: "contiguous", msgs: [][]uint64{{0, 1, 2}, {3}}},
		{name: "duplicates only", msgs: [][]uint64{{0, 1}, {1, 2}, {0}}, wantDups: 2},
		{name: "gaps", msgs: [][]uint64{{0, 1}, {4}, {5, 9}}, wantGaps: []Gap{{base + 2, base + 3}, {base + 6, base + 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStream("car")
			for _, m := range tt.msgs {
				var recs []string
				for _, off := range m {
					recs = append(recs, `{"seq":`+strconv.FormatUint(base+off, 10)+`,"ts":1,"kind":"telemetry"}`)
				}
				s.collect(t, "dt/tcu/car/telemetry", []byte(`{"v":1,"device":"car","records":[`+strings.Join(recs, ",")+`]}`))
			}
			if diff := cmp.Diff(tt.wantGaps, s.Gaps()); diff != "" {
				t.Errorf("Gaps() mismatch (-want +got):\n%s", diff)
			}
			if got := s.Duplicates(); got != tt.wantDups {
				t.Errorf("Duplicates() = %d, want %d", got, tt.wantDups)
			}
		})
	}
}

// TestConfigFromDemo derives a config from the real demo config: every
// demo path is replaced and the overrides land where they belong.
func TestConfigFromDemo(t *testing.T) {
	t.Parallel()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	demo, err := os.ReadFile(filepath.Join(root, "configs", "demo.toml"))
	if err != nil {
		t.Fatal(err)
	}
	p := paths{dir: "/x/", stateDir: "/x/state", busSock: "/x/vbus.sock", ctlSock: "/x/ctl.sock", broker: "127.0.0.1:1"}
	opts := Options{Thing: "t-1", TelemetryInterval: "100ms", BackoffMax: "1s", ExtraEvents: []string{"Vehicle.Speed"}}
	got, err := configFrom(string(demo), opts, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`state_dir = "/x/state"`, `address = "/x/vbus.sock"`, `ctl_socket = "/x/ctl.sock"`,
		`broker = "tcp://127.0.0.1:1"`, `thing_name = "t-1"`, "[telemetry]\ninterval = \"100ms\"",
		`backoff_max = "1s"`, "events = [\n  \"Vehicle.Speed\",\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("derived config lacks %q", want)
		}
	}
	if strings.Contains(got, "/tmp/tcu-demo") || strings.Contains(got, "demo-car-001") {
		t.Errorf("derived config still refers to the demo's paths or thing:\n%s", got)
	}
	if _, err := configFrom("version = 1\n", opts, p); err == nil {
		t.Error("configFrom accepted a template without the demo's keys")
	}
}

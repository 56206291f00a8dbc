package uplink_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest/natproxy"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestAdaptiveKeepAliveLearnsNATTimeout, on a scaled time line: the
// NAT forgets mappings idle for 3 s; the keep-alive is 8 s, the shortest
// adaptive interval 1 s. The session probes up (1 s, 1.5 s, 2.25 s, …),
// loses the connection silently when a probe passes 3 s, falls back and
// settles just under 3 s; the result is saved in the state dir and a new
// session starts from it.
func TestAdaptiveKeepAliveLearnsNATTimeout(t *testing.T) {
	restore := uplink.SetAdaptiveMin(time.Second)
	defer restore()
	cloud := startCloud(t, devcloud.Limits{})
	nat, err := natproxy.New(cloud.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	nat.SetIdleTimeout(3*time.Second, natproxy.Blackhole)
	dir := t.TempDir()
	cfg := fastConfig(nat.Addr())
	cfg.AdaptiveKeepAlive = true
	newSession := func() *uplink.Session {
		s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-AK", Queue: uplinktest.NewQueue(), Logger: testLogger(t), StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		uplink.SetTestKeepAlive(s, 8*time.Second)
		return s
	}
	s := newSession()
	stop := runSession(t, s)
	eventually(t, 90*time.Second, "the interval to settle under the NAT timeout", func() bool {
		good, ceiling, next := uplink.Learned(s)
		return ceiling > 0 && good >= 2*time.Second && next == good
	})
	good, ceiling, _ := uplink.Learned(s)
	stop()
	if good >= 3*time.Second || ceiling <= 3*time.Second {
		t.Fatalf("learned %v (failed at %v), want just under the NAT's 3 s", good, ceiling)
	}
	if nat.Stats().Blackholed == 0 {
		t.Fatal("no probe ever lost a mapping: the test does not test the fallback")
	}
	b, err := os.ReadFile(filepath.Join(dir, "uplink-keepalive.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]struct {
		Good time.Duration `json:"good"`
	}
	if err := json.Unmarshal(b, &saved); err != nil || len(saved) != 1 {
		t.Fatalf("state %s: %v", b, err)
	}
	for _, n := range saved {
		if n.Good != good {
			t.Errorf("saved %v, learned %v", n.Good, good)
		}
	}
	// A new session on the same network starts from what was learned.
	s2 := newSession()
	if g, _, next := uplink.Learned(s2); g != good || next != good {
		t.Errorf("new session: good %v next %v, want %v", g, next, good)
	}
	t.Logf("learned %v (NAT 3 s, failed at %v) after %d silent drops; state %s", good, ceiling, nat.Stats().Blackholed, b)
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct{ name, table, want string }{
		{"lowest metric default", `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
wlan0	00000000	0100A8C0	0003	0	0	600	00000000	0	0	0
wwan0	00000000	40404040	0003	0	0	100	00000000	0	0	0
`, "wwan0 via 64.64.64.64"},
		{"gateway byte order", "Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT\neth0 00000000 0102A8C0 0003 0 0 0 00000000 0 0 0\n", "eth0 via 192.168.2.1"},
		{"no default route", "Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT\neth0 0000A8C0 00000000 0001 0 0 0 00FFFFFF 0 0 0\n", "default"},
		{"garbage", "x\ny z\n", "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := uplink.ParseRoute(bufio.NewScanner(strings.NewReader(tc.table))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

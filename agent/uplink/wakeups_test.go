package uplink_test

import (
	"bufio"
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
)

// contextSwitches sums voluntary and involuntary context switches over
// every thread of this process.
func contextSwitches(t *testing.T) (vol, invol uint64) {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		t.Skipf("no /proc/self/task: %v", err)
	}
	for _, p := range tasks {
		f, err := os.Open(p)
		if err != nil {
			continue // thread exited
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				vol += n
			case "nonvoluntary_ctxt_switches":
				invol += n
			}
		}
		_ = f.Close()
	}
	return vol, invol
}

// TestIdleSessionWakeups measures the process wake-ups (context
// switches of all threads, as docs/perf/idle.md counts them) of an idle,
// connected session — nothing to send, parked keep-alive 1200 s — with
// the broker (Debian's mosquitto, mTLS) in another process, so that the
// count is the session's and the Go runtime's alone. Opt-in:
//
//	UPLINK_IDLE_WAKEUPS=2m go test -run TestIdleSessionWakeups -v ./agent/uplink/
func TestIdleSessionWakeups(t *testing.T) {
	window, err := time.ParseDuration(os.Getenv("UPLINK_IDLE_WAKEUPS"))
	if err != nil || window <= 0 {
		t.Skip("opt-in measurement: UPLINK_IDLE_WAKEUPS=<duration>")
	}
	m := startMosquitto(t)
	id, err := m.ca.MintThing("TCU-IDLE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsConfig(t, m.addr, m.ca.CertPEM)
	cfg.KeepAlive = uplink.Duration(uplink.AWSMaxKeepAlive)
	s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-IDLE", Queue: uplinktest.NewQueue(), Logger: testLogger(t),
		Subscriptions: []string{"cmd/tcu/TCU-IDLE/request/+"},
		Certificate:   func() (*tls.Certificate, error) { return &id.Certificate, nil }})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "online status acked", func() bool { return s.Stats().Acked >= 1 })
	time.Sleep(5 * time.Second) // settle
	v0, i0 := contextSwitches(t)
	start := time.Now()
	time.Sleep(window)
	v1, i1 := contextSwitches(t)
	secs := time.Since(start).Seconds()
	st := s.Stats()
	if st.Reconnects != 0 || !st.Connected {
		t.Errorf("the idle connection was lost: %+v", st)
	}
	t.Logf("idle session, keep-alive %v, %v: %.2f wake-ups/s (%d voluntary + %d involuntary context switches)",
		cfg.KeepAlive.Std(), time.Duration(secs*float64(time.Second)).Round(time.Second), float64(v1-v0+i1-i0)/secs, v1-v0, i1-i0)
}

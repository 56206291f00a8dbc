package agent_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

// degradedReason returns the reason the status gives for component, if any.
func degradedReason(st ctl.Status, component string) string {
	for _, d := range st.Health.Degraded {
		if d.Component == component {
			return d.Reason
		}
	}
	return ""
}

// TestMissingClaimWaitsThenProvisionsOnReload: a fresh install without the
// claim files does not end Run (it used to exit 1 and crash-loop): capture
// runs, the status names the missing claim, and once the files are there a
// Reload (SIGHUP) provisions at once, well before the periodic re-check.
func TestMissingClaimWaitsThenProvisionsOnReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newProvisionRig(t, ctx, "")
	cfg, sec, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	claim := sec.Provisioning.ClaimCert
	if err := os.Rename(claim, claim+".away"); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: r.log.With("program", "agent")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }() // stopped below
	sock := filepath.Join(r.dir, "ctl.sock")
	status := func() ctl.Status {
		qctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		st, _ := ctl.Query(qctx, sock)
		return st
	}
	var queued int64
	waitFor(t, "a waiting-for-claim status while capturing", 30*time.Second, func() bool {
		st := status()
		queued = 0
		for _, q := range st.Queues {
			queued += q.Records
		}
		return strings.Contains(degradedReason(st, "cloud"), "waiting for the claim") && queued > 0
	})
	select {
	case err := <-done:
		t.Fatalf("Run ended while waiting for the claim: %v", err)
	default:
	}
	if err := os.Rename(claim+".away", claim); err != nil {
		t.Fatal(err)
	}
	a.Reload()
	start := time.Now()
	// Well inside the 30 s periodic re-check: the Reload did it.
	waitFor(t, "telemetry from the provisioned thing after Reload", 20*time.Second, r.published)
	t.Logf("waiting with %d records captured; provisioned and published %v after Reload", queued, time.Since(start).Round(time.Millisecond))
	if reason := degradedReason(status(), "cloud"); reason != "" {
		t.Errorf("cloud still degraded after provisioning: %s", reason)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestEndpointsRetryInsteadOfFailing: a regular file is in the control
// socket's place and the metrics port is taken. Neither ends or blocks the
// agent: both are reported degraded and retried, and come up once the
// cause is gone.
func TestEndpointsRetryInsteadOfFailing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	mustWrite(t, sock, "not a socket")
	src, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	// No broker: not the demo's address, where a running `make demo`
	// would get this agent taking over its client id.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	noBroker := gone.Addr().String()
	_ = gone.Close()
	text := strings.NewReplacer(
		"/tmp/tcu-demo/ctl.sock", sock,
		"/tmp/tcu-demo/", dir+"/",
		"127.0.0.1:18830", noBroker,
		"[health]", "[health]\nmetrics_addr = \""+busy.Addr().String()+"\"",
	).Replace(string(src))
	mustWrite(t, filepath.Join(dir, "tcu-agent.toml"), text)
	dbcText, err := os.ReadFile("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "vehicle.dbc"), string(dbcText))
	cfg, sec, err := agent.LoadConfig(filepath.Join(dir, "tcu-agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }() // stopped below
	waitFor(t, "both endpoints reported unavailable", 30*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, "ctl_socket unavailable") && strings.Contains(l, "metrics unavailable")
	})
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	_ = busy.Close()
	var st ctl.Status
	waitFor(t, "the control socket up", 60*time.Second, func() bool {
		qctx, c := context.WithTimeout(ctx, time.Second)
		defer c()
		st, err = ctl.Query(qctx, sock)
		return err == nil
	})
	waitFor(t, "the metrics endpoint up and both degradations cleared", 60*time.Second, func() bool {
		qctx, c := context.WithTimeout(ctx, time.Second)
		defer c()
		st, err = ctl.Query(qctx, sock)
		if err != nil || degradedReason(st, "ctl_socket") != "" || degradedReason(st, "metrics") != "" {
			return false
		}
		c2, err := net.Dial("tcp", busy.Addr().String())
		if err == nil {
			_ = c2.Close()
		}
		return err == nil
	})
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

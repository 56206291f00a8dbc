package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

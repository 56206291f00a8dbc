package agent_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// TestJobsOverSession runs the agent's jobs wiring end to end in process:
// the dev cloud's strict Jobs service on its broker, the agent's
// own MQTT session; a signed bundle is applied (live, or by the restart
// the agent asks for, done here as cmd/tcu-agent does it), proven and
// reported SUCCEEDED, with the status, the shadow and the audit event
// showing it.
func TestJobsOverSession(t *testing.T) {
	t.Parallel()
	const thing = "jobs-car-001"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cloud, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cloud.Close() }()

	var evMu sync.Mutex
	var events, shadow []string
	cloud.Subscribe("dt/tcu/"+thing+"/events", func(_ string, p []byte) { evMu.Lock(); events = append(events, string(p)); evMu.Unlock() })
	cloud.Subscribe("$aws/things/"+thing+"/shadow/update", func(_ string, p []byte) { evMu.Lock(); shadow = append(shadow, string(p)); evMu.Unlock() })

	seed := sha256.Sum256([]byte("jobs e2e fleet key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	stateDir := filepath.Join(dir, "state")
	ctlPath := filepath.Join(dir, "ctl.sock")
	conf := func(interval string) string {
		return fmt.Sprintf(`version = 1
[agent]
thing_name = %q
state_dir = %q
[health]
ctl_socket = %q
[telemetry]
interval = %q
[mqtt]
broker = "tcp://%s"
allow_plaintext = true
[jobs]
public_keys = [%q]
proving_time = "1s"
`, thing, stateDir, ctlPath, interval, cloud.Addr(), base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
	}
	base := filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, base, conf("1s"))

	data, err := bundle.Build([]string{"tcu-agent.toml"}, map[string][]byte{"tcu-agent.toml": []byte(conf("2s"))})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	svc := cloud.Jobs()
	addJob(t, svc, thing, "cfg-1", map[string]any{"type": bundle.Type, "version": "2026-12-07.1", "sha256": h, "size": len(data),
		"signature": bundle.Sign(key, "2026-12-07.1", h), "inline": base64.StdEncoding.EncodeToString(data)})
	addJob(t, svc, thing, "cmd-1", map[string]any{"type": "tcu.command", "name": "door.unlock"})

	// One "process": the startup hook's choice, then Run until the job
	// ends or the agent asks for a restart.
	var a *agent.Agent
	for start := 1; ; start++ {
		if start > 3 {
			t.Fatal("more than 3 starts")
		}
		store, err := abstore.Open(agent.ConfigStoreDir(stateDir))
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Boot(jobs.MaxBoots)
		if err != nil {
			t.Fatal(err)
		}
		path := base
		if slot, _ := st.Active(); slot != "" {
			path = store.ConfigPath(slot)
		}
		cfg, sec, err := agent.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		a, err = agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log.With("start", start), Version: "e2e", BaseFile: base})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		runErr := make(chan error, 1)
		go func() { runErr <- a.Run(runCtx) }()
		restarted := false
		select {
		case <-a.RestartRequested():
			restarted = true
		case <-waitDone(ctx, svc, thing, "cmd-1"):
		}
		if !restarted {
			defer func() { stop(); <-runErr }()
			break
		}
		stop()
		if err := <-runErr; err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"cfg-1", "cmd-1"} {
		e, _ := svc.Execution(thing, id)
		want := map[string]string{"cfg-1": "SUCCEEDED", "cmd-1": "REJECTED"}[id]
		if e.Status != want {
			t.Errorf("%s: %s %v, want %s", id, e.Status, e.StatusDetails, want)
		}
	}
	if e, _ := svc.Execution(thing, "cmd-1"); e.StatusDetails["reason"] != "unsupported_type" {
		t.Errorf("cmd-1 reason %q, want unsupported_type", e.StatusDetails["reason"])
	}
	var st ctl.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err = ctl.Query(ctx, ctlPath)
		if err == nil && st.Config != nil && st.Config.Version == "2026-12-07.1" && st.Config.SHA256 == h && !st.Config.Trial {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status config %+v (%v), want the bundle", st.Config, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		evMu.Lock()
		ev, sh := strings.Join(events, "\n"), strings.Join(shadow, "\n")
		evMu.Unlock()
		if strings.Contains(ev, `"config_job"`) && strings.Contains(ev, `"cmd-1"`) && strings.Contains(sh, h) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit events %q / shadow %q, want the config_job events and the bundle hash", ev, sh)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addJob queues a job for thing on the dev cloud's Jobs service.
func addJob(t *testing.T, svc *devcloud.Jobs, thing, id string, doc map[string]any) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Create(devcloud.JobSpec{ID: id, Things: []string{thing}, Document: b}); err != nil {
		t.Fatal(err)
	}
}

// waitDone is closed when job id is terminal.
func waitDone(ctx context.Context, svc *devcloud.Jobs, thing, id string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for ctx.Err() == nil {
			if e, _ := svc.Execution(thing, id); jobs.Terminal(e.Status) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return ch
}

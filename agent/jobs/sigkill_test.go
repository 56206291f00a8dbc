package jobs_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/agenttest"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
)

// syncBuf is a goroutine-safe output buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestCrashLoopSIGKILLRealBinary runs the real tcu-agent on a bundle on
// trial and SIGKILLs it after each start: the first MaxBoots starts run
// the bundle, the next one rolls back to the --config file (crash_loop
// recorded for the job), and the configuration it runs always loads.
func TestCrashLoopSIGKILLRealBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := agenttest.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	pub, _, _ := ed25519.GenerateKey(nil)
	conf := func(interval string) string {
		return fmt.Sprintf(`version = 1
[agent]
thing_name = "TCU-KILL"
state_dir = %q
[health]
ctl_socket = %q
[telemetry]
interval = %q
[mqtt]
broker = "tcp://127.0.0.1:1"
allow_plaintext = true
[jobs]
public_keys = [%q]
`, stateDir, filepath.Join(dir, "ctl.sock"), interval, base64.StdEncoding.EncodeToString(pub))
	}
	base := filepath.Join(dir, "tcu-agent.toml")
	if err := os.WriteFile(base, []byte(conf("1s")), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := abstore.Open(filepath.Join(stateDir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := bundle.Parse(mustBuild(t, map[string]string{"tcu-agent.toml": conf("3s")}), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := store.Stage(es)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.BeginTrial(slot, abstore.Meta{JobID: "j-kill", Version: "v9"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for start := 1; start <= jobs.MaxBoots+1; start++ {
		var out syncBuf
		cmd := exec.CommandContext(ctx, bin, "run", "--config", base)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "GOMEMLIMIT=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "agent started") {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("start %d: agent did not start:\n%s", start, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		onBundle := strings.Contains(out.String(), "running a configuration bundle")
		if start <= jobs.MaxBoots && !onBundle {
			t.Errorf("start %d ran the --config file, want the bundle on trial:\n%s", start, out.String())
		}
		if start > jobs.MaxBoots {
			if onBundle {
				t.Errorf("start %d still ran the bundle, want the rollback:\n%s", start, out.String())
			}
			if !strings.Contains(out.String(), "configuration bundle rolled back") {
				t.Errorf("start %d did not log the rollback:\n%s", start, out.String())
			}
		}
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Trial != nil || st.Good != "" || st.Result == nil || st.Result.JobID != "j-kill" ||
		st.Result.Status != "FAILED" || st.Result.Reason != bundle.ReasonCrashLoop {
		t.Errorf("state after the crash loop %+v result %+v, want base config and FAILED crash_loop", st, st.Result)
	}
}

func mustBuild(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var names []string
	bs := map[string][]byte{}
	for n, c := range files {
		names = append(names, n)
		bs[n] = []byte(c)
	}
	b, err := bundle.Build(names, bs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

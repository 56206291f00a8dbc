package jobs_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"github.com/tcu-agent/tcu-agent/agent/jobs/jobstest"
)

var fleetKey = func() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("jobs runner test fleet key"))
	return ed25519.NewKeyFromSeed(seed[:])
}()

// device is one simulated agent installation: a state dir with its A/B
// store and base config, talking to svc. Each start is one process.
type device struct {
	t        *testing.T
	svc      *jobstest.Service
	stateDir string
	base     string
	live     bool        // Apply succeeds in process
	healthy  atomic.Bool // what Healthy reports
	applied  []string    // paths applied, in order (guarded by mu)
	outcomes []jobs.Outcome
	restarts atomic.Int32
	mu       sync.Mutex
	step     func(string) error // the store's fault hook for the next start
	stop     context.CancelFunc // ends the current start
	fired    atomic.Bool        // the crash hook fired
}

func newDevice(t *testing.T) *device {
	t.Helper()
	d := &device{t: t, svc: jobstest.New("TCU-1"), stateDir: t.TempDir(), live: true}
	d.healthy.Store(true)
	d.base = filepath.Join(t.TempDir(), "tcu-agent.toml")
	if err := os.WriteFile(d.base, []byte(d.toml("1s")), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *device) toml(interval string) string {
	return fmt.Sprintf("version = 1\n[agent]\nstate_dir = %q\n[telemetry]\ninterval = %q\n", d.stateDir, interval)
}

// check is the agent's check: the config loader, and state_dir unchanged.
func (d *device) check(path string) error {
	cfg, err := config.Load(path, nil)
	if err != nil {
		return err
	}
	if cfg.Agent.StateDir != d.stateDir {
		return &config.Error{File: path, Line: 1, Key: "agent.state_dir", Msg: "a bundle may not change state_dir"}
	}
	return nil
}

// start boots one process: Boot, load the active config (it must be
// valid), run the jobs client until the process "exits" (restart, crash
// or stop). It returns a func that waits for the exit.
func (d *device) start(ctx context.Context) (exited <-chan struct{}) {
	t := d.t
	store, err := abstore.Open(filepath.Join(d.stateDir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Boot(jobs.MaxBoots)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	slot, _ := st.Active()
	path := store.ConfigPath(slot)
	if path == "" {
		path = d.base
	}
	if err := d.check(path); err != nil {
		t.Fatalf("boot loads an invalid config %s: %v", path, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	store.Step = d.step
	run, err := jobs.NewRunner(jobs.RunnerOptions{
		Store: store, Keys: []ed25519.PublicKey{fleetKey.Public().(ed25519.PublicKey)}, BasePath: d.base,
		Fetch:       bundle.FetchOptions{MaxSize: 1 << 20},
		ProvingTime: 40 * time.Millisecond, UnhealthyGrace: 30 * time.Millisecond, HealthEvery: 5 * time.Millisecond,
		Check: d.check,
		Apply: func(_ context.Context, p string) (bool, error) {
			d.mu.Lock()
			d.applied = append(d.applied, p)
			d.mu.Unlock()
			return d.live, nil
		},
		Restart: func(string) { d.restarts.Add(1); cancel() },
		Healthy: func() (bool, string) {
			if d.healthy.Load() {
				return true, "ok"
			}
			return false, "driver can0 decode errors 40% > 5%"
		},
		Report: func(o jobs.Outcome) { d.mu.Lock(); d.outcomes = append(d.outcomes, o); d.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := jobs.New(jobs.Options{Thing: "TCU-1", Publisher: d.svc, Handler: run, Connects: d.svc.Connects,
		Resync: 5 * time.Millisecond, RequestTimeout: 200 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.svc.Deliver = c.HandleMessage
	d.stop = cancel // before the run: the crash hook calls it
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	return done
}

func (d *device) crashAt(step string, n int) {
	seen := 0
	d.step = func(s string) error {
		if s != step {
			return nil
		}
		if seen++; seen != n {
			return nil
		}
		d.fired.Store(true)
		d.svc.SetOffline(true) // the process is dead: nothing more is sent
		d.stop()
		return errors.New("simulated crash")
	}
}

// job builds a signed tcu.config.v1 inline document for files.
func job(t *testing.T, files map[string]string, tamper func(m map[string]any)) map[string]any {
	t.Helper()
	names := make([]string, 0, len(files))
	bs := map[string][]byte{}
	for n, c := range files {
		names = append(names, n)
		bs[n] = []byte(c)
	}
	data, err := bundle.Build(names, bs)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	m := map[string]any{"type": bundle.Type, "version": "v2", "sha256": h, "size": len(data),
		"signature": bundle.Sign(fleetKey, "v2", h), "inline": base64.StdEncoding.EncodeToString(data)}
	if tamper != nil {
		tamper(m)
	}
	return m
}

func waitStatus(t *testing.T, svc *jobstest.Service, id string) jobstest.Execution {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		e, _ := svc.Get(id)
		if jobs.Terminal(e.Status) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s %v", id, e.Status, e.StatusDetails)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRunner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, status, reason, detail string
		doc                          func(d *device) map[string]any
		unhealthy, notLive           bool
	}{
		{name: "good", status: "SUCCEEDED", doc: func(d *device) map[string]any {
			return job(t, map[string]string{"tcu-agent.toml": d.toml("2s"), "dbc/v.dbc": "VERSION \"\"\n"}, nil)
		}},
		{name: "good with restart", status: "SUCCEEDED", notLive: true, doc: func(d *device) map[string]any {
			return job(t, map[string]string{"tcu-agent.toml": d.toml("2s")}, nil)
		}},
		{name: "config error", status: "REJECTED", reason: "invalid_config", detail: "tcu-agent.toml:5: telemetry.interval",
			doc: func(d *device) map[string]any {
				return job(t, map[string]string{"tcu-agent.toml": d.toml("1ms")}, nil)
			}},
		{name: "state_dir changed", status: "REJECTED", reason: "invalid_config", detail: "state_dir",
			doc: func(d *device) map[string]any {
				return job(t, map[string]string{"tcu-agent.toml": "version = 1\n[agent]\nstate_dir = \"/tmp/elsewhere\"\n"}, nil)
			}},
		{name: "bad hash", status: "REJECTED", reason: "bad_hash", doc: func(d *device) map[string]any {
			return job(t, map[string]string{"tcu-agent.toml": d.toml("2s")}, func(m map[string]any) {
				h := strings.Repeat("ab", 32)
				m["sha256"], m["signature"] = h, bundle.Sign(fleetKey, "v2", h)
			})
		}},
		{name: "bad signature", status: "REJECTED", reason: "bad_signature", doc: func(d *device) map[string]any {
			_, other, _ := ed25519.GenerateKey(nil)
			return job(t, map[string]string{"tcu-agent.toml": d.toml("2s")}, func(m map[string]any) {
				m["signature"] = bundle.Sign(other, "v2", m["sha256"].(string))
			})
		}},
		{name: "command passthrough", status: "REJECTED", reason: "unsupported_type", doc: func(*device) map[string]any {
			return map[string]any{"type": "tcu.command", "name": "door.unlock"}
		}},
		{name: "unhealthy", status: "FAILED", reason: "unhealthy", detail: "decode errors", unhealthy: true,
			doc: func(d *device) map[string]any {
				return job(t, map[string]string{"tcu-agent.toml": d.toml("2s")}, nil)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDevice(t)
			d.live = !tc.notLive
			d.healthy.Store(!tc.unhealthy)
			d.svc.Add("j1", tc.doc(d))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			exited := d.start(ctx)
			if tc.notLive {
				<-exited
				if d.restarts.Load() != 1 {
					t.Fatalf("restarts %d, want 1", d.restarts.Load())
				}
				exited = d.start(ctx)
			}
			e := waitStatus(t, d.svc, "j1")
			// The outcome is reported (and the store's result cleared)
			// just after the terminal update is accepted.
			for deadline := time.Now().Add(10 * time.Second); ; {
				d.mu.Lock()
				n := len(d.outcomes)
				d.mu.Unlock()
				if n > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			// ClearResult follows Report.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				store, _ := abstore.Open(filepath.Join(d.stateDir, "config"))
				if st, err := store.Load(); err == nil && st.Result == nil {
					break
				}
			}
			cancel()
			<-exited
			if e.Status != tc.status || e.StatusDetails["reason"] != tc.reason || !strings.Contains(e.StatusDetails["detail"], tc.detail) {
				t.Errorf("ended %s %v, want %s reason=%q detail~%q", e.Status, e.StatusDetails, tc.status, tc.reason, tc.detail)
			}
			store, _ := abstore.Open(filepath.Join(d.stateDir, "config"))
			st, err := store.Load()
			if err != nil {
				t.Fatal(err)
			}
			if st.Trial != nil || st.Result != nil {
				t.Errorf("store left with trial %+v result %+v", st.Trial, st.Result)
			}
			if tc.status == "SUCCEEDED" {
				if st.Good == "" || st.GoodMeta.Version != "v2" || st.GoodMeta.JobID != "j1" {
					t.Errorf("good %q %+v, want the new bundle", st.Good, st.GoodMeta)
				}
			} else if st.Good != "" {
				t.Errorf("good %q, want the base config still", st.Good)
			}
			if tc.unhealthy {
				d.mu.Lock()
				if n := len(d.applied); n != 2 || d.applied[1] != d.base {
					t.Errorf("applied %v, want the bundle then the base config back", d.applied)
				}
				d.mu.Unlock()
			}
			d.mu.Lock()
			if len(d.outcomes) != 1 || d.outcomes[0].Status != tc.status || d.outcomes[0].JobID != "j1" {
				t.Errorf("outcomes %+v", d.outcomes)
			}
			d.mu.Unlock()
			if v := d.svc.Violations(); len(v) > 0 {
				t.Errorf("violations %v", v)
			}
		})
	}
}

// TestKillAtEveryStep crashes the device after each durable step of a good
// job (each write, rename and fsync of the A/B store), for a live apply
// and for one with a restart; the next start must load a valid config and
// the job must end SUCCEEDED with the new bundle as the last-known-good.
func TestKillAtEveryStep(t *testing.T) {
	t.Parallel()
	steps := []string{"slot-written", "slot-removed", "slot-renamed", "slot-synced", "state-written", "state-renamed", "state-synced"}
	type crash struct {
		step string
		n    int
	}
	var crashes []crash
	for _, s := range steps {
		for n := 1; n <= 3; n++ { // states: trial begun, commit, result cleared
			if strings.HasPrefix(s, "slot-") && n > 1 {
				continue
			}
			crashes = append(crashes, crash{s, n})
		}
	}
	for _, live := range []bool{true, false} {
		for _, c := range crashes {
			t.Run(fmt.Sprintf("live=%v/%s#%d", live, c.step, c.n), func(t *testing.T) {
				t.Parallel()
				d := newDevice(t)
				d.live = live
				d.svc.Add("j1", job(t, map[string]string{"tcu-agent.toml": d.toml("2s"), "dbc/v.dbc": "VERSION \"\"\n"}, nil))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				d.crashAt(c.step, c.n)
				for boots := 0; ; boots++ {
					if boots > 6 {
						t.Fatal("more than 6 starts")
					}
					exited := d.start(ctx)
					select {
					case <-exited:
						// crashed or restarted: start again; after the crash,
						// online and without faults
						if d.fired.Load() {
							d.step = nil
							d.svc.SetOffline(false)
						}
						continue
					case <-waitTerminal(d.svc, "j1"):
					}
					d.stop()
					<-exited
					break
				}
				if !d.fired.Load() {
					t.Fatalf("the crash at %s#%d never happened", c.step, c.n)
				}
				e, _ := d.svc.Get("j1")
				if e.Status != "SUCCEEDED" {
					t.Fatalf("job %s %v, want SUCCEEDED", e.Status, e.StatusDetails)
				}
				store, _ := abstore.Open(filepath.Join(d.stateDir, "config"))
				st, err := store.Load()
				if err != nil {
					t.Fatal(err)
				}
				if st.Good == "" || st.GoodMeta.JobID != "j1" || st.Trial != nil {
					t.Errorf("state %+v, want the bundle committed", st)
				}
				if err := d.check(store.ConfigPath(st.Good)); err != nil {
					t.Errorf("last-known-good does not load: %v", err)
				}
			})
		}
	}
}

func waitTerminal(svc *jobstest.Service, id string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		// Generous: 34 parallel subtests of TestKillAtEveryStep, each
		// polling every few milliseconds, share a loaded 2-core CI
		// machine with the rest of `make test`; 15 s was not always
		// enough, and a timeout here reads as "the crash never happened".
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			if e, _ := svc.Get(id); jobs.Terminal(e.Status) {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return ch
}

// TestCrashLoopRollsBack: a configuration whose starts never become
// healthy is rolled back by the store after MaxBoots starts, and the job
// ends FAILED crash_loop with the base config active.
func TestCrashLoopRollsBack(t *testing.T) {
	t.Parallel()
	d := newDevice(t)
	d.live = false
	d.svc.Add("j1", job(t, map[string]string{"tcu-agent.toml": d.toml("2s")}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-d.start(ctx) // stages, begins the trial, restarts
	// Each start dies before proving (a crash in the new config).
	d.healthy.Store(false)
	for range jobs.MaxBoots {
		store, _ := abstore.Open(filepath.Join(d.stateDir, "config"))
		st, err := store.Boot(jobs.MaxBoots)
		if err != nil || st.Trial == nil {
			t.Fatalf("boot: %+v %v", st, err)
		}
	}
	d.healthy.Store(true)
	exited := d.start(ctx) // this Boot exceeds MaxBoots: rollback
	e := waitStatus(t, d.svc, "j1")
	cancel()
	<-exited
	if e.Status != "FAILED" || e.StatusDetails["reason"] != "crash_loop" {
		t.Errorf("job %s %v, want FAILED crash_loop", e.Status, e.StatusDetails)
	}
	store, _ := abstore.Open(filepath.Join(d.stateDir, "config"))
	st, _ := store.Load()
	if st.Good != "" || st.Trial != nil || st.Result != nil {
		t.Errorf("state %+v, want the base config active and the result cleared", st)
	}
}

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// profileConfig is appended to the demo config: the shipped profiles with
// times short enough for a test.
const profileConfig = `
[profile]
min_dwell = "1s"

  [[profile.rule]]
  profile = "driving"
  ignition = "on"

  [[profile.rule]]
  profile = "deep_sleep"
  ignition = "off"
  off_for = "6s"

  [[profile.rule]]
  profile = "parked"
  ignition = "off"
  for = "1s"

  [[profile.settings]]
  name = "driving"

  [[profile.settings]]
  name = "parked"
  telemetry_interval = "2s"
  keep_alive = "60s"
    [[profile.settings.signal]]
    match = "*"
    heartbeat = "10m"

  [[profile.settings]]
  name = "deep_sleep"
  telemetry_interval = "5s"
  keep_alive = "20m"
  publish = ["critical", "event"]
    [[profile.settings.signal]]
    match = "*"
    heartbeat = "1h"

  [profile.battery]
  low = 12.0
  low_for = "1s"
  critical = 11.6
  critical_for = "2s"
  recover = 12.4
  recover_for = "1s"
  hook = ["touch", "HOOKFILE"]
`

// profileEvents collects the profile_change and alarm records at the broker.
type profileEvents struct {
	mu   sync.Mutex
	recs []map[string]any
}

func (p *profileEvents) collect(payload []byte) {
	var env struct {
		Records []map[string]any `json:"records"`
	}
	if json.Unmarshal(payload, &env) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range env.Records {
		if t, _ := r["type"].(string); t == "profile_change" || t == "alarm" {
			p.recs = append(p.recs, r)
		}
	}
}

func (p *profileEvents) has(typ, from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.recs {
		if r["type"] == typ && (from == "" || r["from"] == from) && (to == "" || r["to"] == to) {
			return true
		}
	}
	return false
}

// TestProfilesEndToEnd: the simulated car drives and parks; the agent goes
// driving → parked → deep_sleep on the rules; the battery discharges to
// critical and the guard acts (minimal profile, only critical records
// published, an alarm, the hook); the bus falls asleep and a door command
// still wakes it and is executed.
func TestProfilesEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := &spine{t: t, db: db, seen: map[uint64]bool{}, ctlPath: filepath.Join(dir, "ctl.sock")}

	// The vehicle: one trip, then parked.
	sock := filepath.Join(dir, "vbus.sock")
	bus := canbus.NewVirtual()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = canbus.Serve(ctx, ln, bus) })
	s.vehicle, err = sim.New(sim.Options{Bus: bus.Attach(), DB: db, Scenario: sim.ScenarioDrivePark, Logger: log.With("program", "sim")})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = s.vehicle.Run(ctx) })
	watch := bus.Attach()
	wg.Go(func() { s.watchBus(ctx, watch) })

	s.cloud, err = devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.cloud.Close() }()
	events := &profileEvents{}
	s.cloud.Subscribe("dt/tcu/"+thing+"/events", func(_ string, p []byte) { events.collect(p) })
	var shadowMu sync.Mutex
	reported := map[string]any{}
	s.cloud.Subscribe("$aws/things/"+thing+"/shadow/update", func(_ string, p []byte) {
		var doc struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if json.Unmarshal(p, &doc) == nil {
			shadowMu.Lock()
			for k, v := range doc.State.Reported {
				reported[k] = v
			}
			shadowMu.Unlock()
		}
	})
	shadowHas := func(k, v string) func() bool {
		return func() bool { shadowMu.Lock(); defer shadowMu.Unlock(); return reported[k] == v }
	}

	cfgText, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	hookFile := filepath.Join(dir, "hook-ran")
	r := strings.NewReplacer(
		"/tmp/tcu-demo/state", filepath.Join(dir, "state"),
		"/tmp/tcu-demo/vbus.sock", sock,
		"/tmp/tcu-demo/gnss", filepath.Join(dir, "gnss"),
		"/tmp/tcu-demo/ctl.sock", s.ctlPath,
		"127.0.0.1:18830", s.cloud.Addr(),
		"demo-car-001", thing,
		"HOOKFILE", hookFile,
		// The store closes after 1 s unused: parked, it is closed when
		// the door command comes; the door's new state reopens it.
		"[buffer]\n", "[buffer]\nidle_close = \"1s\"\n",
	)
	cfgPath := filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, cfgPath, r.Replace(string(cfgText)+profileConfig))
	dbcText, err := os.ReadFile("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "vehicle.dbc"), string(dbcText))
	cfg, sec, err := agent.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log.With("program", "agent"), Version: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }() // stopped by cancel
	defer func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20 s of cancel")
		}
	}()

	status := func() ctl.Status {
		st, _ := ctl.Query(ctx, s.ctlPath)
		return st
	}

	// Drive, park, deep sleep — on the rules, reported as events.
	waitFor(t, "the trip (driving)", 60*time.Second, func() bool { return events.has("profile_change", "", "driving") })
	waitFor(t, "parked after the trip", 60*time.Second, func() bool { return events.has("profile_change", "driving", "parked") })
	waitFor(t, "deep sleep 6 s after ignition off", 30*time.Second, func() bool { return events.has("profile_change", "parked", "deep_sleep") })
	st := status()
	if st.Profile == nil || st.Profile.Name != "deep_sleep" || !strings.Contains(st.Profile.Reason, "off for") {
		t.Fatalf("status profile = %+v", st.Profile)
	}
	// The profile's telemetry interval is in effect in the pipeline.
	if st.Profile.TelemetryIntervalSeconds != 5 {
		t.Errorf("telemetry interval in deep_sleep = %vs, want 5s", st.Profile.TelemetryIntervalSeconds)
	}
	waitFor(t, "the profile in the shadow", 15*time.Second, shadowHas("profile", "deep_sleep"))

	// The battery discharges while parked: 0.2 V/s.
	k := s.vehicle.Knobs()
	k.Drain = 720
	s.vehicle.SetKnobs(k)
	waitFor(t, "the battery guard at critical", 60*time.Second, func() bool {
		st := status()
		return st.Profile != nil && st.Profile.Battery == "critical"
	})
	k.Drain = 0
	s.vehicle.SetKnobs(k)
	st = status()
	if p := st.Profile; p.Name != "deep_sleep" || len(p.Publish) != 1 || p.Publish[0] != "critical" || p.Voltage == nil || *p.Voltage >= 11.6 {
		t.Errorf("critical: status profile = %+v", p)
	}
	waitFor(t, "the battery alarm at the broker", 30*time.Second, func() bool { return events.has("alarm", "", "") })
	waitFor(t, "the battery hook", 10*time.Second, func() bool { _, err := os.Stat(hookFile); return err == nil })
	waitFor(t, "the guard in the shadow", 15*time.Second, shadowHas("battery_guard", "critical"))

	// The bus falls asleep; a door command wakes it and is executed: the
	// guard never blocks a command.
	k.Asleep = true
	s.vehicle.SetKnobs(k)
	time.Sleep(500 * time.Millisecond)
	before := s.vehicle.State().Wakeups
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 30*time.Second)
	defer cmdCancel()
	if r := s.command(cmdCtx, "door.lock"); r.Status != "SUCCEEDED" {
		t.Fatalf("door.lock at battery critical on a sleeping bus: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if s.vehicle.State().Wakeups <= before || s.vehicle.State().Lock != sim.Locked || s.lockFrames(1) == 0 {
		t.Errorf("after door.lock: wakeups %d (before %d), lock %d, LOCK frames %d", s.vehicle.State().Wakeups, before, s.vehicle.State().Lock, s.lockFrames(1))
	}
	// Asleep again until the standstill interlock's input is stale (max_age
	// 3 s): door.unlock wakes the bus ([[commands.wake]]), waits for fresh
	// inputs and is executed — waking is allowed at battery critical too.
	k.Asleep = true
	s.vehicle.SetKnobs(k)
	time.Sleep(3500 * time.Millisecond) // let the interlock input go stale
	// Nothing is written while the car sleeps: the buffer's store is
	// closed (idle_close).
	waitFor(t, "the store closed for idleness", 30*time.Second, func() bool { return status().Store.Closed })
	reopens := status().Store.Reopens
	before = s.vehicle.State().Wakeups
	if r := s.command(cmdCtx, "door.unlock"); r.Status != "SUCCEEDED" {
		t.Fatalf("door.unlock at battery critical on a sleeping bus: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if st := s.vehicle.State(); st.Wakeups <= before || st.Lock != sim.Unlocked || s.lockFrames(2) == 0 {
		t.Errorf("after door.unlock: wakeups %d (before %d), lock %d, UNLOCK frames %d", st.Wakeups, before, st.Lock, s.lockFrames(2))
	}
	// The wake-up is counted in the status and the metrics, next to the
	// outcomes (door.lock found fresh inputs after its own frame woke the
	// bus: only door.unlock needed a [[commands.wake]]).
	// The unlock's state change is an event record: it reopens the store.
	waitFor(t, "the store reopened for the door's new state", 20*time.Second, func() bool { return status().Store.Reopens > reopens })
	cs := status().Commands
	if cs.Wakes == 0 || cs.Succeeded < 2 {
		t.Errorf("status commands = %+v, want a wake-up and two successes", cs)
	}
	m, err := a.MetricsText()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("tcu_command_wakes_total %d\n", cs.Wakes), fmt.Sprintf("tcu_commands_total{status=\"SUCCEEDED\"} %d\n", cs.Succeeded)} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

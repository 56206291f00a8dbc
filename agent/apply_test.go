package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// applyRig is an agent on the simulated vehicle's virtual CAN bus, with the
// dev cloud collecting every telemetry record, whose config file the test
// edits and applies with ApplyConfig.
type applyRig struct {
	*spine
	t       *testing.T
	a       *agent.Agent
	dir     string
	cfgPath string
	base    string // the config text the agent started with

	rmu  sync.Mutex
	recs []telemetryRec
}

type telemetryRec struct {
	ts      time.Time
	signals map[string]float64
}

// counterSignal changes with every BODY_STATUS frame (10 Hz): its records
// show whether samples flow.
const counterSignal = "Vehicle.Test.BodyCounter"

const counterBlock = `
  [[driver.signal]]
  name = "` + counterSignal + `"
  source = "BODY_STATUS.BodyCounter"
`

const fanBlock = `
  [[driver.signal]]
  name = "Vehicle.Cabin.HVAC.FanSpeed"
  source = "CLIMATE.HvacFanSpeed"
  heartbeat = "1s"
`

func startApplyRig(t *testing.T, ctx context.Context) *applyRig {
	t.Helper()
	dir := t.TempDir()
	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	r := &applyRig{t: t, dir: dir, spine: &spine{t: t, db: db, seen: map[uint64]bool{}, ctlPath: filepath.Join(dir, "ctl.sock")}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sock := filepath.Join(dir, "vbus.sock")
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	v, ep := startVehicle(t, ctx, db, sock, log)
	r.vehicle = v
	wg.Go(func() { r.watchBus(ctx, ep) })

	r.cloud, err = devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cloud.Close() })
	r.cloud.Subscribe("dt/tcu/"+thing+"/telemetry", func(_ string, p []byte) { r.collectSignals(p) })

	cfgText, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	rep := strings.NewReplacer(
		"/tmp/tcu-demo/state", filepath.Join(dir, "state"),
		"/tmp/tcu-demo/vbus.sock", sock,
		"/tmp/tcu-demo/gnss", filepath.Join(dir, "gnss"),
		"/tmp/tcu-demo/ctl.sock", r.ctlPath,
		"127.0.0.1:18830", r.cloud.Addr(),
		"demo-car-001", thing,
		`interval = "1s"`, `interval = "200ms"`,
	)
	r.base = withSignals(rep.Replace(string(cfgText)), counterBlock)
	r.cfgPath = filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, r.cfgPath, r.base)
	dbcText, err := os.ReadFile("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "vehicle.dbc"), string(dbcText))
	cfg, sec, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r.a, err = agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log.With("program", "agent"), Version: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.a.Run(ctx) }() // stopped by the test's context
	t.Cleanup(func() {
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20 s of cancel")
		}
	})
	r.waitSignal(counterSignal, 30*time.Second, nil)
	return r
}

// withSignals adds signal tables to the body driver (the first [[driver]]).
func withSignals(cfg, blocks string) string {
	i := strings.Index(cfg, "# GNSS receiver")
	return cfg[:i] + blocks + "\n" + cfg[i:]
}

func (r *applyRig) collectSignals(payload []byte) {
	var env struct {
		Records []struct {
			TS      int64              `json:"ts"`
			Kind    string             `json:"kind"`
			Signals map[string]float64 `json:"signals"`
		} `json:"records"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		r.t.Errorf("bad envelope (%v): %s", err, payload)
		return
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	for _, rec := range env.Records {
		if rec.Kind == "telemetry" {
			r.recs = append(r.recs, telemetryRec{ts: time.UnixMilli(rec.TS), signals: rec.Signals})
		}
	}
}

// waitSignal waits for a telemetry record (captured after since, if set)
// with name whose value satisfies ok (any value if nil).
func (r *applyRig) waitSignal(name string, timeout time.Duration, ok func(float64) bool, since ...time.Time) float64 {
	r.t.Helper()
	var got float64
	waitFor(r.t, "telemetry with "+name, timeout, func() bool {
		r.rmu.Lock()
		defer r.rmu.Unlock()
		for _, rec := range r.recs {
			if len(since) > 0 && rec.ts.Before(since[0]) {
				continue
			}
			if v, has := rec.signals[name]; has && (ok == nil || ok(v)) {
				got = v
				return true
			}
		}
		return false
	})
	return got
}

// published reports whether any record since t carries name.
func (r *applyRig) published(name string, since time.Time) bool {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	for _, rec := range r.recs {
		if _, has := rec.signals[name]; has && !rec.ts.Before(since) {
			return true
		}
	}
	return false
}

// maxRecordGap is the longest time between consecutive records carrying
// counterSignal with timestamps in [from, to]: the gap the cloud sees.
func (r *applyRig) maxRecordGap(from, to time.Time) time.Duration {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	var ts []time.Time
	for _, rec := range r.recs {
		if _, has := rec.signals[counterSignal]; has && !rec.ts.Before(from) && !rec.ts.After(to) {
			ts = append(ts, rec.ts)
		}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var g time.Duration
	for i := 1; i < len(ts); i++ {
		g = max(g, ts[i].Sub(ts[i-1]))
	}
	return g
}

// apply writes text as the config file and applies it as SIGHUP does.
func (r *applyRig) apply(ctx context.Context, text string) (agent.ApplyResult, error) {
	r.t.Helper()
	mustWrite(r.t, r.cfgPath, text)
	cfg, _, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		r.t.Fatalf("load edited config: %v", err)
	}
	return r.a.ApplyConfig(ctx, cfg, r.cfgPath)
}

// body returns the body bus as the status shows it.
func (r *applyRig) body(ctx context.Context) ctl.Bus {
	r.t.Helper()
	st, err := ctl.Query(ctx, r.ctlPath)
	if err != nil {
		r.t.Fatalf("status: %v", err)
	}
	for _, b := range st.Buses {
		if b.Name == "body" {
			return b
		}
	}
	r.t.Fatalf("no body bus in status: %+v", st.Buses)
	return ctl.Bus{}
}

const maxGap = 2 * time.Second

// TestApplyConfigLive: a new signal, a DBC change and a telemetry change
// are applied in process with a capture gap within 2 s; a door command
// right after an apply transmits on the new bus driver; a driver that
// cannot start keeps the old pipeline; a change outside capture is
// refused for a restart and changes nothing.
func TestApplyConfigLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := startApplyRig(t, ctx)
	defer cancel()
	const fan = "Vehicle.Cabin.HVAC.FanSpeed"
	if r.published(fan, time.Time{}) {
		t.Fatal("fan speed published before it was configured")
	}

	// 1. A new signal: published without a restart; then a door command
	// at once goes out on the new body driver (the old one is closed: its
	// Transmit would fail).
	withFan := withSignals(r.base, fanBlock)
	before := time.Now()
	res, err := r.apply(ctx, withFan)
	applied := time.Now()
	if err != nil || !res.Live || len(res.RestartSections) > 0 {
		t.Fatalf("add a signal: %+v, %v", res, err)
	}
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 30*time.Second)
	defer cmdCancel()
	if resp := r.command(cmdCtx, "door.lock"); resp.Status != "SUCCEEDED" {
		t.Fatalf("door.lock right after the apply: %s (%s: %s)", resp.Status, resp.ReasonCode, resp.Reason)
	}
	if r.lockFrames(1) == 0 || r.vehicle.State().Lock != sim.Locked {
		t.Errorf("door.lock SUCCEEDED but no lock frame on the bus / vehicle %+v", r.vehicle.State())
	}
	if v := r.waitSignal(fan, 15*time.Second, nil); v != 3 {
		t.Errorf("%s = %v, want 3 (the simulated fan speed)", fan, v)
	}
	r.waitSignal(counterSignal, 10*time.Second, nil, applied.Add(time.Second))
	cloudGap := r.maxRecordGap(before.Add(-time.Second), applied.Add(time.Second))
	t.Logf("add a signal: ApplyResult.Gap %v, longest gap between %s records in the cloud around the apply %v (interval 200ms)",
		res.Gap, counterSignal, cloudGap)
	if res.Gap > maxGap || cloudGap > maxGap {
		t.Errorf("capture gap %v (in the cloud %v), want ≤ %v", res.Gap, cloudGap, maxGap)
	}

	// 2. A DBC change under the same file name: the fan's factor 1 → 2.
	dbcPath := filepath.Join(r.dir, "vehicle.dbc")
	dbcText, err := os.ReadFile(dbcPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(dbcText), `HvacFanSpeed : 24|4@1+ (1,0) [0|15]`, `HvacFanSpeed : 24|4@1+ (2,0) [0|30]`, 1)
	if edited == string(dbcText) {
		t.Fatal("vehicle.dbc: fan speed signal not found")
	}
	mustWrite(t, dbcPath, edited)
	before = time.Now()
	if res, err = r.apply(ctx, withFan); err != nil || !res.Live {
		t.Fatalf("DBC change: %+v, %v", res, err)
	}
	applied = time.Now()
	r.waitSignal(fan, 15*time.Second, func(v float64) bool { return v == 6 }, applied)
	r.waitSignal(counterSignal, 10*time.Second, nil, applied.Add(time.Second))
	cloudGap = r.maxRecordGap(before.Add(-time.Second), applied.Add(time.Second))
	t.Logf("DBC change: ApplyResult.Gap %v, cloud gap %v", res.Gap, cloudGap)
	if res.Gap > maxGap || cloudGap > maxGap {
		t.Errorf("capture gap %v (in the cloud %v), want ≤ %v", res.Gap, cloudGap, maxGap)
	}

	// 3. Only [telemetry] changes: the pipeline is rebuilt, the body driver
	// keeps running (its frame counter does not start again).
	framesBefore := r.body(ctx).Frames
	if res, err = r.apply(ctx, strings.Replace(withFan, `interval = "200ms"`, `interval = "300ms"`, 1)); err != nil || !res.Live || res.Gap != 0 {
		t.Fatalf("telemetry change: %+v, %v", res, err)
	}
	if b := r.body(ctx); b.Frames < framesBefore || b.State != "running" {
		t.Errorf("telemetry change restarted the body driver: frames %d → %d, state %s", framesBefore, b.Frames, b.State)
	}
	cur := strings.Replace(withFan, `interval = "200ms"`, `interval = "300ms"`, 1)

	// 4. A body driver that cannot start (no bus at that address): an
	// error, and the running driver and pipeline go on unchanged.
	framesBefore = r.body(ctx).Frames
	bad := strings.Replace(cur, filepath.Join(r.dir, "vbus.sock"), filepath.Join(r.dir, "nobus.sock"), 1)
	res, err = r.apply(ctx, withSignals(bad, `
  [[driver.signal]]
  name = "Vehicle.Test.Never"
  source = "CLIMATE.AmbientTemperature"
`))
	if err == nil || res.Live || !strings.Contains(err.Error(), `"body"`) {
		t.Fatalf("a driver that cannot start: %+v, %v; want an error naming the body driver", res, err)
	}
	t.Logf("bad driver: %v", err)
	after := time.Now()
	r.waitSignal(counterSignal, 10*time.Second, nil, after)
	if b := r.body(ctx); b.Frames < framesBefore || b.State != "running" {
		t.Errorf("after a failed apply the body driver is not the old one: frames %d → %d, state %s", framesBefore, b.Frames, b.State)
	}
	if resp := r.command(cmdCtx, "door.unlock"); resp.Status != "SUCCEEDED" {
		t.Errorf("door.unlock after a failed apply: %s (%s: %s)", resp.Status, resp.ReasonCode, resp.Reason)
	}
	if r.published("Vehicle.Test.Never", time.Time{}) {
		t.Error("a signal of the failed config was published")
	}

	// 5. A change outside capture ([mqtt]) with a new signal: Live=false,
	// the section named, nothing applied.
	mustWrite(t, r.cfgPath, cur) // the file as it runs
	framesBefore = r.body(ctx).Frames
	restart := withSignals(strings.Replace(cur, `batch_latency = "500ms"`, `batch_latency = "400ms"`, 1), `
  [[driver.signal]]
  name = "Vehicle.Test.Ambient"
  source = "CLIMATE.AmbientTemperature"
  heartbeat = "1s"
`)
	res, err = r.apply(ctx, restart)
	if err != nil || res.Live || !slices.Equal(res.RestartSections, []string{"mqtt"}) || res.Gap != 0 {
		t.Fatalf("an [mqtt] change: %+v, %v; want Live=false, RestartSections [mqtt]", res, err)
	}
	since := time.Now()
	time.Sleep(2 * time.Second) // several 300ms intervals and the signal's 1s heartbeat
	r.waitSignal(counterSignal, 10*time.Second, nil, since)
	if r.published("Vehicle.Test.Ambient", since.Add(-time.Second)) {
		t.Error("a signal of a config that needs a restart was applied")
	}
	if b := r.body(ctx); b.Frames < framesBefore {
		t.Errorf("the body driver was restarted by a refused apply: frames %d → %d", framesBefore, b.Frames)
	}
}

// TestApplyConfigNotRunning: before Run, a capture change is refused.
func TestApplyConfigNotRunning(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "vehicle.dbc"), string(mustRead(t, "../configs/vehicle.dbc")))
	path := filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, path, string(src))
	cfg, sec, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, path, strings.Replace(string(src), `interval = "1s"`, `interval = "2s"`, 1))
	cfg2, _, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyConfig(t.Context(), cfg2, path); !errors.Is(err, agent.ErrNotRunning) {
		t.Errorf("ApplyConfig before Run: %v, want ErrNotRunning", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

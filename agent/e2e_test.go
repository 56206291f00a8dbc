package agent_test

import (
	"context"
	"encoding/json"
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
	_ "github.com/tcu-agent/tcu-agent/drivers/all"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

const thing = "e2e-car-001"

// spine is the whole stack of the Foundation issue in one process: the
// simulated vehicle on a virtual CAN bus served over a unix socket, the dev
// cloud broker on loopback, and the agent loaded from a config file.
type spine struct {
	t       *testing.T
	ctlPath string
	db      *dbc.Database
	cloud   *devcloud.Cloud
	vehicle *sim.Vehicle

	mu      sync.Mutex
	batches [][]uint64           // seqs per telemetry message, in arrival order
	seen    map[uint64]bool      // every seq seen on telemetry and events
	frames  []map[string]float64 // decoded BODY_COMMAND frames seen on the bus
}

func startSpine(t *testing.T, ctx context.Context) *spine {
	t.Helper()
	dir := t.TempDir()
	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	s := &spine{t: t, db: db, seen: map[uint64]bool{}, ctlPath: filepath.Join(dir, "ctl.sock")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	// The CAN bus, shared with the agent over a unix socket.
	sock := filepath.Join(dir, "vbus.sock")
	var obs canbus.Bus
	s.vehicle, obs = startVehicle(t, ctx, db, sock, log)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { s.watchBus(ctx, obs) })

	// The broker.
	s.cloud, err = devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cloud.Close() })
	s.cloud.Subscribe("dt/tcu/"+thing+"/telemetry", func(_ string, p []byte) { s.collect(p, true) })
	s.cloud.Subscribe("dt/tcu/"+thing+"/events", func(_ string, p []byte) { s.collect(p, false) })

	// The agent, from the demo config with this test's paths.
	cfgText, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer(
		"/tmp/tcu-demo/state", filepath.Join(dir, "state"),
		"/tmp/tcu-demo/vbus.sock", sock,
		"/tmp/tcu-demo/gnss", filepath.Join(dir, "gnss"),
		"/tmp/tcu-demo/ctl.sock", s.ctlPath,
		"127.0.0.1:18830", s.cloud.Addr(),
		"demo-car-001", thing,
	)
	cfgPath := filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, cfgPath, r.Replace(string(cfgText)))
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
	go func() { runErr <- a.Run(ctx) }() // stopped by the test's context
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
	return s
}

// startVehicle serves a virtual CAN bus on sock with the simulated vehicle
// on it, and returns the vehicle and one more endpoint to watch the bus.
func startVehicle(t *testing.T, ctx context.Context, db *dbc.Database, sock string, log *slog.Logger) (*sim.Vehicle, canbus.Bus) {
	t.Helper()
	bus := canbus.NewVirtual()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { _ = canbus.Serve(ctx, ln, bus) })
	v, err := sim.New(sim.Options{Bus: bus.Attach(), DB: db, Scenario: sim.ScenarioParked, Logger: log.With("program", "sim")})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = v.Run(ctx) })
	return v, bus.Attach()
}

func mustWrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// collect records the seqs of one envelope message.
func (s *spine) collect(payload []byte, telemetry bool) {
	var env struct {
		V       int    `json:"v"`
		Device  string `json:"device"`
		Records []struct {
			Seq  uint64 `json:"seq"`
			TS   int64  `json:"ts"`
			Kind string `json:"kind"`
		} `json:"records"`
	}
	if err := json.Unmarshal(payload, &env); err != nil || env.V != 1 || env.Device != thing {
		s.t.Errorf("bad envelope (%v): %s", err, payload)
		return
	}
	var seqs []uint64
	// Within one message, records of one kind (so of one buffer class)
	// ascend; a higher class may come first (docs/buffer.md, drain order):
	// a command_result synced at once can precede an older event.
	last := map[string]uint64{}
	for _, r := range env.Records {
		if r.TS == 0 || r.Kind == "" {
			s.t.Errorf("record without ts/kind: %s", payload)
		}
		if prev, ok := last[r.Kind]; ok && r.Seq <= prev {
			s.t.Errorf("%s records of one message not in ascending seq: %s", r.Kind, payload)
		}
		last[r.Kind] = r.Seq
		seqs = append(seqs, r.Seq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if telemetry {
		s.batches = append(s.batches, seqs)
	}
	for _, q := range seqs {
		s.seen[q] = true
	}
}

// watchBus decodes every BODY_COMMAND frame the agent transmits.
func (s *spine) watchBus(ctx context.Context, ep canbus.Bus) {
	msg, ok := s.db.Message("BODY_COMMAND")
	if !ok {
		s.t.Error("vehicle.dbc has no BODY_COMMAND")
		return
	}
	for {
		f, err := ep.Receive(ctx)
		if err != nil {
			return
		}
		if f.ID != msg.ID || f.Extended != msg.Extended {
			continue
		}
		vals, err := msg.Decode(f.Payload())
		if err != nil {
			s.t.Errorf("decode BODY_COMMAND: %v", err)
			continue
		}
		m := map[string]float64{}
		for _, v := range vals {
			m[v.Signal.Name] = v.Phys
		}
		s.mu.Lock()
		s.frames = append(s.frames, m)
		s.mu.Unlock()
	}
}

func (s *spine) maxSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m uint64
	for q := range s.seen {
		m = max(m, q)
	}
	return m
}

// missingAfter returns the seqs in (before, end] not seen yet, sorted,
// where end is the newest seq seen.
func (s *spine) missingAfter(before uint64) (missing []uint64, end uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end = before
	for q := range s.seen {
		end = max(end, q)
	}
	for q := before + 1; q <= end; q++ {
		if !s.seen[q] {
			missing = append(missing, q)
		}
	}
	return missing, end
}

func (s *spine) lockFrames(value float64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.frames {
		if f["LockRequest"] == value {
			n++
		}
	}
	return n
}

// command sends name and returns the final response.
func (s *spine) command(ctx context.Context, name string) devcloud.Response {
	s.t.Helper()
	ch, err := s.cloud.SendCommand(ctx, thing, name, nil)
	if err != nil {
		s.t.Fatalf("send %s: %v", name, err)
	}
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				s.t.Fatalf("%s: response channel closed without a final response", name)
			}
			if devcloud.Final(r.Status) {
				return r
			}
		case <-ctx.Done():
			s.t.Fatalf("%s: no final response: %v", name, ctx.Err())
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpineEndToEnd is the Foundation acceptance test: telemetry with
// strictly increasing seq, a lock round trip through the CAN bus, and a
// broker outage that loses nothing.
func TestSpineEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSpine(t, ctx)
	defer cancel()

	// 1. Telemetry arrives, seq strictly increasing within and across messages.
	waitFor(t, "three telemetry messages", 30*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.batches) >= 3
	})
	s.mu.Lock()
	var last uint64
	for _, b := range s.batches {
		for _, q := range b {
			if q <= last {
				t.Errorf("telemetry seq %d after %d: not strictly increasing (batches %v)", q, last, s.batches)
			}
			last = q
		}
	}
	s.mu.Unlock()

	// 2. door.lock: an actuation frame on the bus, the simulated body
	// controller locks, the agent answers SUCCEEDED.
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 30*time.Second)
	defer cmdCancel()
	if r := s.command(cmdCtx, "door.lock"); r.Status != "SUCCEEDED" {
		t.Fatalf("door.lock: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if n := s.lockFrames(1); n == 0 {
		t.Error("door.lock SUCCEEDED but no BODY_COMMAND LockRequest=LOCK frame was seen on the bus")
	}
	if st := s.vehicle.State(); st.Lock != sim.Locked {
		t.Errorf("vehicle state after lock: %+v", st)
	}
	s.checkStatus(ctx)

	// 3. Broker outage: records produced while it is down all arrive
	// after it is back.
	waitFor(t, "lock result event", 10*time.Second, func() bool { return s.maxSeq() > 0 })
	time.Sleep(1500 * time.Millisecond) // let the lock's records drain
	before := s.maxSeq()
	s.cloud.Stop()
	time.Sleep(4 * time.Second) // ≥ 3 telemetry intervals with the broker down
	if err := s.cloud.Start(ctx); err != nil {
		t.Fatalf("restart broker: %v", err)
	}
	waitFor(t, "records produced during the outage", 60*time.Second, func() bool { return s.maxSeq() >= before+3 })
	// The backlog is served newest first, so the newest seq arrives before
	// the older ones: wait until nothing after `before` is missing.
	missing, end := s.missingAfter(before)
	for deadline := time.Now().Add(60 * time.Second); len(missing) > 0 && time.Now().Before(deadline); missing, end = s.missingAfter(before) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("after the outage, seqs %d..%d arrived with gaps: missing %v", before+1, end, missing)
	}

	// 4. door.unlock after the outage.
	if r := s.command(cmdCtx, "door.unlock"); r.Status != "SUCCEEDED" {
		t.Fatalf("door.unlock: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if n := s.lockFrames(2); n == 0 {
		t.Error("door.unlock SUCCEEDED but no LockRequest=UNLOCK frame was seen")
	}
}

// TestSpineCommandsAndInterlocks drives the immobiliser and the standstill
// interlock through the whole stack: broker → agent → CAN → simulated ECU.
func TestSpineCommandsAndInterlocks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSpine(t, ctx)
	defer cancel()
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 90*time.Second)
	defer cmdCancel()

	// Parked for longer than the interlock's 3 s: the immobiliser engages.
	waitFor(t, "telemetry", 30*time.Second, func() bool { return s.maxSeq() > 0 })
	time.Sleep(3500 * time.Millisecond)
	if r := s.command(cmdCtx, "ignition.disable"); r.Status != "SUCCEEDED" {
		t.Fatalf("ignition.disable at standstill: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if !s.vehicle.State().Immobilized || s.immobilizerFrames(2) == 0 {
		t.Errorf("after ignition.disable: immobilized=%v, DISABLE frames=%d", s.vehicle.State().Immobilized, s.immobilizerFrames(2))
	}
	if r := s.command(cmdCtx, "ignition.enable"); r.Status != "SUCCEEDED" {
		t.Fatalf("ignition.enable: %s (%s: %s)", r.Status, r.ReasonCode, r.Reason)
	}
	if s.vehicle.State().Immobilized || s.immobilizerFrames(1) == 0 {
		t.Errorf("after ignition.enable: immobilized=%v, ENABLE frames=%d", s.vehicle.State().Immobilized, s.immobilizerFrames(1))
	}

	// Moving: door.unlock is refused by the standstill interlock, and no
	// unlock frame reaches the bus.
	k := s.vehicle.Knobs()
	k.Hold, k.Speed = sim.HoldMoving, 50
	s.vehicle.SetKnobs(k)
	waitFor(t, "the agent to see the vehicle moving", 10*time.Second, func() bool { return s.vehicle.State().Speed > 10 })
	time.Sleep(1500 * time.Millisecond) // ≥ one heartbeat of Vehicle.Speed
	before := s.lockFrames(2)
	r := s.command(cmdCtx, "door.unlock")
	if r.Status != "REJECTED" || !strings.Contains(r.Reason+r.ReasonCode, "standstill") && !strings.Contains(r.ReasonCode, "interlock") {
		t.Errorf("door.unlock while moving: %s (%s: %s), want REJECTED by the standstill interlock", r.Status, r.ReasonCode, r.Reason)
	}
	if got := s.lockFrames(2); got != before {
		t.Errorf("door.unlock while moving put %d UNLOCK frames on the bus", got-before)
	}

	// The ECU never answers: the lock times out and says what it saw.
	k.Hold, k.Ignore = sim.HoldParked, true
	s.vehicle.SetKnobs(k)
	if r := s.command(cmdCtx, "door.lock"); r.Status != "TIMED_OUT" && r.Status != "FAILED" {
		t.Errorf("door.lock with a silent ECU: %s (%s: %s), want TIMED_OUT", r.Status, r.ReasonCode, r.Reason)
	}
}

func (s *spine) immobilizerFrames(value float64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.frames {
		if f["ImmobilizerRequest"] == value {
			n++
		}
	}
	return n
}

// checkStatus reads the running agent's status over its control socket.
func (s *spine) checkStatus(ctx context.Context) {
	s.t.Helper()
	var st ctl.Status
	var body ctl.Bus
	waitFor(s.t, "a frame rate in the status", 10*time.Second, func() bool {
		var err error
		st, err = ctl.Query(ctx, s.ctlPath)
		for _, b := range st.Buses {
			if b.Driver == "body" {
				body = b
			}
		}
		return err == nil && body.FramesPerSec > 0
	})
	if st.Identity.Thing != thing || st.Connection.State != "connected" || st.Connection.Acked == 0 {
		s.t.Errorf("status identity/connection = %+v %+v", st.Identity, st.Connection)
	}
	if body.State != "running" || body.Frames == 0 {
		s.t.Errorf("status bus = %+v", body)
	}
	if st.LastCommand == nil || st.LastCommand.Status != "SUCCEEDED" {
		s.t.Errorf("status last command = %+v", st.LastCommand)
	}
	if !st.Health.OK || len(st.Queues) != 3 {
		s.t.Errorf("status health/queues = %+v %+v", st.Health, st.Queues)
	}
	if st.Store.Appends == 0 || st.Store.Syncs == 0 || st.Store.DiskBytes == 0 {
		s.t.Errorf("status store = %+v, want appends, syncs and a disk size", st.Store)
	}
}

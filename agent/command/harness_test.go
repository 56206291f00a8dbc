package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/drivers"
)

const (
	thing     = "TCU-00042"
	sigLocked = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
	sigImmo   = "Vehicle.Immobilizer.IsEngaged"
	sigSpeed  = "Vehicle.Speed"
	sigGear   = "Vehicle.Powertrain.Transmission.SelectedGear"
	// waitLong bounds every wait for an event in tests (generous: loaded CI).
	waitLong = 20 * time.Second
)

func dur(d time.Duration) command.Duration { return command.Duration(d) }

// testConfig mirrors sample.toml against the sim DBC.
func testConfig() command.Config {
	c := command.DefaultConfig()
	body := func(name, act, sig string, v float64, fb string, expect float64) command.Spec {
		return command.Spec{
			Name: name, Actuator: act, Bus: "body", Message: "BODY_COMMAND",
			Signals: map[string]float64{sig: v}, Repeat: 1, RepeatInterval: dur(100 * time.Millisecond),
			Feedback: fb, Expect: expect, Timeout: dur(5 * time.Second), Report: []string{sigSpeed},
		}
	}
	c.Commands = []command.Spec{
		body("door.lock", "door", "LockRequest", 1, sigLocked, 1),
		body("door.unlock", "door", "LockRequest", 2, sigLocked, 0),
		body("ignition.enable", "immobilizer", "ImmobilizerRequest", 1, sigImmo, 0),
		body("ignition.disable", "immobilizer", "ImmobilizerRequest", 2, sigImmo, 1),
	}
	c.Commands[3].Mode = command.ModeAtStandstill
	c.Commands[3].ArmTimeout = dur(10 * time.Second)
	c.Interlocks = []command.Interlock{
		{Name: "standstill", Signal: sigSpeed, Op: "<=", Value: 0, For: dur(3 * time.Second), MaxAge: dur(2 * time.Second),
			AppliesTo: []string{"ignition.disable", "door.unlock"}},
		{Name: "parked", Signal: sigGear, Op: "==", Value: 0, MaxAge: dur(2 * time.Second),
			AppliesTo: []string{"door.unlock"}},
	}
	return c
}

// harness runs an engine over fakes. The fake ECU (tx.OnTransmit) answers
// BODY_COMMAND like the sim's body controller unless ecuSilent is set.
type harness struct {
	t       testing.TB
	dir     string
	cfg     command.Config
	clock   *commandtest.Clock
	cache   *command.SampleCache
	tx      *commandtest.Transmitter
	resp    *commandtest.Responder
	respond command.Responder // takes the responses; default resp
	trusted atomic.Bool
	silent  atomic.Bool
	syncs   int          // barrier requests sent
	beats   atomic.Int64 // dispatcher heartbeats
	idles   atomic.Int64 // dispatcher idle marks
	eng     *command.Engine
	preRun  func(*command.Engine) // when set, runs between New and Run
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t testing.TB, mut func(*command.Config)) *harness {
	t.Helper()
	return newHarnessIn(t, t.TempDir(), mut, nil)
}

// newHarnessIn runs the engine on state dir; onFrame, when set, runs before
// the fake ECU sees each frame.
func newHarnessIn(t testing.TB, dir string, mut func(*command.Config), onFrame func(commandtest.Frame)) *harness {
	t.Helper()
	cfg := testConfig()
	if mut != nil {
		mut(&cfg)
	}
	h := &harness{
		t: t, dir: dir, cfg: cfg,
		clock: commandtest.NewClock(time.UnixMilli(1_790_000_000_000)),
		cache: command.NewSampleCache(),
		tx:    &commandtest.Transmitter{Bus: "body"},
		resp:  &commandtest.Responder{},
	}
	h.respond = h.resp
	h.trusted.Store(true)
	h.tx.OnTransmit = func(f commandtest.Frame) {
		if onFrame != nil {
			onFrame(f)
		}
		h.ecu(f)
	}
	h.start()
	t.Cleanup(h.stop)
	h.emit(sigLocked, 0)
	h.emit(sigImmo, 0)
	h.parked()
	return h
}

// ecu is the fake body controller: it reports the requested state at once.
func (h *harness) ecu(f commandtest.Frame) {
	if h.silent.Load() || f.Message != "BODY_COMMAND" {
		return
	}
	switch f.Signals["LockRequest"] {
	case 1:
		h.emit(sigLocked, 1)
	case 2:
		h.emit(sigLocked, 0)
	}
	switch f.Signals["ImmobilizerRequest"] {
	case 1:
		h.emit(sigImmo, 0)
	case 2:
		h.emit(sigImmo, 1)
	}
}

func (h *harness) emit(name string, v float64) {
	h.cache.Emit(drivers.Sample{Name: name, Value: v, Time: h.clock.Now(), Source: "body"})
}

// parked makes the standstill and parked interlocks hold (speed 0 for 5 s).
func (h *harness) parked() {
	h.emit(sigSpeed, 0)
	h.emit(sigGear, 0)
	command.ObserveInterlocks(h.eng)
	h.clock.Advance(5 * time.Second)
	h.emit(sigSpeed, 0)
	h.emit(sigGear, 0)
}

func (h *harness) start() {
	h.t.Helper()
	eng, err := command.New(command.Options{
		Config: h.cfg, Thing: thing, StateDir: h.dir, Signals: h.cache,
		Transmitter: func(bus string) (drivers.Transmitter, bool) {
			if bus != "body" {
				return nil, false
			}
			return h.tx, true
		},
		Responder: h.respond, Now: h.clock.Now, ClockTrusted: h.trusted.Load,
		Heartbeat: func() { h.beats.Add(1) },
		Idle:      func() { h.idles.Add(1) },
	})
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.eng = eng
	if h.preRun != nil {
		h.preRun(eng)
	}
	command.ObserveInterlocks(eng)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- eng.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitLong):
		h.t.Errorf("Run did not return after cancel")
	}
	h.cancel = nil
}

// restart stops the engine and starts a new one on the same state dir.
func (h *harness) restart() {
	h.stop()
	h.start()
}

// restartWith restarts the engine with r taking the responses, and makes
// the interlocks hold again.
func (h *harness) restartWith(r command.Responder) {
	h.stop()
	h.respond = r
	h.start()
	h.parked()
}

// req returns a valid request issued now.
func (h *harness) req(id, name string) command.Request {
	return command.Request{ID: id, Device: thing, Name: name, Params: json.RawMessage("{}"),
		IssuedAt: h.clock.Now().UnixMilli(), ValidMS: 30_000}
}

func requestTopic(id string) string { return "cmd/tcu/" + thing + "/request/" + id }

func (h *harness) send(r command.Request) {
	b, err := json.Marshal(r)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(requestTopic(r.ID), b)
}

func (h *harness) sendRaw(topic string, payload []byte) {
	h.eng.Handle(context.Background(), topic, payload)
}

// sync returns once the dispatcher has handled everything sent before: it
// sends a request refused at once and waits for its answer (one dispatcher,
// FIFO intake).
func (h *harness) sync() {
	h.t.Helper()
	h.syncs++
	id := idN("sync", h.syncs)
	h.send(h.req(id, "sync.barrier"))
	if r := h.final(id, 1); r.ReasonCode != command.ReasonUnknownCommand {
		h.t.Fatalf("sync barrier answered %+v", r)
	}
}

// final waits for the n-th final response of id.
func (h *harness) final(id string, n int) command.Response {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	r, err := h.resp.WaitFinal(ctx, id, n)
	if err != nil {
		h.t.Fatalf("%v (responses: %+v)", err, h.resp.Responses())
	}
	return r
}

func checkFinal(t testing.TB, r command.Response, st command.Status, code string) {
	t.Helper()
	if r.Status != st || r.ReasonCode != code {
		t.Errorf("response = %s/%s (%q), want %s/%s", r.Status, r.ReasonCode, r.Reason, st, code)
	}
	if r.Reason == "" {
		t.Errorf("response %s/%s has no reason", r.Status, r.ReasonCode)
	}
}

var errBus = errors.New("bus-off")

func idN(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }

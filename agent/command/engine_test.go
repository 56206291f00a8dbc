package command_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// TestCommandsSucceed: each command of the vocabulary sends its frame and
// succeeds once the feedback signal confirms.
func TestCommandsSucceed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		setup     func(h *harness)
		wantFrame map[string]float64
		wantState map[string]float64
	}{
		{name: "door.lock", wantFrame: map[string]float64{"LockRequest": 1},
			wantState: map[string]float64{sigLocked: 1, sigSpeed: 0}},
		{name: "door.unlock", setup: func(h *harness) { h.emit(sigLocked, 1) },
			wantFrame: map[string]float64{"LockRequest": 2},
			wantState: map[string]float64{sigLocked: 0, sigSpeed: 0, sigGear: 0}},
		{name: "ignition.enable", setup: func(h *harness) { h.emit(sigImmo, 1) },
			wantFrame: map[string]float64{"ImmobilizerRequest": 1},
			wantState: map[string]float64{sigImmo: 0, sigSpeed: 0}},
		{name: "ignition.disable", wantFrame: map[string]float64{"ImmobilizerRequest": 2},
			wantState: map[string]float64{sigImmo: 1, sigSpeed: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			if tt.setup != nil {
				tt.setup(h)
			}
			h.send(h.req("ok-1", tt.name))
			r := h.final("ok-1", 1)
			checkFinal(t, r, command.StatusSucceeded, command.ReasonOK)
			if diff := cmp.Diff(tt.wantState, r.State); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			want := []commandtest.Frame{{Bus: "body", Message: "BODY_COMMAND", Signals: tt.wantFrame}}
			if diff := cmp.Diff(want, h.tx.Frames(), cmpFrame); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
			if r.Topic != "cmd/tcu/"+thing+"/response/ok-1" || r.Device != thing {
				t.Errorf("response topic %q device %q", r.Topic, r.Device)
			}
		})
	}
}

var cmpFrame = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Time" }, cmp.Ignore())

// TestECUNeverConfirms: no feedback within the timeout → TIMED_OUT with the
// observed state, after IN_PROGRESS and every configured repeat.
func TestECUNeverConfirms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Commands[0].Timeout = dur(2 * time.Second)
		c.Commands[0].Repeat = 3
		c.Commands[0].RepeatInterval = dur(20 * time.Millisecond)
		c.ProgressAfter = dur(100 * time.Millisecond)
	})
	h.silent.Store(true)
	h.send(h.req("silent-1", "door.lock"))
	r := h.final("silent-1", 1)
	checkFinal(t, r, command.StatusTimedOut, command.ReasonNoConfirmation)
	if got := r.State[sigLocked]; got != 0 {
		t.Errorf("observed %s = %v, want 0", sigLocked, got)
	}
	if n := h.tx.Count(); n != 3 {
		t.Errorf("%d frames, want 3 (repeat)", n)
	}
	all := h.resp.For("silent-1")
	if len(all) != 2 || all[0].Status != command.StatusInProgress {
		t.Errorf("responses %+v, want IN_PROGRESS then TIMED_OUT", all)
	}
}

// TestRepeatStopsOnConfirmation: repetition ends once the ECU confirmed.
func TestRepeatStopsOnConfirmation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Commands[0].Repeat = 5
		c.Commands[0].RepeatInterval = dur(time.Second)
	})
	h.send(h.req("rep-1", "door.lock"))
	checkFinal(t, h.final("rep-1", 1), command.StatusSucceeded, command.ReasonOK)
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

// TestTransmitFails: a bus error is FAILED with the cause, and recorded.
func TestTransmitFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.tx.Fail = errBus
	h.send(h.req("txf-1", "door.lock"))
	checkFinal(t, h.final("txf-1", 1), command.StatusFailed, command.ReasonTransmitFailed)
}

// TestArmThenCutAtStandstill: ignition.disable while moving is armed
// (IN_PROGRESS, no frame) and actuated once the vehicle has stood still
// for the hold time.
func TestArmThenCutAtStandstill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.emit(sigSpeed, 50)
	command.ObserveInterlocks(h.eng)
	sent := h.tx.Sent()
	h.send(h.req("arm-1", "ignition.disable"))
	waitFor(t, func() bool { return len(h.resp.For("arm-1")) == 1 })
	if r := h.resp.For("arm-1")[0]; r.Status != command.StatusInProgress || r.ReasonCode != command.ReasonArmed {
		t.Fatalf("first response %+v, want IN_PROGRESS/armed", r)
	}
	if n := h.tx.Count(); n != 0 {
		t.Fatalf("%d frames while moving, want 0", n)
	}
	h.emit(sigSpeed, 0)
	command.ObserveInterlocks(h.eng)
	h.clock.Advance(time.Second)
	h.emit(sigSpeed, 0)
	// Still within the 3 s hold: the interlock the armed command waits on
	// refuses, so nothing is sent.
	if why := command.InterlockRefusal(h.eng, "ignition.disable"); why == "" {
		t.Fatal("interlocks hold 1 s into the 3 s standstill hold")
	}
	if n := h.tx.Count(); n != 0 {
		t.Fatalf("%d frames before the hold time, want 0", n)
	}
	h.clock.Advance(3 * time.Second)
	h.emit(sigSpeed, 0)
	<-sent
	checkFinal(t, h.final("arm-1", 1), command.StatusSucceeded, command.ReasonOK)
}

// TestQueueMode: with conflict = "queue" the second command runs after the
// first, never interleaved.
func TestQueueMode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) { c.Conflict = command.ConflictQueue })
	h.silent.Store(true)
	sent := h.tx.Sent()
	h.send(h.req("q-1", "door.lock"))
	<-sent
	h.send(h.req("q-2", "door.unlock"))
	waitFor(t, func() bool { return h.eng.Stats().InFlight == 2 }) // q-2 queued behind q-1
	if n := h.tx.Count(); n != 1 {
		t.Fatalf("%d frames while q-1 runs, want 1", n)
	}
	h.silent.Store(false)
	h.emit(sigLocked, 1) // the ECU was late
	checkFinal(t, h.final("q-1", 1), command.StatusSucceeded, command.ReasonOK)
	checkFinal(t, h.final("q-2", 1), command.StatusSucceeded, command.ReasonOK)
	f := h.tx.Frames()
	if len(f) != 2 || f[0].Signals["LockRequest"] != 1 || f[1].Signals["LockRequest"] != 2 {
		t.Errorf("frames %+v, want lock then unlock", f)
	}
}

// TestAWSIntake: a request on the AWS IoT Commands topic (no id or device
// in the payload) is answered on the execution's response topic.
func TestAWSIntake(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	exec := "7c1e9d2a-3b44-4f0e-9a51-0d2c6b8e4f11"
	body := `{"name":"door.lock","issued_at":` + strconv.FormatInt(h.clock.Now().UnixMilli(), 10) + `,"valid_ms":30000}`
	h.sendRaw("$aws/commands/things/"+thing+"/executions/"+exec+"/request/json", []byte(body))
	r := h.final(exec, 1)
	checkFinal(t, r, command.StatusSucceeded, command.ReasonOK)
	if want := "$aws/commands/things/" + thing + "/executions/" + exec + "/response/json"; r.Topic != want {
		t.Errorf("topic %q, want %q", r.Topic, want)
	}
	p, err := r.Payload()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(p, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"status":       "SUCCEEDED",
		"statusReason": map[string]any{"reasonCode": "OK", "reasonDescription": sigLocked + " = 1"},
		"result":       map[string]any{sigLocked: map[string]any{"s": "1"}, sigSpeed: map[string]any{"s": "0"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AWS payload (-want +got):\n%s", diff)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestActuatorFault: a fail value on the feedback signal is FAILED at once.
func TestActuatorFault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) { c.Commands[0].FailValues = []float64{2} })
	h.silent.Store(true)
	sent := h.tx.Sent()
	h.send(h.req("fault-1", "door.lock"))
	<-sent
	h.emit(sigLocked, 2)
	r := h.final("fault-1", 1)
	checkFinal(t, r, command.StatusFailed, command.ReasonActuatorFault)
	if r.State[sigLocked] != 2 {
		t.Errorf("state %v, want the fault value", r.State)
	}
}

// TestRollingCounter: each command gets the next counter value; its
// repeats carry the same one.
func TestRollingCounter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Commands[0].Counter = "CommandCounter"
		c.Commands[0].Repeat = 2
		c.Commands[0].RepeatInterval = dur(20 * time.Millisecond)
		c.Commands[0].Timeout = dur(time.Second)
		c.Commands[0].CounterModulo = 16
	})
	h.silent.Store(true)
	h.send(h.req("ctr-1", "door.lock"))
	h.final("ctr-1", 1)
	h.send(h.req("ctr-2", "door.lock"))
	h.final("ctr-2", 1)
	f := h.tx.Frames()
	if len(f) != 4 {
		t.Fatalf("%d frames, want 4", len(f))
	}
	c := func(i int) float64 { return f[i].Signals["CommandCounter"] }
	if c(0) != c(1) || c(2) != c(3) || c(2) != float64((int(c(0))+1)%16) || c(0) >= 16 {
		t.Errorf("counters %v %v %v %v, want a, a, a+1, a+1 (mod 16)", c(0), c(1), c(2), c(3))
	}
	if f[0].Signals["LockRequest"] != 1 {
		t.Errorf("fixed signal lost: %v", f[0].Signals)
	}
}

// TestShutdownAnswersQueued: requests still waiting when the engine stops
// are answered (REJECTED agent_shutdown), never dropped or actuated.
func TestShutdownAnswersQueued(t *testing.T) {
	t.Parallel()
	tx := &commandtest.Transmitter{Bus: "body"}
	resp := &commandtest.Responder{}
	clock := commandtest.NewClock(time.UnixMilli(1_790_000_000_000))
	eng, err := command.New(command.Options{
		Config: testConfig(), Thing: thing, StateDir: t.TempDir(), Signals: command.NewSampleCache(),
		Transmitter: func(string) (drivers.Transmitter, bool) { return tx, true },
		Responder:   resp, Now: clock.Now, ClockTrusted: func() bool { return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"down-1", "down-2", "down-3"}
	for _, id := range ids {
		r := command.Request{ID: id, Device: thing, Name: "door.lock", IssuedAt: clock.Now().UnixMilli(), ValidMS: 30_000}
		eng.Handle(context.Background(), requestTopic(id), mustJSON(t, r))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := eng.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	for _, id := range ids {
		got := resp.For(id)
		if len(got) != 1 {
			t.Fatalf("%s: responses %+v, want one", id, got)
		}
		checkFinal(t, got[0], command.StatusRejected, command.ReasonShutdown)
	}
	if n := tx.Count(); n != 0 {
		t.Errorf("%d frames, want 0", n)
	}
}

package command_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
)

// TestRedeliveryWhileRunning: a duplicate that arrives while its command
// runs is answered with the same final result once it is known, and
// nothing is sent twice.
func TestRedeliveryWhileRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.silent.Store(true)
	sent := h.tx.Sent()
	r := h.req("dup-1", "door.lock")
	h.send(r)
	<-sent
	h.send(r)
	h.sync()
	h.emit(sigLocked, 1)
	first, second := h.final(r.ID, 1), h.final(r.ID, 2)
	checkFinal(t, first, command.StatusSucceeded, command.ReasonOK)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("duplicate answered differently (-first +second):\n%s", diff)
	}
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

// TestResponderFailure: a result the responder refused stays recorded and
// is handed over at the next start, without a second actuation.
func TestResponderFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.resp.SetFail(errors.New("buffer full"))
	h.send(h.req("rf-1", "door.lock"))
	waitFor(t, func() bool { return h.tx.Count() == 1 })
	h.restart() // stop waits for the job; its response failed
	if got := h.resp.For("rf-1"); len(got) != 0 {
		t.Fatalf("responses recorded while failing: %+v", got)
	}
	h.resp.SetFail(nil)
	h.restart()
	checkFinal(t, h.final("rf-1", 1), command.StatusSucceeded, command.ReasonOK)
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

// TestQueuedCommandExpires: a queued command whose validity ends while it
// waits is refused right before its frame.
func TestQueuedCommandExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) {
		c.Conflict = command.ConflictQueue
		c.Commands[0].Timeout = dur(time.Minute)
	})
	h.silent.Store(true)
	sent := h.tx.Sent()
	h.send(h.req("qe-1", "door.lock"))
	<-sent
	late := h.req("qe-2", "door.lock")
	late.ValidMS = 1000
	h.send(late)
	h.sync()
	h.clock.Advance(2 * time.Second) // qe-2's window ends while qe-1 runs
	h.emit(sigLocked, 1)
	checkFinal(t, h.final("qe-1", 1), command.StatusSucceeded, command.ReasonOK)
	checkFinal(t, h.final("qe-2", 1), command.StatusRejected, command.ReasonExpired)
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

// TestArmedCommandExpires: arming never outlives the validity window.
func TestArmedCommandExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.emit(sigSpeed, 80)
	r := h.req("ae-1", "ignition.disable")
	r.ValidMS = 300
	h.send(r)
	resp := h.final(r.ID, 1)
	checkFinal(t, resp, command.StatusRejected, command.ReasonExpired)
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames, want 0", n)
	}
	if all := h.resp.For(r.ID); len(all) != 2 || all[0].ReasonCode != command.ReasonArmed {
		t.Errorf("responses %+v, want armed then expired", all)
	}
}

// TestLedgerFull: with the ledger full of live entries a new command is
// refused unrecorded and not actuated.
func TestLedgerFull(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) { c.MaxLedgerEntries = 100 })
	for i := range 100 {
		h.send(h.req(idN("fill", i), "nope.nope"))
	}
	h.sync() // the barrier itself is refused unrecorded: the ledger is full
	h.send(h.req("full-1", "door.lock"))
	checkFinal(t, h.final("full-1", 1), command.StatusRejected, command.ReasonLedgerFull)
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames, want 0", n)
	}
}

// TestAWSIntakeSigned: on the AWS topic the signature covers the execution
// id and thing from the topic; a refusal carries the upper-case AWS reason.
func TestAWSIntakeSigned(t *testing.T) {
	t.Parallel()
	pub, key := newKey(t)
	h := newHarness(t, func(c *command.Config) { c.PublicKeys = []string{base64.StdEncoding.EncodeToString(pub)} })
	topic := func(exec string) string {
		return "$aws/commands/things/" + thing + "/executions/" + exec + "/request/json"
	}
	payload := func(exec, name string, signed bool) []byte {
		r := command.Request{ID: exec, Device: thing, Name: name, Params: json.RawMessage("{}"),
			IssuedAt: h.clock.Now().UnixMilli(), ValidMS: 30_000}
		if signed {
			command.Sign(&r, key)
		}
		return mustJSON(t, struct {
			Name     string `json:"name"`
			IssuedAt int64  `json:"issued_at"`
			ValidMS  int64  `json:"valid_ms"`
			Sig      string `json:"sig"`
		}{name, r.IssuedAt, r.ValidMS, r.Sig})
	}
	h.sendRaw(topic("exec-ok"), payload("exec-ok", "door.lock", true))
	checkFinal(t, h.final("exec-ok", 1), command.StatusSucceeded, command.ReasonOK)

	// Signed for another execution id: replaying it under a new id fails.
	h.sendRaw(topic("exec-replay"), payload("exec-ok", "door.lock", true))
	r := h.final("exec-replay", 1)
	checkFinal(t, r, command.StatusRejected, command.ReasonBadSignature)
	p, err := r.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p), `"reasonCode":"INVALID_SIGNATURE"`) || strings.Contains(string(p), `"result"`) {
		t.Errorf("AWS refusal payload %s", p)
	}
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1", n)
	}
}

// TestStatsAndHeartbeat: counters follow the answers; the dispatcher beats.
func TestStatsAndHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.send(h.req("st-1", "door.lock"))
	h.final("st-1", 1)
	h.send(h.req("st-2", "trunk.open"))
	h.final("st-2", 1)
	// Counters move just after the responder took the answer.
	waitFor(t, func() bool {
		s := h.eng.Stats()
		return s.InFlight == 0 && s.Finished[command.StatusSucceeded]+s.Finished[command.StatusRejected] == 2
	})
	got := h.eng.Stats()
	want := command.Stats{Received: 2, Finished: map[command.Status]uint64{
		command.StatusSucceeded: 1, command.StatusRejected: 1, command.StatusFailed: 0, command.StatusTimedOut: 0,
	}, LedgerEntries: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
	if h.beats.Load() == 0 {
		t.Error("no heartbeat from the dispatcher")
	}
}

// TestIdleDispatcherDoesNotWake: with nothing to dispatch and nothing to
// resend the dispatcher blocks without waking (it used to tick every
// second for resends and every 5 s to beat), and it tells the health
// tracker that it waits. A failed delivery still gets its retry.
func TestIdleDispatcherDoesNotWake(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	waitFor(t, func() bool { return h.idles.Load() > 0 })
	b := h.beats.Load()
	time.Sleep(2500 * time.Millisecond) // 2.5 resend periods
	if n := h.beats.Load() - b; n != 0 {
		t.Fatalf("idle dispatcher woke %d times in 2.5 s, want 0", n)
	}
}

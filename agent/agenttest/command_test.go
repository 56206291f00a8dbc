package agenttest

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// lockRequest is door.lock's BODY_COMMAND signal and value (configs/demo.toml).
const (
	lockSignal = "LockRequest"
	lockValue  = 1
)

// TestSystemKillBetweenLedgerAndResponse cuts the agent's power while a
// door.lock is between its ledger entry and its response reaching the
// cloud, with a slow body controller (5 s, beyond the command's 3 s
// timeout):
//
//   - in flight: ledger entry written, frame on the bus, not confirmed. The
//     restarted agent must answer FAILED "interrupted" (it may have
//     actuated) and never actuate again;
//   - answered offline: the result (TIMED_OUT) is recorded and queued but
//     the broker is down, so it has not reached the cloud. The restarted
//     agent must deliver that recorded answer. docs/commands.md allows the
//     same answer to arrive twice here (a cut between queueing the response
//     and marking it responded in the ledger); a second, different answer
//     is a failure.
//
// Either way the command gets exactly one answer after the restart and is
// never actuated again, and a redelivery of the same id gets the recorded
// answer with no new frame.
func TestSystemKillBetweenLedgerAndResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cut       func(t *testing.T, s *System, id string) // returns right before the kill
		want      answer
		sameTwice bool // the same answer may be delivered twice
	}{
		{name: "in flight", cut: cutInFlight, want: answer{devcloud.StatusFailed, "interrupted"}},
		{name: "answered offline", cut: cutAnsweredOffline, want: answer{devcloud.StatusTimedOut, "no_confirmation"},
			sameTwice: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, Options{Binary: binary(t), Scenario: sim.ScenarioParked, BodyDelay: 5 * time.Second})
			a := s.StartAgent()
			s.WaitFor("the agent to connect and see the vehicle", 30*time.Second, func() bool {
				return connected(context.Background(), s) && s.Stream.Len() > 0
			})
			req := s.NewRequest("door.lock", 30*time.Second)
			if err := s.SendRequest(req); err != nil {
				t.Fatal(err)
			}
			tt.cut(t, s, req.ID)
			if err := a.Kill(); err != nil || !a.KilledBySIGKILL() {
				t.Fatalf("SIGKILL: %v (killed by SIGKILL: %v)", err, a.KilledBySIGKILL())
			}
			killed := time.Now()
			before := len(s.Frames(lockSignal, lockValue))
			if rs := finals(s.Responses(req.ID)); len(rs) > 0 {
				t.Fatalf("answered before the kill (%+v): the cut was not before the response", rs)
			}
			restartAndCheck(t, s, req, killed, before, tt.want, tt.sameTwice)
		})
	}
}

// cutInFlight returns once the command's first frame is on the bus: its
// ledger entry is written (before the first frame), its outcome unknown.
func cutInFlight(t *testing.T, s *System, _ string) {
	t.Helper()
	s.WaitFor("the first door.lock frame on the bus", 20*time.Second, func() bool {
		return len(s.Frames(lockSignal, lockValue)) > 0
	})
}

// cutAnsweredOffline stops the broker at the command's first frame and
// returns once the agent has recorded and queued its final answer.
func cutAnsweredOffline(t *testing.T, s *System, id string) {
	t.Helper()
	cutInFlight(t, s, id)
	s.StopBroker()
	s.WaitFor("the command's final answer in the agent's status", 30*time.Second, func() bool {
		st, err := s.Status(context.Background())
		return err == nil && st.LastCommand != nil && st.LastCommand.ID == id && devcloud.Final(st.LastCommand.Status)
	})
}

// restartAndCheck restarts the agent after the kill and checks the one
// answer, the absence of new frames and the answer to a redelivery.
func restartAndCheck(t *testing.T, s *System, req devcloud.Request, killed time.Time, before int, want answer, sameTwice bool) {
	t.Helper()
	s.StartAgent()
	s.StartBroker() // if it was stopped
	s.WaitFor("a final response after the restart", 30*time.Second, func() bool {
		return len(finals(s.Responses(req.ID))) > 0
	})
	time.Sleep(2 * time.Second) // a second final response would show up by now
	rs := finals(s.Responses(req.ID))
	got := rs[0]
	for _, r := range rs[1:] {
		if !sameTwice || r.Status != got.Status || r.ReasonCode != got.ReasonCode || r.TS != got.TS {
			t.Errorf("%d final responses after the restart, want exactly 1: %+v", len(rs), rs)
			break
		}
	}
	if (answer{got.Status, got.ReasonCode}) != want {
		t.Errorf("answered %s %q (%s), want %s %q", got.Status, got.ReasonCode, got.Reason, want.status, want.reason)
	}
	after := framesSince(s, killed)
	if after != 0 {
		t.Errorf("%d door.lock frames after the kill: the command was actuated again", after)
	}
	if before < 1 || before > 3 {
		t.Errorf("%d door.lock frames before the kill, want 1..3 (repeat = 3)", before)
	}

	resent := time.Now()
	if err := s.SendRequest(req); err != nil {
		t.Fatal(err)
	}
	s.WaitFor("the answer to the redelivered id", 30*time.Second, func() bool {
		return len(finals(s.Responses(req.ID))) > len(rs)
	})
	time.Sleep(time.Second) // frames the redelivery might (wrongly) cause
	again := finals(s.Responses(req.ID))[len(rs)]
	if again.Status != got.Status || again.ReasonCode != got.ReasonCode {
		t.Errorf("redelivered id answered %s %q, want the recorded %s %q", again.Status, again.ReasonCode, got.Status, got.ReasonCode)
	}
	if n := framesSince(s, resent); n != 0 {
		t.Errorf("redelivered id put %d door.lock frames on the bus", n)
	}
	t.Logf("frames before kill %d, after kill %d; answer %s %q delivered %d time(s) after restart, %s %q on redelivery",
		before, after, got.Status, got.ReasonCode, len(rs), again.Status, again.ReasonCode)
}

// answer is a final status and its reason code.
type answer struct{ status, reason string }

// finals keeps the final responses.
func finals(rs []Response) []Response {
	var out []Response
	for _, r := range rs {
		if devcloud.Final(r.Status) {
			out = append(out, r)
		}
	}
	return out
}

// framesSince counts door.lock frames seen after t.
func framesSince(s *System, t time.Time) int {
	n := 0
	for _, f := range s.Frames(lockSignal, lockValue) {
		if f.At.After(t) {
			n++
		}
	}
	return n
}

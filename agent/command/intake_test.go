package command_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// TestAckAfterRecord: a request is acknowledged only once its ledger entry
// is durable: admitted (received), refused (done), or a known id. A broker
// redelivery (DUP) of an answered id is acknowledged but not answered
// again; a fresh publish of it is answered with the recorded result.
func TestAckAfterRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	send := func(r command.Request, dup bool) *atomic.Int32 {
		var n atomic.Int32
		h.eng.HandleMessage(command.Message{Topic: requestTopic(r.ID), Payload: mustJSON(t, r), Duplicate: dup,
			Ack: func() {
				if e, ok := ledgerEntry(t, h, r.ID); !ok || e.State == "" {
					t.Errorf("%s acknowledged before it was recorded", r.ID)
				}
				n.Add(1)
			}})
		return &n
	}
	ok := send(h.req("ack-ok", "door.lock"), false)
	bad := h.req("ack-bad", "door.lock")
	bad.IssuedAt -= time.Hour.Milliseconds()
	refused := send(bad, false)
	checkFinal(t, h.final("ack-ok", 1), command.StatusSucceeded, command.ReasonOK)
	checkFinal(t, h.final("ack-bad", 1), command.StatusRejected, command.ReasonExpired)
	h.sync()
	if ok.Load() != 1 || refused.Load() != 1 {
		t.Fatalf("acks: admitted %d, refused %d; want 1 each", ok.Load(), refused.Load())
	}
	frames := h.tx.Count()
	dup := send(h.req("ack-ok", "door.lock"), true)
	h.sync()
	if dup.Load() != 1 || len(h.resp.For("ack-ok")) != 1 {
		t.Errorf("DUP redelivery: acked %d, responses %d; want 1, 1", dup.Load(), len(h.resp.For("ack-ok")))
	}
	again := send(h.req("ack-ok", "door.lock"), false)
	checkFinal(t, h.final("ack-ok", 2), command.StatusSucceeded, command.ReasonOK)
	if again.Load() != 1 || h.tx.Count() != frames {
		t.Errorf("fresh publish of a known id: acked %d, frames %d → %d", again.Load(), frames, h.tx.Count())
	}
}

// ledgerEntry reads id's latest state from the ledger file on disk (what
// a crash would leave).
func ledgerEntry(t *testing.T, h *harness, id string) (ledger.Entry, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "commands", "ledger.log"))
	if err != nil {
		return ledger.Entry{}, false
	}
	var e ledger.Entry
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"id":"`+id+`"`) {
			_, body, _ := strings.Cut(line, " ")
			e.State = ledger.State(stateOf(body))
			found = true
		}
	}
	return e, found
}

func stateOf(body string) string {
	_, rest, ok := strings.Cut(body, `"state":"`)
	if !ok {
		return ""
	}
	s, _, _ := strings.Cut(rest, `"`)
	return s
}

// TestReceivedAtCrash: a command admitted and acknowledged (received) but
// never actuated when the agent died is answered REJECTED agent_shutdown
// at the next start and never executed.
func TestReceivedAtCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "commands"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_790_000_000_000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Receive("rc-1", "door.lock", "cmd/tcu/"+thing+"/response/rc-1", now.Add(time.Hour), now))
	must(l.Sync())
	must(l.Close())
	h := newHarnessIn(t, dir, nil, nil)
	checkFinal(t, h.final("rc-1", 1), command.StatusRejected, command.ReasonShutdown)
	h.send(h.req("rc-1", "door.lock")) // a redelivery gets the same answer
	checkFinal(t, h.final("rc-1", 2), command.StatusRejected, command.ReasonShutdown)
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames for a command interrupted before actuation", n)
	}
}

// TestDamagedLedgerRefusesEarlierCommands: after a ledger line is found
// damaged, a command issued before that moment may be among the lost lines
// and is REJECTED ledger_damaged with no frame; one issued later runs.
func TestDamagedLedgerRefusesEarlierCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.send(h.req("dm-1", "door.lock"))
	checkFinal(t, h.final("dm-1", 1), command.StatusSucceeded, command.ReasonOK)
	h.stop()
	path := filepath.Join(h.dir, "commands", "ledger.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) < 3 {
		t.Fatalf("ledger has %d lines", len(lines))
	}
	lines[0] = strings.Replace(lines[0], `"dm-1"`, `"dm-X"`, 1) // CRC no longer matches
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	issuedBefore := h.clock.Now().Add(-time.Second)
	h.start()
	frames := h.tx.Count()
	early := h.req("dm-2", "door.lock")
	early.IssuedAt = issuedBefore.UnixMilli()
	h.send(early)
	checkFinal(t, h.final("dm-2", 1), command.StatusRejected, command.ReasonLedgerDamaged)
	if h.tx.Count() != frames {
		t.Error("a command issued before the damage was actuated")
	}
	h.clock.Advance(h.cfg.ClockSkew.Std() + time.Second)
	h.send(h.req("dm-3", "door.lock"))
	checkFinal(t, h.final("dm-3", 1), command.StatusSucceeded, command.ReasonOK)
}

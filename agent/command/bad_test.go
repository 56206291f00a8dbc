package command_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
)

// TestBadCommands is the bad-command suite of issue 6: every case ends with
// zero actuation frames and a final response that carries a reason.
func TestBadCommands(t *testing.T) {
	t.Parallel()
	signer, signerKey := newKey(t)
	_, other := newKey(t)
	withKey := func(c *command.Config) { c.PublicKeys = []string{base64.StdEncoding.EncodeToString(signer)} }
	tests := []struct {
		name     string
		mut      func(*command.Config)
		setup    func(h *harness)
		payload  func(h *harness, id string) []byte // nil: h.req(id, "door.lock")
		edit     func(h *harness, r *command.Request)
		wantSt   command.Status
		wantCode string
	}{
		{name: "expired", edit: func(h *harness, r *command.Request) {
			r.IssuedAt = h.clock.Now().Add(-time.Minute).UnixMilli()
		}, wantSt: command.StatusRejected, wantCode: command.ReasonExpired},
		{name: "issued in the future", edit: func(h *harness, r *command.Request) {
			r.IssuedAt = h.clock.Now().Add(time.Minute).UnixMilli()
		}, wantSt: command.StatusRejected, wantCode: command.ReasonFuture},
		{name: "validity too long", edit: func(h *harness, r *command.Request) {
			r.ValidMS = int64(time.Hour / time.Millisecond)
		}, wantSt: command.StatusRejected, wantCode: command.ReasonValidityTooLong},
		{name: "wrong device", edit: func(h *harness, r *command.Request) { r.Device = "TCU-00043" },
			wantSt: command.StatusRejected, wantCode: command.ReasonWrongDevice},
		{name: "id differs from topic", payload: func(h *harness, id string) []byte {
			return mustJSON(t, h.req("other-id", "door.lock"))
		}, wantSt: command.StatusRejected, wantCode: command.ReasonIDMismatch},
		{name: "malformed json", payload: func(h *harness, id string) []byte {
			return []byte(`{"id":"` + id + `","name":"door.lock",`)
		}, wantSt: command.StatusRejected, wantCode: command.ReasonMalformed},
		{name: "unknown field", payload: func(h *harness, id string) []byte {
			b := mustJSON(t, h.req(id, "door.lock"))
			return append(b[:len(b)-1], []byte(`,"force":true}`)...)
		}, wantSt: command.StatusRejected, wantCode: command.ReasonMalformed},
		{name: "oversized", payload: func(h *harness, id string) []byte {
			return append([]byte(`{"id":"`+id+`","pad":"`), bytes.Repeat([]byte("x"), 8192)...)
		}, wantSt: command.StatusRejected, wantCode: command.ReasonTooLarge},
		{name: "unknown name", edit: func(h *harness, r *command.Request) { r.Name = "trunk.open" },
			wantSt: command.StatusRejected, wantCode: command.ReasonUnknownCommand},
		{name: "unexpected params", edit: func(h *harness, r *command.Request) { r.Params = json.RawMessage(`{"force":true}`) },
			wantSt: command.StatusRejected, wantCode: command.ReasonBadParams},
		{name: "clock not trusted", setup: func(h *harness) { h.trusted.Store(false) },
			wantSt: command.StatusRejected, wantCode: command.ReasonClockUntrusted},
		{name: "missing signature", mut: withKey,
			wantSt: command.StatusRejected, wantCode: command.ReasonBadSignature},
		{name: "signature by unknown key", mut: withKey, edit: func(h *harness, r *command.Request) { command.Sign(r, other) },
			wantSt: command.StatusRejected, wantCode: command.ReasonBadSignature},
		{name: "signed then tampered", mut: withKey, edit: func(h *harness, r *command.Request) {
			r.Name = "door.unlock"
			command.Sign(r, signerKey)
			r.Name = "door.lock"
		}, wantSt: command.StatusRejected, wantCode: command.ReasonBadSignature},
		{name: "garbage signature", mut: withKey, edit: func(h *harness, r *command.Request) { r.Sig = "!!" },
			wantSt: command.StatusRejected, wantCode: command.ReasonBadSignature},
		{name: "interlock violated: moving vehicle", setup: func(h *harness) { h.emit(sigSpeed, 42) },
			edit:   func(h *harness, r *command.Request) { r.Name = "door.unlock" },
			wantSt: command.StatusRejected, wantCode: command.ReasonInterlock},
		{name: "interlock: not stopped long enough", setup: func(h *harness) {
			h.emit(sigSpeed, 3)
			command.ObserveInterlocks(h.eng)
			h.emit(sigSpeed, 0)
		}, edit: func(h *harness, r *command.Request) { r.Name = "door.unlock" },
			wantSt: command.StatusRejected, wantCode: command.ReasonInterlock},
		{name: "interlock input stale", setup: func(h *harness) {
			h.clock.Advance(10 * time.Second)
		}, edit: func(h *harness, r *command.Request) { r.Name = "door.unlock" },
			wantSt: command.StatusRejected, wantCode: command.ReasonInterlockStale},
		{name: "interlock input missing", mut: func(c *command.Config) { c.Interlocks[1].Signal = "Vehicle.Nope" },
			edit:   func(h *harness, r *command.Request) { r.Name = "door.unlock" },
			wantSt: command.StatusRejected, wantCode: command.ReasonInterlockMissing},
		{name: "armed ignition.disable never reaches standstill", mut: func(c *command.Config) {
			c.Commands[3].ArmTimeout = dur(300 * time.Millisecond)
		}, setup: func(h *harness) { h.emit(sigSpeed, 42) },
			edit:   func(h *harness, r *command.Request) { r.Name = "ignition.disable" },
			wantSt: command.StatusTimedOut, wantCode: command.ReasonInterlockNotMet},
		{name: "no transmitter for bus", mut: func(c *command.Config) { c.Commands[0].Bus = "gone" },
			wantSt: command.StatusFailed, wantCode: command.ReasonNoTransmitter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tt.mut)
			if tt.setup != nil {
				tt.setup(h)
			}
			id := "bad-1"
			var payload []byte
			if tt.payload != nil {
				payload = tt.payload(h, id)
			} else {
				r := h.req(id, "door.lock")
				if tt.edit != nil {
					tt.edit(h, &r)
				}
				payload = mustJSON(t, r)
			}
			h.sendRaw(requestTopic(id), payload)
			checkFinal(t, h.final(id, 1), tt.wantSt, tt.wantCode)
			if n := h.tx.Count(); n != 0 {
				t.Errorf("%d actuation frames, want 0: %+v", n, h.tx.Frames())
			}
		})
	}
}

// TestReplayedID: a redelivered id is answered with its recorded result and
// never actuated again, also after a restart.
func TestReplayedID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.req("replay-1", "door.lock")
	h.send(r)
	first := h.final(r.ID, 1)
	checkFinal(t, first, command.StatusSucceeded, command.ReasonOK)

	if diff := cmp.Diff(first, h.replayFinal(r, 2)); diff != "" {
		t.Errorf("replay answer differs from the recorded one (-want +got):\n%s", diff)
	}
	h.restart()
	if diff := cmp.Diff(first, h.replayFinal(r, 3)); diff != "" {
		t.Errorf("replay answer after restart differs from the recorded one (-want +got):\n%s", diff)
	}
	// A refused id stays refused too, even once its cause is gone.
	bad := h.req("replay-2", "door.unlock")
	h.emit(sigSpeed, 30)
	h.send(bad)
	checkFinal(t, h.final(bad.ID, 1), command.StatusRejected, command.ReasonInterlock)
	h.parked()
	checkFinal(t, h.replayFinal(bad, 2), command.StatusRejected, command.ReasonInterlock)
	if n := h.tx.Count(); n != 1 {
		t.Errorf("%d frames, want 1 (only the first door.lock)", n)
	}
}

// replayFinal sends a replay of r until its n-th final answer arrives. A
// replay that comes while the previous answer's delivery is still being
// completed (published, not yet marked responded) is answered by that
// delivery, not a second time: one answer per delivery, never two at once
// (TestSystemCommandFlood). The test retries rather than race that window.
func (h *harness) replayFinal(r command.Request, n int) command.Response {
	h.t.Helper()
	for try := 1; ; try++ {
		h.send(r)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := h.resp.WaitFinal(ctx, r.ID, n)
		cancel()
		if err == nil {
			return resp
		}
		if try == 5 {
			h.t.Fatalf("replay of %s: no answer %d after %d sends (responses: %+v)", r.ID, n, try, h.resp.Responses())
		}
	}
}

// TestConflictingCommand: a command for a busy actuator is rejected and
// never interleaved.
func TestConflictingCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *command.Config) { c.Commands[0].Timeout = dur(time.Minute) })
	h.silent.Store(true)
	sent := h.tx.Sent()
	h.send(h.req("busy-1", "door.lock"))
	<-sent
	h.send(h.req("busy-2", "door.unlock"))
	r := h.final("busy-2", 1)
	checkFinal(t, r, command.StatusRejected, command.ReasonConflict)
	if !strings.Contains(r.Reason, "busy-1") {
		t.Errorf("reason %q does not name the running command", r.Reason)
	}
	h.emit(sigLocked, 1) // the ECU answers busy-1 at last
	checkFinal(t, h.final("busy-1", 1), command.StatusSucceeded, command.ReasonOK)
	for _, f := range h.tx.Frames() {
		if f.Signals["LockRequest"] != 1 {
			t.Errorf("frame %+v sent, want only door.lock frames", f)
		}
	}
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

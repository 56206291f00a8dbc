package command_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
)

// gateResponder holds the first response for id until released, then
// passes everything on.
type gateResponder struct {
	next    command.Responder
	id      string
	held    chan struct{} // closed when the first response for id is held
	release chan struct{}
	once    atomic.Bool
}

func (g *gateResponder) Respond(ctx context.Context, resp command.Response) error {
	if resp.ID == g.id && resp.Status != command.StatusInProgress && g.once.CompareAndSwap(false, true) {
		close(g.held)
		<-g.release
	}
	return g.next.Respond(ctx, resp)
}

// TestReplayWhileAnswering: a fresh publish of an id whose recorded
// answer is still being published (the broker has not acknowledged it
// yet) gets its answer once that publish is done; before, the second
// delivery was dropped as a duplicate and the replay went unanswered.
func TestReplayWhileAnswering(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := &gateResponder{next: h.resp, id: "replaying-1", held: make(chan struct{}), release: make(chan struct{})}
	h.restartWith(g)
	h.emit(sigSpeed, 30)
	req := h.req("replaying-1", "door.unlock") // refused: moving
	h.send(req)
	<-g.held
	h.send(req) // the replay, while the first answer is being published
	h.sync()    // the dispatcher has handled it
	close(g.release)
	first := h.final(req.ID, 1)
	checkFinal(t, first, command.StatusRejected, command.ReasonInterlock)
	if diff := cmp.Diff(first, h.final(req.ID, 2)); diff != "" {
		t.Errorf("replay answer differs from the recorded one (-want +got):\n%s", diff)
	}
	if n := h.tx.Count(); n != 0 {
		t.Errorf("%d frames, want 0", n)
	}
}

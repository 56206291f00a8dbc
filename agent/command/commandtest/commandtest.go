// Package commandtest holds hand-written fakes for testing the command
// engine and its wiring: a transmitter that records frames (with fault
// knobs), a responder that records responses, and a settable clock.
package commandtest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
)

// Frame is one recorded Transmit call.
type Frame struct {
	Bus     string
	Message string
	Signals map[string]float64
	Time    time.Time // wall time of the call
}

// Transmitter records frames. Set the knobs before use.
type Transmitter struct {
	// Bus is recorded in each frame.
	Bus string
	// Fail, when set, is returned by every Transmit (the frame is still
	// recorded as attempted).
	Fail error
	// OnTransmit, when set, is called after each recorded frame (a fake
	// ECU reacting to it). It must not call back into the transmitter.
	OnTransmit func(Frame)

	mu     sync.Mutex
	frames []Frame // guarded by mu
	sent   chan struct{}
}

// Transmit implements drivers.Transmitter.
func (t *Transmitter) Transmit(ctx context.Context, message string, signals map[string]float64) error {
	f := Frame{Bus: t.Bus, Message: message, Signals: maps.Clone(signals), Time: time.Now()}
	t.mu.Lock()
	t.frames = append(t.frames, f)
	if t.sent != nil {
		close(t.sent)
		t.sent = nil
	}
	fail, on := t.Fail, t.OnTransmit
	t.mu.Unlock()
	if fail != nil {
		return fail
	}
	if on != nil {
		on(f)
	}
	return nil
}

// Frames returns the frames recorded so far.
func (t *Transmitter) Frames() []Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Frame(nil), t.frames...)
}

// Count returns the number of Transmit calls.
func (t *Transmitter) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.frames)
}

// Sent returns a channel closed at the next Transmit call.
func (t *Transmitter) Sent() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sent == nil {
		t.sent = make(chan struct{})
	}
	return t.sent
}

// Responder records responses.
type Responder struct {
	// Fail, when set, is returned by Respond (the response is not recorded).
	Fail error

	mu    sync.Mutex
	resps []command.Response // guarded by mu
	wake  chan struct{}      // guarded by mu
}

// Respond implements command.Responder.
func (r *Responder) Respond(ctx context.Context, resp command.Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		return r.Fail
	}
	r.resps = append(r.resps, resp)
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	return nil
}

// SetFail sets the Fail knob safely while the engine runs.
func (r *Responder) SetFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Fail = err
}

// Responses returns the responses recorded so far.
func (r *Responder) Responses() []command.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]command.Response(nil), r.resps...)
}

// For returns the responses recorded for id.
func (r *Responder) For(id string) []command.Response {
	var out []command.Response
	for _, resp := range r.Responses() {
		if resp.ID == id {
			out = append(out, resp)
		}
	}
	return out
}

// WaitFinal waits until n final responses for id were recorded and returns
// the last one.
func (r *Responder) WaitFinal(ctx context.Context, id string, n int) (command.Response, error) {
	for {
		r.mu.Lock()
		var finals []command.Response
		for _, resp := range r.resps {
			if resp.ID == id && resp.Final() {
				finals = append(finals, resp)
			}
		}
		if r.wake == nil {
			r.wake = make(chan struct{})
		}
		wake := r.wake
		r.mu.Unlock()
		if len(finals) >= n {
			return finals[len(finals)-1], nil
		}
		select {
		case <-ctx.Done():
			return command.Response{}, fmt.Errorf("wait for final response %d of %s: %w", n, id, ctx.Err())
		case <-wake:
		}
	}
}

// Clock is a settable wall clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

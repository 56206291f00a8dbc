package canbus

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueLen is the number of frames an Endpoint of a Virtual bus
// buffers before it drops (and counts) further frames. At 8,700 frames/s
// (a fully loaded 1 Mbit/s bus) it holds about half a second of traffic.
const DefaultQueueLen = 4096

// A DropCounter reports how many received frames a bus endpoint has
// discarded because its reader was too slow (or, for SocketCAN, because the
// kernel queue overflowed). Bus implementations may implement it; consumers
// discover it by type assertion.
type DropCounter interface {
	Dropped() uint64
}

// Virtual is an in-process CAN bus. Every frame sent by one endpoint is
// delivered to every other attached endpoint (not back to the sender, like a
// SocketCAN socket without CAN_RAW_RECV_OWN_MSGS). Sending never blocks:
// an endpoint whose queue is full drops the frame and counts it.
//
// The zero value is not usable; call NewVirtual.
type Virtual struct {
	queueLen int
	now      func() time.Time

	mu  sync.Mutex // serialises Attach/detach
	eps atomic.Pointer[[]*Endpoint]
}

// NewVirtual returns an empty virtual bus with DefaultQueueLen per endpoint.
func NewVirtual() *Virtual { return NewVirtualSize(DefaultQueueLen) }

// NewVirtualSize returns an empty virtual bus whose endpoints buffer up to
// queueLen frames each (minimum 1).
func NewVirtualSize(queueLen int) *Virtual {
	if queueLen < 1 {
		queueLen = 1
	}
	v := &Virtual{queueLen: queueLen, now: time.Now}
	v.eps.Store(&[]*Endpoint{})
	return v
}

// Attach connects a new endpoint to the bus. The endpoint implements Bus;
// Close detaches it.
func (v *Virtual) Attach() *Endpoint {
	e := &Endpoint{
		bus:   v,
		queue: make(chan Frame, v.queueLen),
		done:  make(chan struct{}),
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.eps.Load()
	eps := make([]*Endpoint, len(old), len(old)+1)
	copy(eps, old)
	eps = append(eps, e)
	v.eps.Store(&eps)
	return e
}

// Endpoints returns the number of attached endpoints.
func (v *Virtual) Endpoints() int { return len(*v.eps.Load()) }

func (v *Virtual) detach(e *Endpoint) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.eps.Load()
	eps := make([]*Endpoint, 0, len(old))
	for _, x := range old {
		if x != e {
			eps = append(eps, x)
		}
	}
	v.eps.Store(&eps)
}

// deliver hands f to every endpoint except from. It never blocks.
func (v *Virtual) deliver(from *Endpoint, f *Frame) {
	for _, e := range *v.eps.Load() {
		if e == from {
			continue
		}
		select {
		case e.queue <- *f:
		default:
			e.dropped.Add(1)
		}
	}
}

// Endpoint is one attachment to a Virtual bus. It implements Bus and
// DropCounter. It is safe for concurrent use.
type Endpoint struct {
	bus     *Virtual
	queue   chan Frame
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	sent    atomic.Uint64
}

var (
	_ Bus         = (*Endpoint)(nil)
	_ DropCounter = (*Endpoint)(nil)
)

// Send delivers f to every other endpoint of the bus. The frame is
// timestamped with the bus's clock at send time (the moment every receiver
// "sees" it). Send fails only when the endpoint is closed or f is invalid.
func (e *Endpoint) Send(_ context.Context, f Frame) error {
	select {
	case <-e.done:
		return fmt.Errorf("send on virtual can endpoint: %w", net.ErrClosed)
	default:
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("send on virtual can endpoint: %w", err)
	}
	f.Time = e.bus.now()
	e.sent.Add(1)
	e.bus.deliver(e, &f)
	return nil
}

// Receive returns the next frame delivered to this endpoint.
func (e *Endpoint) Receive(ctx context.Context) (Frame, error) {
	// After Close, frames still queued are discarded, not returned.
	select {
	case <-e.done:
		return Frame{}, fmt.Errorf("receive on virtual can endpoint: %w", net.ErrClosed)
	default:
	}
	select {
	case f := <-e.queue:
		return f, nil
	case <-e.done:
		return Frame{}, fmt.Errorf("receive on virtual can endpoint: %w", net.ErrClosed)
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// tryReceive returns a queued frame without blocking.
func (e *Endpoint) tryReceive() (Frame, bool) {
	select {
	case f := <-e.queue:
		return f, true
	default:
		return Frame{}, false
	}
}

// Close detaches the endpoint; a blocked Receive returns an error wrapping
// net.ErrClosed. Close is idempotent.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		e.bus.detach(e)
		close(e.done)
	})
	return nil
}

// Dropped returns the number of frames this endpoint discarded because its
// queue was full.
func (e *Endpoint) Dropped() uint64 { return e.dropped.Load() }

// Sent returns the number of frames this endpoint has sent.
func (e *Endpoint) Sent() uint64 { return e.sent.Load() }

package socketcan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// bus is what Reopener needs from a Conn (a seam for tests).
type bus interface {
	canbus.Bus
	Stats() Stats
}

// Backoff bounds the Reopener's wait between failed opens. The wait starts
// at Min, doubles per failure up to Max, and is jittered by ±25 %.
type Backoff struct {
	Min, Max time.Duration
}

// minHealthy is how long a socket must live for its failure to count as a
// fresh start rather than another consecutive failure.
const minHealthy = time.Second

// DefaultBackoff is used when Reopen is given a zero Backoff.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// Reopener is a canbus.Bus on one interface that survives the interface
// going down or disappearing: when Open or I/O fails with
// drivers.ErrNotReady it closes the socket and reopens with jittered
// exponential backoff, blocking Receive and Send meanwhile (no busy loop).
// Frames arriving while no socket is open are lost.
type Reopener struct {
	iface   string
	opts    Options
	backoff Backoff
	log     *slog.Logger
	open    func(string, Options) (bus, error)

	done      chan struct{}
	closeOnce sync.Once

	// opening serialises (re)opening: a one-slot semaphore rather than a
	// mutex, so that a Send waiting for the socket honours its context
	// while Receive sits in the backoff.
	opening  chan struct{}
	mu       sync.Mutex // guards the fields below
	cur      atomic.Pointer[busBox]
	base     Stats     // counters of closed sockets; guarded by mu
	fails    int       // consecutive failures (opens, short-lived sockets); guarded by mu
	down     bool      // last open failed (for logging once per change); guarded by mu
	openedAt time.Time // when cur was opened; guarded by mu
	churn    bool      // the last socket died young: back off before reopening; guarded by mu

	reopens atomic.Uint64
	lastErr atomic.Pointer[string]
}

type busBox struct{ b bus }

var (
	_ canbus.Bus           = (*Reopener)(nil)
	_ canbus.BatchReceiver = (*Reopener)(nil)
)

// Reopen returns a Reopener for iface. It does not open the socket until
// the first Receive or Send.
func Reopen(iface string, opts Options, b Backoff) *Reopener {
	if b.Min <= 0 || b.Max < b.Min {
		b = DefaultBackoff
	}
	open := func(iface string, opts Options) (bus, error) { return Open(iface, opts) }
	return newReopener(iface, opts, b, open)
}

func newReopener(iface string, opts Options, b Backoff, open func(string, Options) (bus, error)) *Reopener {
	return &Reopener{iface: iface, opts: opts, backoff: b, log: opts.logger(), open: open,
		done: make(chan struct{}), opening: make(chan struct{}, 1)}
}

// Receive returns the next frame, reopening the socket as needed.
func (r *Reopener) Receive(ctx context.Context) (canbus.Frame, error) {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return canbus.Frame{}, err
		}
		f, err := b.Receive(ctx)
		if err == nil || !r.retryable(b, err) {
			return f, err
		}
	}
}

// ReceiveBatch returns the next frames (at least one), reopening the
// socket as needed; it reads several per system call where the socket
// can (Conn.ReceiveBatch, recvmmsg).
func (r *Reopener) ReceiveBatch(ctx context.Context, fs []canbus.Frame) (int, error) {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return 0, err
		}
		n, err := canbus.ReceiveBatch(ctx, b, fs)
		if err == nil || !r.retryable(b, err) {
			return n, err
		}
	}
}

// Send transmits f, reopening the socket as needed; ctx bounds the wait.
func (r *Reopener) Send(ctx context.Context, f canbus.Frame) error {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return err
		}
		err = b.Send(ctx, f)
		if err == nil || !r.retryable(b, err) {
			return err
		}
	}
}

// retryable drops b after a not-ready error so the next call reopens.
func (r *Reopener) retryable(b bus, err error) bool {
	if !errors.Is(err, drivers.ErrNotReady) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if box := r.cur.Load(); box != nil && box.b == b {
		r.dropLocked(box.b, err)
	}
	return true
}

func (r *Reopener) dropLocked(b bus, err error) {
	r.cur.Store(nil)
	// A socket that fails right after opening (a flapping or half-working
	// interface) must not make Receive an open/close busy loop.
	if time.Since(r.openedAt) < minHealthy {
		r.churn = true
	} else {
		r.fails = 0
	}
	r.base = addStats(r.base, b.Stats())
	_ = b.Close()
	r.noteErr(err)
	r.log.Warn("can interface lost", "iface", r.iface, "err", err)
}

func (r *Reopener) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// conn returns the open socket, opening it with backoff if needed.
func (r *Reopener) conn(ctx context.Context) (bus, error) {
	if box := r.cur.Load(); box != nil {
		return box.b, nil
	}
	select {
	case r.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.done:
		return nil, fmt.Errorf("reopen %s: %w", r.iface, net.ErrClosed)
	}
	defer func() { <-r.opening }()
	for {
		if r.closed() {
			return nil, fmt.Errorf("reopen %s: %w", r.iface, net.ErrClosed)
		}
		if box := r.cur.Load(); box != nil {
			return box.b, nil
		}
		r.mu.Lock()
		churn := r.churn
		r.churn = false
		r.mu.Unlock()
		if churn {
			if err := r.wait(ctx); err != nil {
				return nil, err
			}
		}
		b, err := r.open(r.iface, r.opts)
		if err == nil {
			r.mu.Lock()
			r.cur.Store(&busBox{b})
			r.openedAt = time.Now()
			if r.down || r.reopens.Load() > 0 {
				r.log.Info("can interface open", "iface", r.iface)
			}
			r.down = false
			r.reopens.Add(1)
			r.mu.Unlock()
			return b, nil
		}
		if !errors.Is(err, drivers.ErrNotReady) {
			return nil, err
		}
		r.noteErr(err)
		r.mu.Lock()
		if !r.down {
			r.log.Warn("can interface not ready", "iface", r.iface, "err", err)
			r.down = true
		}
		r.mu.Unlock()
		if err := r.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// wait sleeps the next backoff interval, or until ctx or Close.
func (r *Reopener) wait(ctx context.Context) error {
	r.mu.Lock()
	d := backoff.Policy{Base: r.backoff.Min, Max: r.backoff.Max, Spread: 0.25}.Delay(r.fails)
	r.fails++
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return fmt.Errorf("reopen %s: %w", r.iface, net.ErrClosed)
	case <-t.C:
		return nil
	}
}

// Close closes the current socket and makes blocked and future calls
// return an error wrapping net.ErrClosed.
func (r *Reopener) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		if box := r.cur.Swap(nil); box != nil {
			err = box.b.Close()
			r.mu.Lock()
			r.base = addStats(r.base, box.b.Stats())
			r.mu.Unlock()
		}
	})
	return err
}

// LastError returns the last error that closed the socket or failed an
// open ("" if none yet).
func (r *Reopener) LastError() string {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (r *Reopener) noteErr(err error) {
	msg := err.Error()
	r.lastErr.Store(&msg)
}

// Connected reports whether a socket is open right now.
func (r *Reopener) Connected() bool { return r.cur.Load() != nil }

// Opens returns how many times a socket was opened (1 + reopens).
func (r *Reopener) Opens() uint64 { return r.reopens.Load() }

// Stats returns counters summed over every socket opened so far; State is
// that of the current socket.
func (r *Reopener) Stats() Stats {
	r.mu.Lock()
	s := r.base
	r.mu.Unlock()
	s.State = StateActive
	if box := r.cur.Load(); box != nil {
		cs := box.b.Stats()
		s = addStats(s, cs)
		s.State, s.TxErrors, s.RxErrors = cs.State, cs.TxErrors, cs.RxErrors
	}
	return s
}

// State returns the current socket's controller state.
func (r *Reopener) State() State { return r.Stats().State }

// Dropped returns the kernel drops summed over every socket.
func (r *Reopener) Dropped() uint64 { return r.Stats().Drops }

func addStats(a, b Stats) Stats {
	a.RxFrames += b.RxFrames
	a.TxFrames += b.TxFrames
	a.Drops += b.Drops
	a.ErrorFrames += b.ErrorFrames
	a.BusOffs += b.BusOffs
	return a
}

package canbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Redial backoff defaults: short enough that a bus that comes back is
// usable again within a second (the wait never exceeds 1.25 × RedialMax),
// long enough that an absent bus costs a dial attempt twice a second.
const (
	RedialMin = 20 * time.Millisecond
	RedialMax = 500 * time.Millisecond
)

// redialHealthy is how long a connection must live for its loss to reset
// the backoff (a peer that accepts and at once hangs up must not make
// Receive a dial/close busy loop).
const redialHealthy = time.Second

// RedialOptions configure a Redialer.
type RedialOptions struct {
	// Dial opens a connection. Required.
	Dial func(ctx context.Context) (Bus, error)
	// Lost reports whether an error from Dial, Send or Receive means the
	// bus is (temporarily) gone, so the Redialer reconnects; other errors
	// are returned to the caller. Required.
	Lost func(error) bool
	// Min and Max bound the jittered exponential wait between failed
	// dials; zero means RedialMin and RedialMax.
	Min, Max time.Duration
	// Name is used in log lines and errors.
	Name string
	// Logger receives one line per change (lost, not ready, connected);
	// nil discards.
	Logger *slog.Logger
}

// Redialer is a Bus that survives its connection going away: when Dial,
// Send or Receive fails with an error Lost accepts, it drops the
// connection and dials again with jittered exponential backoff (bounded by
// Max, so a returning bus is picked up quickly). Receive waits for the new
// connection; Send waits too, but only as long as its context allows.
// Frames sent on the bus while no connection is open are lost. It
// implements Bus and DropCounter and is safe for concurrent use.
type Redialer struct {
	o   RedialOptions
	log *slog.Logger

	done      chan struct{}
	closeOnce sync.Once
	// dialing is a one-slot semaphore serialising (re)dials; unlike a
	// mutex, a caller waiting for it honours its context.
	dialing chan struct{}

	cur atomic.Pointer[redialBox]

	mu       sync.Mutex // guards the fields below
	fails    int        // consecutive failed dials / short-lived connections
	down     bool       // logged "not ready" since the last connection
	dialedAt time.Time
	drops    uint64 // drops of closed connections

	dials   atomic.Uint64
	lastErr atomic.Pointer[string]
}

type redialBox struct{ b Bus }

var (
	_ Bus         = (*Redialer)(nil)
	_ DropCounter = (*Redialer)(nil)
)

// NewRedialer returns a Redialer. It does not dial until the first Send or
// Receive.
func NewRedialer(o RedialOptions) *Redialer {
	if o.Min <= 0 {
		o.Min = RedialMin
	}
	if o.Max < o.Min {
		o.Max = max(RedialMax, o.Min)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Redialer{o: o, log: log, done: make(chan struct{}), dialing: make(chan struct{}, 1)}
}

// Receive returns the next frame, reconnecting as needed.
func (r *Redialer) Receive(ctx context.Context) (Frame, error) {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return Frame{}, err
		}
		f, err := b.Receive(ctx)
		if err == nil || !r.lost(b, err) {
			return f, err
		}
	}
}

// ReceiveBatch fills fs with the next frames (at least one), reconnecting
// as needed. It uses the connection's own batch read when it has one.
func (r *Redialer) ReceiveBatch(ctx context.Context, fs []Frame) (int, error) {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return 0, err
		}
		n, err := ReceiveBatch(ctx, b, fs)
		if err == nil || !r.lost(b, err) {
			return n, err
		}
	}
}

// Send transmits f, reconnecting as needed; ctx bounds the wait for a
// connection.
func (r *Redialer) Send(ctx context.Context, f Frame) error {
	for {
		b, err := r.conn(ctx)
		if err != nil {
			return err
		}
		err = b.Send(ctx, f)
		if err == nil || !r.lost(b, err) {
			return err
		}
	}
}

// Connected reports whether a connection is open right now.
func (r *Redialer) Connected() bool { return r.cur.Load() != nil }

// LastError returns the last error that dropped the connection or failed
// a dial ("" if none yet).
func (r *Redialer) LastError() string {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (r *Redialer) noteErr(err error) {
	msg := err.Error()
	r.lastErr.Store(&msg)
}

// Dials returns how many connections were opened so far.
func (r *Redialer) Dials() uint64 { return r.dials.Load() }

// Dropped returns the frames dropped, summed over every connection.
func (r *Redialer) Dropped() uint64 {
	r.mu.Lock()
	n := r.drops
	r.mu.Unlock()
	if box := r.cur.Load(); box != nil {
		n += dropCount(box.b)
	}
	return n
}

func dropCount(b Bus) uint64 {
	if dc, ok := b.(DropCounter); ok {
		return dc.Dropped()
	}
	return 0
}

// lost drops b after an error Lost accepts, so the next call redials; it
// reports whether the caller should retry.
func (r *Redialer) lost(b Bus, err error) bool {
	if r.closed() || !r.o.Lost(err) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if box := r.cur.Load(); box != nil && box.b == b {
		r.cur.Store(nil)
		if time.Since(r.dialedAt) >= redialHealthy {
			r.fails = 0
		} else {
			r.fails++
		}
		_ = b.Close()
		r.drops += dropCount(b)
		r.noteErr(err)
		r.log.Warn("can bus lost, reconnecting", "bus", r.o.Name, "err", err)
	}
	return true
}

func (r *Redialer) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *Redialer) errClosed() error {
	return fmt.Errorf("redial %s: %w", r.o.Name, net.ErrClosed)
}

// conn returns the open connection, dialling with backoff if needed.
func (r *Redialer) conn(ctx context.Context) (Bus, error) {
	if box := r.cur.Load(); box != nil {
		return box.b, nil
	}
	select {
	case r.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.done:
		return nil, r.errClosed()
	}
	defer func() { <-r.dialing }()
	for {
		if r.closed() {
			return nil, r.errClosed()
		}
		if box := r.cur.Load(); box != nil {
			return box.b, nil
		}
		r.mu.Lock()
		fails := r.fails
		r.mu.Unlock()
		if fails > 0 {
			if err := r.wait(ctx, fails); err != nil {
				return nil, err
			}
		}
		b, err := r.o.Dial(ctx)
		if err == nil {
			r.mu.Lock()
			if r.closed() {
				r.mu.Unlock()
				_ = b.Close()
				return nil, r.errClosed()
			}
			r.cur.Store(&redialBox{b})
			r.dialedAt = time.Now()
			if r.down || r.dials.Load() > 0 {
				r.log.Info("can bus connected", "bus", r.o.Name)
			}
			r.down = false
			r.dials.Add(1)
			r.mu.Unlock()
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !r.o.Lost(err) {
			return nil, err
		}
		r.noteErr(err)
		r.mu.Lock()
		r.fails++
		if !r.down {
			r.log.Warn("can bus not ready", "bus", r.o.Name, "err", err)
			r.down = true
		}
		r.mu.Unlock()
	}
}

// wait sleeps the backoff after fails consecutive failures, or until ctx
// is done or the Redialer is closed.
func (r *Redialer) wait(ctx context.Context, fails int) error {
	d := backoff.Policy{Base: r.o.Min, Max: r.o.Max, Spread: 0.25}.Delay(fails - 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return r.errClosed()
	case <-t.C:
		return nil
	}
}

// Close closes the current connection and makes blocked and future calls
// return an error wrapping net.ErrClosed. It is idempotent.
func (r *Redialer) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.mu.Lock()
		close(r.done)
		box := r.cur.Swap(nil)
		r.mu.Unlock()
		if box != nil {
			err = box.b.Close()
			r.mu.Lock()
			r.drops += dropCount(box.b)
			r.mu.Unlock()
		}
	})
	return err
}

// A BatchReceiver returns several frames per call (one system call or one
// wake-up for many frames). Buses may implement it; ReceiveBatch falls back
// to Receive.
type BatchReceiver interface {
	// ReceiveBatch blocks like Receive until at least one frame is
	// available, then fills fs with as many as are ready without blocking
	// and returns their number.
	ReceiveBatch(ctx context.Context, fs []Frame) (int, error)
}

// ReceiveBatch receives into fs through b's BatchReceiver, or one frame
// through Receive.
func ReceiveBatch(ctx context.Context, b Bus, fs []Frame) (int, error) {
	if len(fs) == 0 {
		return 0, errors.New("receive batch: empty buffer")
	}
	if br, ok := b.(BatchReceiver); ok {
		return br.ReceiveBatch(ctx, fs)
	}
	f, err := b.Receive(ctx)
	if err != nil {
		return 0, err
	}
	fs[0] = f
	return 1, nil
}

//go:build linux

package socketcan

import (
	"context"
	"sync"
	"time"
)

// deadlineWatch maps a context onto an os.File read or write deadline. It
// keeps its cancellation hook registered across calls made with the same
// context, so a receive loop on a long-lived context costs no timer or
// syscall per frame. A hook from an earlier context may still move the
// deadline into the past after a switch; callers treat a deadline error
// whose context is live and whose deadline has not passed as spurious,
// call invalidate and retry.
type deadlineWatch struct {
	set func(time.Time) error

	mu    sync.Mutex
	dl    time.Time       // deadline currently set; guarded by mu
	dirty bool            // a hook may have moved the deadline; guarded by mu
	done  <-chan struct{} // Done channel the hook watches; guarded by mu
	stop  func() bool     // unregisters the hook; guarded by mu
}

// arm sets the deadline to ctx's (none if it has none) and makes ctx's
// cancellation unblock pending I/O.
func (w *deadlineWatch) arm(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := ctx.Done(); d != w.done {
		w.releaseLocked()
		w.done = d
		if d != nil {
			w.stop = context.AfterFunc(ctx, func() { _ = w.set(aLongTimeAgo) })
		}
	}
	dl, _ := ctx.Deadline()
	if !w.dirty && dl.Equal(w.dl) {
		return nil
	}
	if err := w.set(dl); err != nil {
		return err
	}
	w.dl, w.dirty = dl, false
	return nil
}

// expired reports whether the armed deadline has passed.
func (w *deadlineWatch) expired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.dl.IsZero() && !time.Now().Before(w.dl)
}

// invalidate forces the next arm to set the deadline again.
func (w *deadlineWatch) invalidate() {
	w.mu.Lock()
	w.dirty = true
	w.mu.Unlock()
}

// release unregisters the cancellation hook (on Close).
func (w *deadlineWatch) release() {
	w.mu.Lock()
	w.releaseLocked()
	w.mu.Unlock()
}

func (w *deadlineWatch) releaseLocked() {
	if w.stop != nil && !w.stop() {
		w.dirty = true // the hook ran: the deadline is in the past
	}
	w.stop, w.done = nil, nil
}

package buffer

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Idle close. An open Badger store costs a parked TCU about 2.9 thread
// context switches a second even when nothing is written: its table
// allocator pool runs a fixed 2 s ticker that no option turns off, and
// each tick wakes the runtime's sysmon and a thread (docs/perf/idle.md).
// With Options.IdleClose set, the GC goroutine closes the store once it
// has not been used for that long and nothing is leased or being
// committed; the queue's in-memory state (counters, cursors, gone sets,
// seqs) stays, so the store is reopened without a scan by the next call
// that needs it: an Append, a Lease with something to lease, an Ack, a
// TTL expiry. Stats, Release and a Lease with nothing to lease do not
// reopen it. Close flushes the memtable and syncs, so a closed store holds
// every record on disk; the queue's own lock file (<Dir>.lock) keeps
// another process from taking the directory meanwhile.

// idleState is the idle-close state (guarded by Queue.mu).
type idleState struct {
	// closed: the store was closed while idle (q.db is nil).
	closed bool
	// last is the monotonic time of the last use of the store.
	last time.Time
	// busy counts commits between writeBatch and their sync: the store
	// must not close under them.
	busy int
	// armed: the GC goroutine's wait includes the idle deadline; a use
	// while it is not armed makes it recompute (usedLocked).
	armed bool
	// wait is the idle time that closes the store now: IdleClose, doubled
	// (up to maxIdleStretch×) each time a close turned out shorter than
	// the wait before it, halved back when a close lasts 4× the wait
	// (adaptWaitLocked). closedAt is when the store last closed.
	wait     time.Duration
	closedAt time.Time
	// oldest holds each class's oldest append time when the store
	// closed (Stats.OldestAge without reopening it).
	oldest [NumClasses]time.Time
	// closing is closed when the last idle close's DB.Close returned;
	// non-nil only while one is still running after idleCloseWait.
	closing chan struct{}
	// opens counts reopens after an idle close.
	opens atomic.Uint64
	// lock is the queue's lock file, held from Open to Close.
	lock *os.File
}

// usedLocked notes a use of the store.
func (q *Queue) usedLocked() {
	if q.opts.IdleClose <= 0 {
		return
	}
	q.idle.last = time.Now()
	if !q.idle.armed {
		q.idle.armed = true
		q.rearmGC()
	}
}

// idleOpenLocked reports whether an open store has an idle deadline.
func (q *Queue) idleOpenLocked() bool {
	return q.opts.IdleClose > 0 && !q.opts.InMemory && q.db != nil && !q.closed &&
		q.broken == nil && !q.idle.closed
}

// idleWaitLocked returns how long until the store's idle deadline; ok is
// false when it has none (closed, or idle close off): the next use re-arms
// the GC goroutine's wait. The deadline does not depend on leases or
// commits in progress, so that they do not wake the GC goroutine: at the
// deadline closeIdle checks them and postpones.
func (q *Queue) idleWaitLocked() (d time.Duration, ok bool) {
	q.idle.armed = q.idleOpenLocked()
	if !q.idle.armed {
		return 0, false
	}
	return max(q.idleWaitFor()-time.Since(q.idle.last), 0), true
}

// idleWaitFor is the current idle time before a close (guarded by mu).
func (q *Queue) idleWaitFor() time.Duration {
	return max(q.idle.wait, q.opts.IdleClose)
}

// maxIdleStretch bounds how far adaptWaitLocked stretches IdleClose.
const maxIdleStretch = 16

// adaptWaitLocked learns from a reopen whether the close paid: a store
// reopened sooner than it had waited before closing (records arriving
// just slower than IdleClose: a parked car's 1 min telemetry on an awake
// bus) would otherwise close and reopen, writing a table each time, on
// every record; the wait doubles until the records fit inside it. A close
// that lasts 4× the wait halves it back toward IdleClose.
func (q *Queue) adaptWaitLocked() {
	if q.opts.idleFixed {
		return
	}
	wait := q.idleWaitFor()
	closed := time.Since(q.idle.closedAt)
	switch {
	case closed < wait:
		q.idle.wait = min(2*wait, maxIdleStretch*q.opts.IdleClose)
	case closed >= 4*wait:
		q.idle.wait = max(wait/2, q.opts.IdleClose)
	}
	if q.idle.wait != wait {
		q.log.Debug("queue idle close wait changed", "from", wait, "to", q.idle.wait, "closed_for", closed.Round(time.Millisecond))
	}
}

// idleDueLocked reports whether the store's idle deadline has passed.
func (q *Queue) idleDueLocked() bool {
	return q.idleOpenLocked() && time.Since(q.idle.last) >= q.idleWaitFor()
}

// closeIdle closes the store if it is still idle (GC goroutine). The
// oldest append time of each class and the gone sets are saved first; a
// failure to do so keeps the store open (the next deadline tries again).
func (q *Queue) closeIdle() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.idleDueLocked() {
		return
	}
	q.pendMu.Lock()
	pending := len(q.pending) > 0 || q.stopping
	q.pendMu.Unlock()
	if pending || len(q.leased) > 0 || q.idle.busy > 0 {
		// In use after all (records in flight, a commit under way):
		// look again after another IdleClose.
		q.idle.last = time.Now()
		return
	}
	if free, ok := q.diskLocked(); ok && free < q.guard.floor {
		// Closing flushes the memtable into a new table: not on a disk
		// the space guard is already defending (the flush would retry
		// until space comes back). The store stays open.
		q.idle.last = time.Now()
		return
	}
	var oldest [NumClasses]time.Time
	err := func() (err error) {
		defer q.catchLocked("idle close", &err)
		for c := range Class(NumClasses) {
			if q.cls[c].records > 0 {
				oldest[c], _ = q.oldestLocked(c)
			}
		}
		return q.saveLoLocked()
	}()
	if err != nil || q.db == nil {
		q.idle.last = time.Now() // try again after another IdleClose
		q.log.Warn("queue idle close skipped", "err", err)
		return
	}
	q.swapMu.Lock()
	defer q.swapMu.Unlock()
	q.compact.mu.Lock()
	defer q.compact.mu.Unlock()
	db := q.db
	q.db = nil
	q.idle.closed = true
	q.idle.closedAt = time.Now()
	q.idle.oldest = oldest
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := closeStore(db, func() { q.hook("idle close") }); err != nil {
			// The memtable's WAL is still on disk: reopening replays it.
			q.log.Warn("queue store idle close failed", "err", err)
		}
	}()
	select {
	case <-done:
		q.log.Debug("queue store closed while idle", "idle", q.opts.IdleClose, "took", time.Since(start).Round(time.Microsecond))
	case <-time.After(cmp.Or(q.opts.idleCloseWait, idleCloseWait)):
		// A flush that cannot finish (a disk that filled up or hangs):
		// the queue does not wait with its lock held. Until the close
		// returns, the store cannot be reopened (Badger's directory lock
		// is still held) and calls that need it fail with ErrStorage.
		q.idle.closing = done
		q.log.Warn("queue store idle close still running; the store reopens once it returns")
	}
}

// idleCloseWait is how long closeIdle waits for DB.Close with the queue's
// lock held (Options.idleCloseWait overrides it in tests).
const idleCloseWait = 5 * time.Second

// closingLocked reports an idle close that has not returned yet.
func (q *Queue) closingLocked() error {
	if q.idle.closing == nil {
		return nil
	}
	select {
	case <-q.idle.closing:
		q.idle.closing = nil
		return nil
	default:
		return fmt.Errorf("reopen store: %w: closing it has not finished (disk full or hanging)", ErrStorage)
	}
}

// closeStore closes db, turning a panic into an error; before runs first
// (the tests' fault hook).
func closeStore(db *badger.DB, before func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("close", r)
		}
	}()
	before()
	return db.Close()
}

// wakeLocked reopens a store closed while idle. A store that no longer
// opens because it is damaged is handled like damage found while open
// (repairLocked: moved aside, a fresh store in its place); a storage fault
// or a lock conflict is returned (wrapping ErrStorage) and the store stays
// closed, so that the next call tries again.
func (q *Queue) wakeLocked() error {
	if !q.idle.closed {
		return nil
	}
	if q.closed {
		return ErrClosed
	}
	if err := q.closingLocked(); err != nil {
		return err
	}
	db, err := q.reopenBadger()
	for i := 0; i < len(openRetryDelays) && retryable(err); i++ {
		q.log.Warn("queue store did not reopen, retrying", "attempt", i+1, "err", err)
		time.Sleep(openRetryDelays[i])
		db, err = q.reopenBadger()
	}
	if retryable(err) {
		q.idle.closed = false
		q.log.Error("queue store damaged while closed", "err", err)
		q.repairLocked(nil, fmt.Errorf("%w: reopen: %w", ErrCorrupt, err))
		if q.broken != nil {
			return fmt.Errorf("%w: %w", ErrStorage, q.broken)
		}
		q.usedLocked()
		return nil
	}
	if err != nil {
		if !isStorage(err) {
			err = fmt.Errorf("%w: %w", ErrStorage, err)
		}
		return fmt.Errorf("reopen store: %w", err)
	}
	q.swapMu.Lock()
	q.db = db
	q.idle.closed = false
	q.swapMu.Unlock()
	q.idle.opens.Add(1)
	q.adaptWaitLocked()
	q.usedLocked()
	q.checkL0Locked()
	return nil
}

// reopenBadger opens the store again; a fault reading a damaged mmap'd
// file becomes an error (openStore).
func (q *Queue) reopenBadger() (*badger.DB, error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return openBadger(q.opts)
}

// lockPath is the queue's lock file next to the store directory.
func lockPath(dir string) string { return filepath.Clean(dir) + ".lock" }

// errLocked: another process holds the queue's lock file.
var errLocked = errors.New("queue store in use by another process")

// lockStore takes the queue's lock file (an exclusive flock, released by
// the kernel when the process ends). Badger's own directory lock is
// released while the store is closed for idleness; this one is held for
// the queue's whole life.
func lockStore(dir string) (*os.File, error) {
	f, err := os.OpenFile(lockPath(dir), os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // path from config
	if err != nil {
		return nil, fmt.Errorf("lock queue: %w", err)
	}
	if err := flock(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock queue %s: %w", lockPath(dir), err)
	}
	return f, nil
}

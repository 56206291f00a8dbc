package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcTick is the minimum spacing of the GC passes a commit asks for early
// (kickGCLocked).
const gcTick = time.Second

// ttlRecheck bounds the wait for a TTL deadline: deadlines are wall-clock
// times (records carry their append time) and the timer runs on the
// monotonic clock, so a clock that jumps forward (a TCU setting its clock
// after boot) delays an expiry by at most this much.
const ttlRecheck = 10 * time.Minute

// gcState is what the GC goroutine waits for (guarded by Queue.mu). An
// idle store has neither: the goroutine then sleeps on its channels and
// costs no wake-ups (docs/perf/buffer.md).
type gcState struct {
	// ttlDue is when the oldest record of a class with a TTL expires
	// (zero: no such record is known).
	ttlDue time.Time
	// dirty: the store was written (append, ack, eviction, expiry) since
	// the last pass; the next pass is due GCInterval after the last one.
	dirty bool
}

// rearmGC makes the GC goroutine recompute its deadline.
func (q *Queue) rearmGC() {
	select {
	case q.gcRearm <- struct{}{}:
	default:
	}
}

// dirtyLocked notes a write to the store.
func (q *Queue) dirtyLocked() {
	if !q.gc.dirty {
		q.gc.dirty = true
		q.rearmGC()
	}
}

// ttlAppendedLocked notes a record of class c appended at t.
func (q *Queue) ttlAppendedLocked(c Class, t time.Time) {
	ttl := q.opts.TTL[c]
	if ttl <= 0 {
		return
	}
	due := q.gc.ttlDue
	switch {
	case due.IsZero() || t.Add(ttl).Before(due):
		q.gc.ttlDue = t.Add(ttl)
		q.rearmGC()
	case !q.opts.Now().Before(due):
		// Overdue: the clock jumped (or a test's clock moved).
		q.rearmGC()
	}
}

// gcWaitLocked returns how long the GC goroutine may sleep before its next
// deadline, given the monotonic time of the last pass; ok is false when
// nothing is due at all.
func (q *Queue) gcWaitLocked(last time.Time) (d time.Duration, ok bool) {
	d = time.Duration(math.MaxInt64)
	if !q.gc.ttlDue.IsZero() {
		d = min(max(q.gc.ttlDue.Sub(q.opts.Now()), 0), ttlRecheck)
	}
	if q.gc.dirty && !q.idle.closed { // closed: the pass runs after the reopen
		d = min(d, max(q.opts.GCInterval-time.Since(last), 0))
	}
	if idle, ok := q.idleWaitLocked(); ok {
		d = min(d, idle)
	}
	return d, d != time.Duration(math.MaxInt64)
}

// gcLoop is the maintenance goroutine: TTL expiry, compaction and
// value-log GC for deleted chunks, and directory sizing. It sleeps until
// the next TTL deadline, until GCInterval after the last pass when the
// store was written since, or until a commit asks for a pass (gcKick) or
// for a new deadline (gcRearm); with nothing stored and nothing written
// it does not wake at all. It stops when q.stop is closed.
func (q *Queue) gcLoop() {
	defer q.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	last := time.Now()
	for {
		q.mu.Lock()
		d, ok := q.gcWaitLocked(last)
		q.mu.Unlock()
		if ok {
			timer.Reset(d)
		}
		force := false
		select {
		case <-q.stop:
			timer.Stop()
			return
		case <-timer.C:
		case <-q.gcKick:
			force = true
		case <-q.gcRearm:
		}
		timer.Stop() // Go >= 1.23: no stale tick after Stop
		q.gcIters.Add(1)
		q.mu.Lock()
		due := !q.gc.ttlDue.IsZero() && !q.opts.Now().Before(q.gc.ttlDue)
		collect := force || (q.gc.dirty && time.Since(last) >= q.opts.GCInterval)
		idle := q.idleDueLocked()
		// A store about to close for idleness gets its pending GC pass
		// first: closed, it would have to be reopened for it.
		collect = collect || (idle && q.gc.dirty)
		q.mu.Unlock()
		if due {
			q.sweep()
		}
		if collect {
			last = time.Now()
			q.collect()
		}
		if idle {
			q.closeIdle()
		}
	}
}

// sweep expires records past their TTL and sets the next TTL deadline.
func (q *Queue) sweep() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if err := q.wakeLocked(); err != nil {
		q.gc.ttlDue = q.opts.Now().Add(gcTick) // try again later
		q.log.Warn("queue ttl sweep: store did not reopen", "err", err)
		return
	}
	if q.closed || q.db == nil {
		return
	}
	q.usedLocked()
	var err error
	defer q.catchLocked("ttl sweep", &err)
	next, err := q.expireLocked(q.opts.Now(), 10000)
	if err != nil {
		// Try again later rather than spin on a failing store.
		q.gc.ttlDue = q.opts.Now().Add(gcTick)
		q.log.Warn("queue ttl sweep failed", "err", err)
		return
	}
	q.gc.ttlDue = next
	if err = q.saveLoLocked(); err != nil {
		q.log.Warn("queue ttl sweep not saved", "err", err)
	}
}

// collect persists pending gone sets, makes Badger account for the value-log
// space of deleted chunks, runs value-log GC until it finds nothing to
// rewrite, then measures the directory.
func (q *Queue) collect() {
	q.mu.Lock()
	if q.closed || q.db == nil {
		q.mu.Unlock()
		return
	}
	db := q.db
	err := func() (err error) {
		defer q.catchLocked("gc", &err)
		q.hook("gc")
		err = q.saveLoLocked()
		q.gc.dirty = false
		if err == nil && q.deleted > 0 && !q.opts.InMemory {
			if err = q.compactLocked(); err == nil {
				q.deleted = 0
			}
		}
		return err
	}()
	q.mu.Unlock()
	if err != nil {
		q.log.Warn("queue compaction failed", "err", err)
	}
	if q.opts.InMemory {
		return
	}
	var perr error
	more := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				perr = panicError("value log gc", r)
			}
		}()
		for range 64 {
			if err := q.valueLogGC(db); err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) && !errors.Is(err, errReplaced) {
					q.log.Warn("queue value log gc failed", "err", err)
				}
				return
			}
		}
		more = true // files left to rewrite: another pass
	}()
	size := dirSize(q.opts.Dir)
	q.mu.Lock()
	defer q.mu.Unlock()
	if perr != nil {
		q.log.Error("queue store panicked", "op", "value log gc", "err", perr)
		q.repairLocked(db, perr)
	}
	q.dirBytes = size
	if more {
		q.dirtyLocked()
	}
	q.afterGCLocked()
	// Value-log GC rewrites pointers into the tree.
	q.checkL0Locked()
}

// valueLogGC runs one value-log GC round (at most one file rewritten)
// with q.mu held, so that no append or ack writes to Badger meanwhile:
// Badger 4.9.6's rewrite reads the memtable's max version without the lock
// its writer holds (valueLog.rewrite → DB.MaxVersion vs memTable.Put, a
// data race the race detector reports). Queue data dies in order, so a
// round rarely copies anything and appends wait little.
// Holding q.mu also keeps db from being replaced (repairLocked holds it).
func (q *Queue) valueLogGC(db *badger.DB) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.db != db {
		return errReplaced
	}
	return db.RunValueLogGC(vlogDiscardRatio)
}

// errReplaced ends a GC pass whose store was closed or replaced.
var errReplaced = errors.New("store closed or replaced")

// vlogDiscardRatio: a value-log file is rewritten when at least half of it
// is deleted chunks. Queue data dies in append order, so files are almost
// always entirely dead (rewritten for free: nothing is copied) or entirely
// alive; half keeps the copying of the rare mixed file to at most its size.
const vlogDiscardRatio = 0.5

// CollectGarbage runs one compaction and value-log GC pass now (tools and
// benchmarks; the GC goroutine does this every GCInterval).
func (q *Queue) CollectGarbage() {
	q.collect()
}

// compactLocked makes Badger learn which value-log space deleted chunks
// freed. Badger counts a value as discarded only when a compaction drops
// it, and the queue's LSM tree (keys and value pointers only) is too small
// to fill L0 and compact on its own: the tombstones would sit in the
// memtable and no value-log file would ever qualify for GC. DropPrefix of
// a throw-away key flushes the memtables and compacts L0 into the base
// level, where each tombstone meets its chunk. It blocks Badger's writes
// while it runs (milliseconds for a tree of pointers); the queue holds its
// mutex, so appends wait instead of failing with ErrBlockedWrites.
func (q *Queue) compactLocked() error {
	// DropPrefix stops and restarts Badger's compactor set, like the
	// compactor goroutine's Flatten (compact.go).
	q.compact.mu.Lock()
	defer q.compact.mu.Unlock()
	err := q.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(flushKey), []byte{1}) })
	if err == nil {
		err = q.db.DropPrefix([]byte(flushKey))
	}
	if err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	return nil
}

// saveLoLocked persists gone sets and low-water marks that changed without
// a write (evictions while the disk was full, TTL expiry).
// Nothing changed, nothing is committed.
func (q *Queue) saveLoLocked() error {
	w := q.newTxnWriterLocked(false)
	defer w.discard()
	if err := q.writeMetaLocked(w, 0); err != nil {
		return err
	}
	if w.mem == 0 {
		return nil
	}
	return w.commit()
}

// dirSize returns the disk bytes allocated to the regular files under dir
// (Badger's .mem and .vlog files are sparse mmaps: their length is not
// their size on disk).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += allocated(fi)
			}
		}
		return nil
	})
	return n
}

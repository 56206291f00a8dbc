package buffer

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Compaction on demand. Badger v4.9.6 runs each of its compactors on a
// hard-coded 50 ms ticker whether or not there is anything to compact: 2
// compactors (its minimum when compaction is on) cost a parked TCU 40
// goroutine wake-ups a second, about 120 thread context switches. The
// queue runs Badger with no compactors (badgerOptions) and compacts level
// 0 itself, on one goroutine that sleeps on a channel until the write path
// sees level 0 fill up:
//
//   - every commit adds an estimate of the memtable bytes it wrote
//     (txnWriter); each time the sum passes l0CheckBytes, the committer
//     reads the level-0 table count (db.Levels, microseconds);
//   - at l0Compact tables it signals the compactor goroutine, which runs
//     db.Flatten(1): L0 into the base level, which holds the whole tree
//     (badgerOptions), until level 0 is empty;
//   - a memtable flush blocks while level 0 holds NumLevelZeroTablesStall
//     (12) tables, and with no Badger compactors only this goroutine
//     unblocks it: it is signalled at 4, checks again after each pass, and
//     blocks on nothing the stalled writer holds (it takes swapMu shared
//     and compactMu, never q.mu), so a stall ends as soon as the pass
//     removes tables;
//   - Open signals it too, so a store written with many level-0 tables (by
//     older options, or a crash before a pass) is compacted down;
//   - the GC pass's DropPrefix (compactLocked) compacts level 0 as well.
//
// Flatten and DropPrefix both stop and restart Badger's (here empty)
// compactor set, which is not safe concurrently: compactMu serialises them
// and any Close of the store. Lock order: mu, then swapMu, then compactMu.

// l0Compact is the level-0 table count that starts a compaction: Badger's
// own NumLevelZeroTables (badgerOptions), a third of the stall.
const l0Compact = 4

// memEntryOverhead estimates a memtable entry's bytes beyond its key and
// value: the skiplist node, the key's version and the value struct.
const memEntryOverhead = 128

// compactState is the compactor goroutine's state.
type compactState struct {
	mu    sync.Mutex    // serialises Flatten, DropPrefix and closing a store
	kick  chan struct{} // capacity 1: level 0 needs a pass
	stop  chan struct{} // closed by Close after the committer has stopped
	done  chan struct{} // closed when the goroutine returns
	since int64         // guarded by Queue.mu: memtable bytes since the last check
	// check: level 0 is checked after about this many memtable bytes, a
	// quarter of a memtable (a flush adds one table per memtable).
	check int64
	runs  atomic.Uint64 // passes run (tests)
}

func (c *compactState) init(memtable int64) {
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	c.check = max(memtable/4, 1)
}

// wroteLocked accounts n memtable bytes just committed and checks level 0
// when a quarter memtable has gone by since the last check.
func (q *Queue) wroteLocked(n int64) {
	q.dirtyLocked()
	q.compact.since += n
	if q.compact.since < q.compact.check {
		return
	}
	q.compact.since = 0
	q.checkL0Locked()
}

// checkL0Locked signals the compactor when level 0 holds l0Compact tables
// or more.
func (q *Queue) checkL0Locked() {
	if q.db != nil && !q.closed && l0Tables(q.db) >= l0Compact {
		q.kickCompact()
	}
}

func (q *Queue) kickCompact() {
	if q.opts.noCompact {
		return
	}
	select {
	case q.compact.kick <- struct{}{}:
	default:
	}
}

// l0Tables returns the number of level-0 tables.
func l0Tables(db *badger.DB) int {
	for _, l := range db.Levels() {
		if l.Level == 0 {
			return l.NumTables
		}
	}
	return 0
}

// compactLoop is the compactor goroutine.
func (q *Queue) compactLoop() {
	defer close(q.compact.done)
	for {
		select {
		case <-q.compact.stop:
			return
		case <-q.compact.kick:
		}
		// Writes go on during a pass: another memtable may have been
		// flushed meanwhile. Loop while level 0 stays at l0Compact or
		// more and a pass makes progress.
		for prev := -1; ; {
			n, err := q.compactL0()
			if err != nil {
				q.log.Warn("queue compaction failed", "err", err)
				break
			}
			if n < l0Compact || n == prev {
				break
			}
			prev = n
			select {
			case <-q.compact.stop:
				return
			default:
			}
		}
	}
}

// compactL0 runs one Flatten on the current store and returns the
// level-0 table count after it. A panic replaces the store, as elsewhere.
func (q *Queue) compactL0() (l0 int, err error) {
	var perr error
	q.swapMu.RLock()
	db := q.db
	if db == nil {
		q.swapMu.RUnlock()
		return 0, nil
	}
	func() {
		q.compact.mu.Lock()
		defer q.compact.mu.Unlock()
		defer func() {
			if r := recover(); r != nil {
				perr = panicError("compaction", r)
			}
		}()
		if l0Tables(db) < l0Compact {
			return
		}
		q.compact.runs.Add(1)
		if ferr := db.Flatten(1); ferr != nil {
			err = fmt.Errorf("flatten: %w", ferr)
			return
		}
		l0 = l0Tables(db)
	}()
	q.swapMu.RUnlock()
	if perr != nil {
		q.mu.Lock()
		q.log.Error("queue store panicked", "op", "compaction", "err", perr)
		q.repairLocked(db, perr)
		q.mu.Unlock()
		return 0, perr
	}
	return l0, err
}

package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcTick is the period of TTL sweeps; compaction and value-log GC run
// every GCInterval (or at once when the disk is nearly full).
const gcTick = time.Second

// gcLoop is the maintenance goroutine: TTL expiry, compaction and
// value-log GC for deleted chunks, and directory sizing. It stops when
// q.stop is closed.
func (q *Queue) gcLoop() {
	defer q.wg.Done()
	t := time.NewTicker(min(gcTick, q.opts.GCInterval))
	defer t.Stop()
	last := time.Now()
	for {
		force := false
		select {
		case <-q.stop:
			return
		case <-t.C:
		case <-q.gcKick:
			force = true
		}
		q.sweep()
		if force || time.Since(last) >= q.opts.GCInterval {
			last = time.Now()
			q.collect()
		}
	}
}

// sweep expires records past their TTL.
func (q *Queue) sweep() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.db == nil {
		return
	}
	var err error
	defer q.catchLocked("ttl sweep", &err)
	if err = q.expireLocked(q.opts.Now(), 10000); err != nil {
		q.log.Warn("queue ttl sweep failed", "err", err)
	} else if err = q.saveLoLocked(); err != nil {
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
				break
			}
		}
	}()
	size := dirSize(q.opts.Dir)
	q.mu.Lock()
	defer q.mu.Unlock()
	if perr != nil {
		q.log.Error("queue store panicked", "op", "value log gc", "err", perr)
		q.repairLocked(db, perr)
	}
	q.dirBytes = size
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
func (q *Queue) saveLoLocked() error {
	w := q.newTxnWriterLocked(false)
	defer w.discard()
	if err := q.writeMetaLocked(w, 0); err != nil {
		return err
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

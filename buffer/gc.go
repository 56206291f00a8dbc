package buffer

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcTick is the period of TTL sweeps; range drops and value-log GC run
// every GCInterval (or at once when the disk is nearly full).
const gcTick = time.Second

// gcLoop is the maintenance goroutine: TTL expiry, range drops of fully
// acknowledged segments, value-log GC and directory sizing. It stops when
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
		q.mu.Lock()
		if err := q.expireLocked(q.opts.Now(), 10000); err != nil {
			q.log.Warn("queue ttl sweep failed", "err", err)
		}
		q.mu.Unlock()
		if force || time.Since(last) >= q.opts.GCInterval {
			last = time.Now()
			q.collect()
		}
	}
}

// collect drops fully acknowledged segments, then runs value-log GC until
// it finds nothing to rewrite, then measures the directory.
func (q *Queue) collect() {
	q.mu.Lock()
	err := q.dropSegmentsLocked()
	if err == nil {
		err = q.saveLoLocked()
	}
	q.mu.Unlock()
	if err != nil {
		q.log.Warn("queue range drop failed", "err", err)
	}
	if q.opts.InMemory {
		return
	}
	for range 16 {
		if err := q.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				q.log.Warn("queue value log gc failed", "err", err)
			}
			break
		}
	}
	size := dirSize(q.opts.Dir)
	q.mu.Lock()
	q.dirBytes = size
	q.shedPending = false
	q.mu.Unlock()
}

// CollectGarbage runs one range drop and value-log GC pass now (tools and
// benchmarks; the GC goroutine does this every GCInterval).
func (q *Queue) CollectGarbage() {
	q.collect()
}

// dropSegmentsLocked removes, with one DropPrefix, every segment that lies
// entirely below its class's low-water mark. DropPrefix only acts on
// prefixes with live keys, which is why Ack advances lo instead of
// deleting keys one by one.
func (q *Queue) dropSegmentsLocked() error {
	var prefixes [][]byte
	var upto [NumClasses]uint64
	err := q.db.View(func(txn *badger.Txn) error {
		for c := range Class(NumClasses) {
			cs := &q.cls[c]
			// Segments below lo's hold only dead records; when the class
			// is empty, lo's segment does too.
			limit := segmentOf(cs.lo)
			upto[c] = limit << segBits
			if cs.records == 0 {
				limit++
				upto[c] = cs.lo
			}
			if cs.dropFrom >= cs.lo || segmentOf(cs.dropFrom) >= limit {
				upto[c] = cs.dropFrom
				continue
			}
			ci := newClassIter(txn, c, false)
			for ci.seek(cs.dropFrom); ci.valid() && segmentOf(ci.seq) < limit; ci.seek((segmentOf(ci.seq) + 1) << segBits) {
				prefixes = append(prefixes, segmentPrefix(c, ci.seq))
			}
			ci.close()
		}
		return nil
	})
	if err != nil || len(prefixes) == 0 {
		if err == nil {
			for c := range q.cls {
				q.cls[c].dropFrom = upto[c]
			}
		}
		return err
	}
	if err := q.db.DropPrefix(prefixes...); err != nil {
		return err
	}
	for c := range q.cls {
		q.cls[c].dropFrom = upto[c]
	}
	q.log.Debug("queue dropped segments", "count", len(prefixes))
	return nil
}

// saveLoLocked persists low-water marks that changed without a write
// (evictions while the disk was full, TTL expiry).
func (q *Queue) saveLoLocked() error {
	w := newTxnWriter(q.db)
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

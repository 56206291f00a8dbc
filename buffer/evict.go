package buffer

import (
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// evictor finds eviction victims during one commit: the oldest records of
// each class, read from a snapshot taken under Queue.mu.
type evictor struct {
	q       *Queue
	txn     *badger.Txn
	its     [NumClasses]*classIter
	evicted bool
}

func newEvictor(q *Queue) *evictor { return &evictor{q: q} }

// nextLocked returns the oldest remaining record of class c and its
// accounted size.
func (e *evictor) nextLocked(c Class) (uint64, int64, bool) {
	if e.txn == nil {
		e.txn = e.q.db.NewTransaction(false)
	}
	ci := e.its[c]
	if ci == nil {
		ci = newClassIter(e.txn, c, false)
		e.its[c] = ci
		ci.seek(e.q.cls[c].lo)
	} else if ci.valid() {
		ci.next()
	}
	for ; ci.valid(); ci.next() {
		if ci.seq < e.q.cls[c].lo {
			continue
		}
		size, err := itemBytes(ci.item())
		if err != nil {
			return 0, 0, false
		}
		return ci.seq, size, true
	}
	return 0, 0, false
}

func (e *evictor) close() {
	for _, ci := range e.its {
		if ci != nil {
			ci.close()
		}
	}
	if e.txn != nil {
		e.txn.Discard()
	}
}

// itemBytes is the accounted size of a stored record. Item.ValueSize is
// only an estimate for values in the value log, so the value is read.
func itemBytes(it *badger.Item) (int64, error) {
	var n int
	err := it.Value(func(v []byte) error { n = len(v); return nil })
	return recKeyLen + int64(n), err
}

func (q *Queue) totalsLocked() (records, bytes int64) {
	for c := range q.cls {
		records += q.cls[c].records
		bytes += q.cls[c].bytes
	}
	return records, bytes
}

// makeRoomLocked evicts until a record of class k and size bytes fits the
// bounds. Victims are the oldest records of the lowest class present, but
// never of a class more important than k: then it returns false and the
// incoming record is shed instead.
func (q *Queue) makeRoomLocked(e *evictor, k Class, size int64) bool {
	for {
		n, b := q.totalsLocked()
		if (q.opts.MaxRecords == 0 || n+1 <= q.opts.MaxRecords) && b+size <= q.opts.MaxBytes {
			return true
		}
		if !q.evictOneLocked(e, k) {
			return false
		}
	}
}

// evictOneLocked evicts the oldest record of the lowest class >= k.
func (q *Queue) evictOneLocked(e *evictor, k Class) bool {
	for c := Class(NumClasses - 1); c >= k && c < NumClasses; c-- {
		if q.cls[c].records == 0 {
			continue
		}
		if seq, size, ok := e.nextLocked(c); ok {
			q.dropHeadLocked(c, seq, size)
			q.cls[c].evicted++
			e.evicted = true
			return true
		}
	}
	return false
}

// dropHeadLocked removes the oldest record (seq) of class c by advancing the
// class's low-water mark past it. No key is deleted: the segment is dropped
// as a whole once the low-water mark has passed it.
func (q *Queue) dropHeadLocked(c Class, seq uint64, size int64) {
	cs := &q.cls[c]
	cs.lo = max(cs.lo, seq+1)
	cs.fwd = max(cs.fwd, cs.lo)
	cs.records--
	cs.bytes -= size
	if cs.records <= 0 || cs.bytes < 0 {
		cs.bytes = max(cs.bytes, 0)
		if cs.records <= 0 {
			cs.records, cs.bytes = 0, 0
		}
	}
	delete(q.leased, seq)
	q.markGoneLocked(c, seq)
}

// markGoneLocked marks seq in the live ring of class c as gone.
func (q *Queue) markGoneLocked(c Class, seq uint64) {
	live := q.cls[c].live
	i := sort.Search(len(live), func(i int) bool { return live[i].seq >= seq })
	if i < len(live) && live[i].seq == seq {
		live[i].gone = true
	}
}

// checkDiskLocked reports whether the disk is too full to write. When it
// is, it sheds the oldest eighth of the lowest non-critical class present
// and asks the GC goroutine to give the space back; it sheds again only
// after that GC pass, so a disk filled by someone else does not wipe the
// queue one commit at a time.
func (q *Queue) checkDiskLocked() bool {
	if q.opts.InMemory || q.opts.MinFreeBytes < 0 {
		return false
	}
	free, err := q.opts.freeSpace(q.opts.Dir)
	if err != nil || free >= uint64(q.opts.MinFreeBytes) {
		if q.diskLow {
			q.log.Info("queue disk space recovered", "free_bytes", free)
		}
		q.diskLow = false
		return false
	}
	if !q.diskLow {
		q.log.Warn("queue disk nearly full, shedding", "free_bytes", free, "min_free_bytes", q.opts.MinFreeBytes)
	}
	q.diskLow = true
	if q.shedPending {
		return true
	}
	e := newEvictor(q)
	defer e.close()
	for c := Class(NumClasses - 1); c > ClassCritical; c-- {
		if n := q.cls[c].records; n > 0 {
			for range max(n/8, 1) {
				if !q.evictOneLocked(e, c) {
					break
				}
			}
			break
		}
	}
	q.shedPending = true
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
	return true
}

// expireLocked drops records older than their class TTL from the head of
// each class, at most limit per class per call.
func (q *Queue) expireLocked(now time.Time, limit int) error {
	for c, ttl := range q.opts.TTL {
		if ttl <= 0 || q.cls[c].records == 0 {
			continue
		}
		cutoff := now.Add(-ttl)
		n := 0
		err := q.db.View(func(txn *badger.Txn) error {
			return q.scanClass(txn, c, q.cls[c].lo, true, func(seq uint64, it *badger.Item) (bool, error) {
				v, err := it.ValueCopy(nil)
				if err != nil {
					return false, err
				}
				t, _, derr := decodeValue(v)
				if derr == nil && !t.Before(cutoff) {
					return false, nil
				}
				q.dropHeadLocked(c, seq, recKeyLen+int64(len(v)))
				if derr != nil {
					q.corrupt.Add(1)
				} else {
					q.cls[c].expired++
				}
				n++
				return n < limit, nil
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

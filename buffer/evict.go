package buffer

import (
	"time"

	"github.com/dgraph-io/badger/v4"
)

// evictor finds eviction victims during one commit: the oldest remaining
// records of each class, read from a snapshot taken under Queue.mu.
type evictor struct {
	q       *Queue
	txn     *badger.Txn
	its     [NumClasses]*chunkIter
	cur     [NumClasses]*evChunk
	evicted bool
}

// evChunk is the chunk an evictor is taking records from.
type evChunk struct {
	r    chunkRef
	lens []int
	i    int
}

func newEvictor(q *Queue) *evictor { return &evictor{q: q} }

// nextLocked returns the oldest remaining record of class c: its chunk,
// seq and data length.
func (e *evictor) nextLocked(c Class) (chunkRef, uint64, int, bool) {
	q := e.q
	for {
		if ec := e.cur[c]; ec != nil {
			for ; ec.i < len(ec.lens); ec.i++ {
				if seq := ec.r.first + uint64(ec.i); !q.isGoneLocked(c, ec.r, seq) {
					return ec.r, seq, ec.lens[ec.i], true
				}
			}
			e.cur[c] = nil
			e.its[c].next()
		}
		ci := e.iter(c)
		if !ci.valid() {
			return chunkRef{}, 0, 0, false
		}
		r := ci.r
		if r.end() <= q.cls[c].lo {
			ci.next()
			continue
		}
		ec := &evChunk{r: r}
		bad, err := readChunk(ci.item(), r, func(ch *chunk) error {
			ec.lens = make([]int, ch.len())
			for i := range ec.lens {
				ec.lens[i] = ch.recordLen(i)
			}
			return nil
		})
		if err != nil || bad {
			if bad {
				q.corrupt.Add(uint64(q.markChunkGoneLocked(c, r)))
			}
			ci.next()
			continue
		}
		e.cur[c] = ec
	}
}

// iter returns the evictor's iterator over class c, positioned at the
// class's oldest chunk on first use.
func (e *evictor) iter(c Class) *chunkIter {
	if e.its[c] != nil {
		return e.its[c]
	}
	if e.txn == nil {
		e.txn = e.q.db.NewTransaction(false)
	}
	ci := newChunkIter(e.txn, c)
	ci.seek(e.q.cls[c].lo)
	e.its[c] = ci
	return ci
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
// incoming record is shed instead. The limit is MaxBytes, or the space
// guard's disk cap (guard.go) for non-critical records.
func (q *Queue) makeRoomLocked(e *evictor, k Class, size int64) bool {
	for {
		n, b := q.totalsLocked()
		if (q.opts.MaxRecords == 0 || n+1 <= q.opts.MaxRecords) && b+size <= q.capFor(k) {
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
		if r, seq, n, ok := e.nextLocked(c); ok {
			q.markGoneLocked(c, r, seq, n)
			q.cls[c].evicted++
			e.evicted = true
			return true
		}
	}
	return false
}

// expireLocked drops records older than their class TTL from the head of
// each class, at most limit chunks per class per call. All records of a
// chunk share one append time. It returns when the oldest remaining record
// of a class with a TTL expires (now when the limit cut a scan short;
// zero when no such record is left).
func (q *Queue) expireLocked(now time.Time, limit int) (next time.Time, err error) {
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for c, ttl := range q.opts.TTL {
		if ttl <= 0 || q.cls[c].records == 0 {
			continue
		}
		cutoff := now.Add(-ttl)
		n := 0
		err := q.db.View(func(txn *badger.Txn) error {
			return q.scanChunks(txn, c, q.cls[c].lo, func(r chunkRef, it *badger.Item) (bool, error) {
				old := false
				var t time.Time
				bad, err := readChunk(it, r, func(ch *chunk) error {
					old = ch.t.Before(cutoff)
					t = ch.t
					return nil
				})
				switch {
				case err != nil:
					return false, err
				case bad:
					q.corrupt.Add(uint64(q.markChunkGoneLocked(c, r)))
				case !old:
					due(t.Add(ttl))
					return false, nil
				default:
					q.cls[c].expired += uint64(q.markChunkGoneLocked(c, r))
				}
				n++
				if n >= limit {
					due(now)
					return false, nil
				}
				return true, nil
			})
		})
		if err != nil {
			return time.Time{}, err
		}
	}
	return next, nil
}

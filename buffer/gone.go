package buffer

import "sort"

// markGoneLocked marks record seq (n data bytes) of chunk r of class c as
// gone (acknowledged, evicted, expired) and updates the counters. It
// returns false when the record was gone already. The change reaches the
// store with the next write (flushGoneLocked).
func (q *Queue) markGoneLocked(c Class, r chunkRef, seq uint64, n int) bool {
	cs := &q.cls[c]
	if seq < cs.lo || !r.holds(seq) {
		return false
	}
	g := cs.gone[r.first]
	if g == nil {
		g = newGoneSet(int(r.n))
		cs.gone[r.first] = g
	}
	if !g.set(int(seq-r.first), n) {
		return false
	}
	q.forgetLocked(c, seq, int64(n)+RecordOverhead)
	q.touchLocked(c, r, g)
	return true
}

// markChunkGoneLocked marks every remaining record of chunk r of class c
// as gone (expired or corrupt) and returns how many that were.
func (q *Queue) markChunkGoneLocked(c Class, r chunkRef) int64 {
	cs := &q.cls[c]
	g := cs.gone[r.first]
	if g == nil {
		g = newGoneSet(int(r.n))
		cs.gone[r.first] = g
	}
	if g.deleting {
		return 0
	}
	left := int64(r.n) - int64(g.n)
	leftBytes := r.accounted() - (g.data + int64(g.n)*RecordOverhead)
	for i := range int(r.n) {
		if !g.has(i) {
			delete(q.leased, r.first+uint64(i))
			q.markLiveGoneLocked(c, r.first+uint64(i))
		}
	}
	for i := range g.bits {
		g.bits[i] = 0xff
	}
	g.n, g.data = int(r.n), int64(r.data)
	cs.sub(left, leftBytes)
	q.touchLocked(c, r, g)
	return left
}

// forgetLocked removes one record of size accounted bytes from the
// counters, its lease and the live ring.
func (q *Queue) forgetLocked(c Class, seq uint64, size int64) {
	q.cls[c].sub(1, size)
	delete(q.leased, seq)
	q.markLiveGoneLocked(c, seq)
}

// sub removes n records of size accounted bytes from the counters.
func (cs *classState) sub(n, size int64) {
	cs.records -= n
	cs.bytes -= size
	if cs.records <= 0 {
		cs.records, cs.bytes = 0, 0
	}
	cs.bytes = max(cs.bytes, 0)
}

// touchLocked notes that the gone set g of chunk r changed; a chunk whose
// records are all gone is deleted by the next flush, and the class's
// low-water mark moves past it when it was the oldest.
func (q *Queue) touchLocked(c Class, r chunkRef, g *goneSet) {
	cs := &q.cls[c]
	cs.dirty[r.first] = r
	if g.n == int(r.n) {
		g.deleting = true
		if r.first <= cs.lo {
			cs.lo = r.end()
			cs.fwd = max(cs.fwd, cs.lo)
			cs.fwdChunk = max(cs.fwdChunk, cs.lo)
		}
	}
}

// flushGoneLocked adds the changed gone sets to w: a chunk that is all
// gone is deleted with its gone key (one tombstone per chunk, not per
// record); others get their gone key rewritten.
func (q *Queue) flushGoneLocked(w *txnWriter) error {
	for c := range q.cls {
		cs := &q.cls[c]
		for first, r := range cs.dirty {
			g := cs.gone[first]
			if g == nil {
				continue
			}
			if g.deleting {
				if err := w.delete(chunkKey(Class(c), r)); err != nil {
					return err
				}
				if g.stored {
					if err := w.delete(goneKey(Class(c), first)); err != nil {
						return err
					}
				}
				delete(cs.gone, first)
				q.deleted++
				continue
			}
			if err := w.set(goneKey(Class(c), first), g.encode()); err != nil {
				return err
			}
			g.stored = true
		}
		clear(cs.dirty)
	}
	return nil
}

// isGoneLocked reports whether record seq of chunk r of class c is gone.
func (q *Queue) isGoneLocked(c Class, r chunkRef, seq uint64) bool {
	cs := &q.cls[c]
	return seq < cs.lo || cs.gone[r.first].has(int(seq-r.first))
}

// markLiveGoneLocked marks seq in the live ring of class c as gone.
func (q *Queue) markLiveGoneLocked(c Class, seq uint64) {
	live := q.cls[c].live
	i := sort.Search(len(live), func(i int) bool { return live[i].seq >= seq })
	if i < len(live) && live[i].seq == seq {
		live[i].gone = true
	}
}

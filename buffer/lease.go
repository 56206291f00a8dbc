package buffer

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Lease returns up to max records (and, past the first, up to maxBytes of
// data; maxBytes <= 0 means no byte limit) that are durable and not
// currently leased. It does not delete them: Ack does, Release hands them
// back. Leases live in memory only.
//
// Drain order: classes in priority order (Critical, Event, Telemetry); the
// next class is visited only when the previous one has nothing left to
// lease. Within a class, first the live records (appended less than
// LiveWindow ago, at most the 4096 most recent), newest first; then the
// rest, oldest first. Records past their class TTL are not returned.
func (q *Queue) Lease(max int, maxBytes int) (recs []Record, err error) {
	return q.LeaseClasses(max, maxBytes, nil)
}

// LeaseClasses is Lease restricted to the classes allow accepts (nil: all
// classes); records of the other classes stay unleased.
func (q *Queue) LeaseClasses(max int, maxBytes int, allow func(Class) bool) (recs []Record, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, fmt.Errorf("lease: %w", ErrClosed)
	}
	if err := q.usableLocked(); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	defer q.catchLocked("lease", &err)
	if max <= 0 {
		return nil, nil
	}
	if q.idle.closed && !q.leasableLocked(allow) {
		return nil, nil // nothing to lease: the store stays closed
	}
	if err := q.wakeLocked(); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	q.usedLocked()
	l := leaser{q: q, max: max, maxBytes: maxBytes, now: q.opts.Now()}
	defer func() {
		if err != nil { // a failed or panicked lease hands nothing out
			for _, r := range l.out {
				delete(q.leased, r.Seq)
			}
		}
	}()
	err = q.db.View(func(txn *badger.Txn) error {
		for c := range Class(NumClasses) {
			if l.full() {
				break
			}
			if q.cls[c].records == 0 || allow != nil && !allow(c) {
				continue
			}
			if err := l.live(txn, c); err != nil {
				return err
			}
			if err := l.backlog(txn, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && len(l.bad) > 0 {
		err = q.dropCorruptLocked(l.bad)
	}
	if err != nil {
		return nil, fmt.Errorf("lease: %w", classify(err))
	}
	return l.out, nil
}

// leasableLocked reports whether a class allow accepts holds records (a
// lease would have something to look at). Only asked while the store is
// closed for idleness, when nothing is leased.
func (q *Queue) leasableLocked(allow func(Class) bool) bool {
	for c := range Class(NumClasses) {
		if q.cls[c].records > 0 && (allow == nil || allow(c)) {
			return true
		}
	}
	return false
}

// leaser collects one Lease's records.
type leaser struct {
	q        *Queue
	max      int
	maxBytes int
	now      time.Time
	bytes    int
	out      []Record
	bad      []badChunk
}

// badChunk is a chunk whose value does not decode.
type badChunk struct {
	c Class
	r chunkRef
}

func (l *leaser) full() bool {
	return len(l.out) >= l.max || (l.maxBytes > 0 && l.bytes >= l.maxBytes)
}

// fits reports whether a record of n data bytes may still be added.
func (l *leaser) fits(n int) bool {
	if len(l.out) >= l.max {
		return false
	}
	return len(l.out) == 0 || l.maxBytes <= 0 || l.bytes+n <= l.maxBytes
}

// take adds record seq of chunk ch (key r) unless it is gone, leased or
// expired; ok=false means the lease is full.
func (l *leaser) take(c Class, r chunkRef, ch *chunk, seq uint64) (ok bool) {
	q := l.q
	if _, leased := q.leased[seq]; leased || q.isGoneLocked(c, r, seq) {
		return true
	}
	if ttl := q.opts.TTL[c]; ttl > 0 && ch.t.Before(l.now.Add(-ttl)) {
		return true // the GC goroutine expires it
	}
	i := int(seq - r.first)
	if !l.fits(ch.recordLen(i)) {
		return false
	}
	data := append([]byte(nil), ch.record(i)...)
	l.out = append(l.out, Record{Seq: seq, Class: c, Time: ch.t, Data: data})
	l.bytes += len(data)
	q.leased[seq] = leaseEnt{class: c, ref: r, size: len(data)}
	return true
}

// live leases the class's live records, newest first. Consecutive ring
// entries of one chunk are served with one read of the chunk.
func (l *leaser) live(txn *badger.Txn, c Class) error {
	q := l.q
	cs := &q.cls[c]
	if q.opts.LiveWindow < 0 {
		return nil
	}
	cutoff := l.now.Add(-q.opts.LiveWindow)
	// Trim entries that are gone or no longer live from the front.
	i := 0
	for i < len(cs.live) && (cs.live[i].gone || cs.live[i].seq < cs.lo || cs.live[i].t.Before(cutoff)) {
		i++
	}
	if i > 0 {
		n := copy(cs.live, cs.live[i:])
		clear(cs.live[n:])
		cs.live = cs.live[:n]
	}
	for j := len(cs.live) - 1; j >= 0 && !l.full(); {
		e := &cs.live[j]
		if e.t.Before(cutoff) {
			break
		}
		r := e.ref
		k := j // cs.live[k+1 : j+1] is this chunk's run
		for k >= 0 && cs.live[k].ref.first == r.first {
			k--
		}
		it, err := txn.Get(chunkKey(c, r))
		if errors.Is(err, badger.ErrKeyNotFound) {
			for m := k + 1; m <= j; m++ {
				cs.live[m].gone = true
			}
			j = k
			continue
		}
		if err != nil {
			return err
		}
		full := false
		bad, err := readChunk(it, r, func(ch *chunk) error {
			for m := j; m > k && !full; m-- {
				if !cs.live[m].gone && cs.live[m].seq >= cs.lo {
					full = !l.take(c, r, ch, cs.live[m].seq)
				}
			}
			return nil
		})
		if err != nil || full {
			return err
		}
		if bad {
			l.bad = append(l.bad, badChunk{c, r})
		}
		j = k
	}
	return nil
}

// backlog leases the class's remaining records oldest first, from the
// forward cursor.
func (l *leaser) backlog(txn *badger.Txn, c Class) error {
	q := l.q
	cs := &q.cls[c]
	cs.fwd = max(cs.fwd, cs.lo)
	cs.fwdChunk = min(max(cs.fwdChunk, cs.lo), cs.fwd)
	return q.scanChunks(txn, c, cs.fwdChunk, func(r chunkRef, it *badger.Item) (bool, error) {
		if r.first > q.durable || l.full() {
			return false, nil
		}
		if r.end() <= cs.fwd {
			cs.fwdChunk = r.end()
			return true, nil
		}
		full := false
		bad, err := readChunk(it, r, func(ch *chunk) error {
			for seq := max(cs.fwd, r.first); seq < r.end(); seq++ {
				if full = !l.take(c, r, ch, seq); full {
					return nil
				}
				cs.fwd = seq + 1
			}
			return nil
		})
		if err != nil || full {
			cs.fwdChunk = r.first
			return false, err
		}
		if bad {
			l.bad = append(l.bad, badChunk{c, r})
		}
		cs.fwd, cs.fwdChunk = r.end(), r.end()
		return true, nil
	})
}

// dropCorruptLocked removes chunks whose values do not decode.
func (q *Queue) dropCorruptLocked(bad []badChunk) error {
	var n int64
	for _, b := range bad {
		n += q.markChunkGoneLocked(b.c, b.r)
	}
	w := q.newTxnWriterLocked(false)
	defer w.discard()
	if err := q.writeMetaLocked(w, 0); err != nil {
		return err
	}
	if err := w.commit(); err != nil {
		return err
	}
	q.corrupt.Add(uint64(n))
	q.log.Warn("queue dropped corrupt records", "count", n, "chunks", len(bad))
	q.setDegradedLocked("corrupt records dropped")
	return nil
}

// Release hands leased records back: they will be leased again. Unknown
// or unleased seqs are ignored.
func (q *Queue) Release(seqs ...uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range seqs {
		e, ok := q.leased[s]
		if !ok {
			continue
		}
		delete(q.leased, s)
		cs := &q.cls[e.class]
		cs.fwd = max(min(cs.fwd, s), cs.lo)
		cs.fwdChunk = min(cs.fwdChunk, e.ref.first)
	}
}

// Ack deletes records (the broker acknowledged them). Unknown seqs and
// seqs already acked are ignored. Acks are not synced: after a power cut
// an acked record may be delivered again (at-least-once).
//
// An acked record is marked in its chunk's gone set; a chunk whose records
// are all gone is deleted with one tombstone.
func (q *Queue) Ack(seqs ...uint64) (err error) {
	if len(seqs) == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("ack: %w", ErrClosed)
	}
	if err := q.usableLocked(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if err := q.wakeLocked(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	q.usedLocked()
	defer q.catchLocked("ack", &err)
	var unknown []uint64
	for _, s := range seqs {
		if e, ok := q.leased[s]; ok {
			q.markGoneLocked(e.class, e.ref, s, e.size)
		} else {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) > 0 {
		if err := q.ackUnleasedLocked(unknown); err != nil {
			return fmt.Errorf("ack: %w", classify(err))
		}
	}
	w := q.newTxnWriterLocked(false)
	defer w.discard()
	if err := q.writeMetaLocked(w, 0); err != nil {
		q.failLocked(err)
		return fmt.Errorf("ack: %w", classify(err))
	}
	if err := w.commit(); err != nil {
		q.failLocked(err)
		return fmt.Errorf("ack: %w", classify(err))
	}
	return nil
}

// ackUnleasedLocked marks seqs that are not leased gone, finding their
// chunks in the store.
func (q *Queue) ackUnleasedLocked(seqs []uint64) error {
	return q.db.View(func(txn *badger.Txn) error {
		for _, s := range seqs {
			for c := range Class(NumClasses) {
				if s < q.cls[c].lo || s > q.durable {
					continue
				}
				r, ok := findChunk(txn, c, s)
				if !ok || q.isGoneLocked(c, r, s) {
					continue
				}
				it, err := txn.Get(chunkKey(c, r))
				if err != nil {
					return err
				}
				bad, err := readChunk(it, r, func(ch *chunk) error {
					q.markGoneLocked(c, r, s, ch.recordLen(int(s-r.first)))
					return nil
				})
				if err != nil {
					return err
				}
				if bad {
					q.markChunkGoneLocked(c, r)
				}
				break
			}
		}
		return nil
	})
}

package buffer

import (
	"errors"
	"fmt"
	"slices"
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
func (q *Queue) Lease(max int, maxBytes int) ([]Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, fmt.Errorf("lease: %w", ErrClosed)
	}
	if max <= 0 {
		return nil, nil
	}
	l := leaser{q: q, max: max, maxBytes: maxBytes, now: q.opts.Now()}
	err := q.db.View(func(txn *badger.Txn) error {
		for c := range Class(NumClasses) {
			if l.full() {
				break
			}
			if q.cls[c].records == 0 {
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
		for _, r := range l.out {
			delete(q.leased, r.Seq)
		}
		return nil, fmt.Errorf("lease: %w", err)
	}
	return l.out, nil
}

// leaser collects one Lease's records.
type leaser struct {
	q        *Queue
	max      int
	maxBytes int
	now      time.Time
	bytes    int
	out      []Record
	bad      []badRec
}

type badRec struct {
	c    Class
	seq  uint64
	size int64
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

// take decodes it and adds it; ok=false means the lease is full.
func (l *leaser) take(c Class, seq uint64, it *badger.Item) (ok bool, err error) {
	v, err := it.ValueCopy(nil)
	if err != nil {
		return false, err
	}
	t, data, derr := decodeValue(v)
	if derr != nil {
		l.bad = append(l.bad, badRec{c, seq, recKeyLen + int64(len(v))})
		return true, nil
	}
	if ttl := l.q.opts.TTL[c]; ttl > 0 && t.Before(l.now.Add(-ttl)) {
		return true, nil // the GC goroutine expires it
	}
	if !l.fits(len(data)) {
		return false, nil
	}
	l.out = append(l.out, Record{Seq: seq, Class: c, Time: t, Data: data})
	l.bytes += len(data)
	l.q.leased[seq] = leaseEnt{class: c, size: recKeyLen + int64(len(v))}
	return true, nil
}

// live leases the class's live records, newest first.
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
	for j := len(cs.live) - 1; j >= 0 && !l.full(); j-- {
		e := &cs.live[j]
		if e.t.Before(cutoff) {
			break
		}
		if _, leased := q.leased[e.seq]; e.gone || leased || e.seq < cs.lo {
			continue
		}
		it, err := txn.Get(recKey(c, e.seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			e.gone = true
			continue
		}
		if err != nil {
			return err
		}
		ok, err := l.take(c, e.seq, it)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// backlog leases the class's remaining records oldest first, from the
// forward cursor.
func (l *leaser) backlog(txn *badger.Txn, c Class) error {
	q := l.q
	cs := &q.cls[c]
	cs.fwd = max(cs.fwd, cs.lo)
	return q.scanClass(txn, c, cs.fwd, false, func(seq uint64, it *badger.Item) (bool, error) {
		if seq > q.durable || l.full() {
			return false, nil
		}
		if _, leased := q.leased[seq]; !leased {
			ok, err := l.take(c, seq, it)
			if err != nil || !ok {
				return false, err
			}
		}
		cs.fwd = seq + 1
		return true, nil
	})
}

// dropCorruptLocked deletes records whose values do not decode.
func (q *Queue) dropCorruptLocked(bad []badRec) error {
	w := newTxnWriter(q.db)
	defer w.discard()
	for _, b := range bad {
		if err := w.delete(recKey(b.c, b.seq)); err != nil {
			return err
		}
	}
	if err := w.commit(); err != nil {
		return err
	}
	for _, b := range bad {
		cs := &q.cls[b.c]
		cs.records = max(cs.records-1, 0)
		cs.bytes = max(cs.bytes-b.size, 0)
		q.markGoneLocked(b.c, b.seq)
	}
	q.corrupt.Add(uint64(len(bad)))
	q.log.Warn("queue dropped corrupt records", "count", len(bad))
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
	}
}

// Ack deletes records (the broker acknowledged them). Unknown seqs and
// seqs already acked are ignored. Acks are not synced: after a power cut
// an acked record may be delivered again (at-least-once).
//
// Acking the oldest records of a class only advances the class's persisted
// low-water mark (one small write, no tombstones); records acked out of
// order are deleted individually.
func (q *Queue) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("ack: %w", ErrClosed)
	}
	byClass, err := q.ackSetsLocked(seqs)
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	w := newTxnWriter(q.db)
	defer w.discard()
	for c, set := range byClass {
		if len(set) > 0 {
			if err := q.ackClassLocked(w, Class(c), set); err != nil {
				q.failLocked(err)
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	if err := q.writeMetaLocked(w, 0); err != nil {
		q.failLocked(err)
		return fmt.Errorf("ack: %w", err)
	}
	if err := w.commit(); err != nil {
		q.failLocked(err)
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// ackSetsLocked groups seqs by class with their accounted sizes, looking
// up seqs that are not leased in the store.
func (q *Queue) ackSetsLocked(seqs []uint64) ([NumClasses]map[uint64]int64, error) {
	var by [NumClasses]map[uint64]int64
	add := func(c Class, s uint64, size int64) {
		if by[c] == nil {
			by[c] = make(map[uint64]int64)
		}
		by[c][s] = size
	}
	var unknown []uint64
	for _, s := range seqs {
		if e, ok := q.leased[s]; ok {
			add(e.class, s, e.size)
			delete(q.leased, s)
		} else {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) == 0 {
		return by, nil
	}
	err := q.db.View(func(txn *badger.Txn) error {
		for _, s := range unknown {
			for c := range Class(NumClasses) {
				if s < q.cls[c].lo {
					continue
				}
				it, err := txn.Get(recKey(c, s))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				size, err := itemBytes(it)
				if err != nil {
					return err
				}
				add(c, s, size)
				break
			}
		}
		return nil
	})
	return by, err
}

// ackClassLocked removes the acked records of class c: those at the head
// by advancing lo, the rest by deleting their keys.
func (q *Queue) ackClassLocked(w *txnWriter, c Class, set map[uint64]int64) error {
	cs := &q.cls[c]
	for s := range set {
		if s < cs.lo {
			delete(set, s) // acked twice or evicted meanwhile
		}
	}
	err := q.db.View(func(txn *badger.Txn) error {
		return q.scanClass(txn, c, cs.lo, false, func(seq uint64, _ *badger.Item) (bool, error) {
			size, ok := set[seq]
			if !ok {
				cs.lo = seq
				return false, nil
			}
			delete(set, seq)
			q.dropHeadLocked(c, seq, size)
			cs.lo = seq + 1
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	rest := make([]uint64, 0, len(set))
	for s := range set {
		rest = append(rest, s)
	}
	slices.Sort(rest)
	for _, s := range rest {
		if err := w.delete(recKey(c, s)); err != nil {
			return err
		}
		cs.records = max(cs.records-1, 0)
		cs.bytes = max(cs.bytes-set[s], 0)
		if cs.records == 0 {
			cs.bytes = 0
		}
		q.markGoneLocked(c, s)
	}
	return nil
}

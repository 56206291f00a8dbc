package buffer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// appendReq is one pending Append, completed by the committer.
type appendReq struct {
	class Class
	data  []byte
	seq   uint64
	ref   chunkRef // the chunk it was written in
	err   error
	done  chan struct{}
}

// Append stores data in class c and returns its seq once it is durable per
// the SyncPolicy. Concurrent appends are committed together and share one
// sync (group commit). The queue keeps data; the caller may reuse it after
// Append returns.
//
// When ctx ends first, Append returns ctx.Err() and the record may or may
// not be stored. ErrFull means it was not stored (bounds or disk full).
func (q *Queue) Append(ctx context.Context, c Class, data []byte) (uint64, error) {
	if !c.valid() {
		return 0, fmt.Errorf("append: %w: class %d", ErrInvalid, c)
	}
	if len(data) > MaxRecordBytes || recordBytes(len(data)) > q.opts.MaxBytes {
		return 0, fmt.Errorf("append %d bytes: %w", len(data), ErrTooLarge)
	}
	r := &appendReq{class: c, data: data, done: make(chan struct{})}
	if err := q.enqueue(r); err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	select {
	case <-r.done:
		if r.err != nil {
			return 0, fmt.Errorf("append: %w", r.err)
		}
		return r.seq, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("append: %w", ctx.Err())
	}
}

// AppendBatch appends several records of class c in one commit (one sync)
// and returns their seqs in order, increasing. It is the fast path for a
// single producer: with SyncGroup, sequential Appends wait one GroupWindow
// each. A record that could not be stored has seq 0, and the returned error
// (wrapping the first failure, e.g. ErrFull) is non-nil.
func (q *Queue) AppendBatch(ctx context.Context, c Class, data [][]byte) ([]uint64, error) {
	if !c.valid() {
		return nil, fmt.Errorf("append batch: %w: class %d", ErrInvalid, c)
	}
	reqs := make([]*appendReq, len(data))
	for i, d := range data {
		if len(d) > MaxRecordBytes || recordBytes(len(d)) > q.opts.MaxBytes {
			return nil, fmt.Errorf("append batch: record %d of %d bytes: %w", i, len(d), ErrTooLarge)
		}
		reqs[i] = &appendReq{class: c, data: d, done: make(chan struct{})}
	}
	if err := q.enqueue(reqs...); err != nil {
		return nil, fmt.Errorf("append batch: %w", err)
	}
	seqs := make([]uint64, len(reqs))
	var first error
	for i, r := range reqs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("append batch: %w", ctx.Err())
		}
		if r.err != nil && first == nil {
			first = fmt.Errorf("append batch: record %d: %w", i, r.err)
		}
		seqs[i] = r.seq
	}
	return seqs, first
}

// groupMax ends a group-commit window early: a window that has collected
// this many records is committed at once.
const groupMax = 1024

// enqueue hands requests to the committer.
func (q *Queue) enqueue(reqs ...*appendReq) error {
	q.pendMu.Lock()
	if q.stopping {
		q.pendMu.Unlock()
		return ErrClosed
	}
	q.pending = append(q.pending, reqs...)
	for _, r := range reqs {
		q.pendData += int64(len(r.data))
	}
	// A window that has collected groupMax records, or a critical record
	// (a command response waits on it), is committed at once; one that
	// has GroupFill bytes need not wait past GroupWindow.
	full := len(q.pending) >= groupMax || hasCritical(reqs)
	filled := q.pendData >= q.opts.GroupFill
	q.pendMu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	if full {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
	if filled {
		select {
		case q.filled <- struct{}{}:
		default:
		}
	}
	return nil
}

func hasCritical(reqs []*appendReq) bool {
	for _, r := range reqs {
		if r.class == ClassCritical {
			return true
		}
	}
	return false
}

// commitLoop is the committer goroutine: it collects pending appends (for
// SyncGroup during one adaptive window, see groupWait), writes them in one
// Badger transaction and syncs once. It stops when q.stop is closed, after
// committing what is pending.
func (q *Queue) commitLoop() {
	defer q.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		stopping := false
		select {
		case <-q.kick:
		case <-q.stop:
			stopping = true
		}
		if !stopping && q.opts.Sync == SyncGroup {
			stopping = q.groupWait(timer)
		}
		q.pendMu.Lock()
		batch := q.pending
		q.pending = nil
		q.pendData = 0
		q.pendMu.Unlock()
		if len(batch) > 0 {
			q.commit(batch)
			q.lastCommit = time.Now()
		}
		if stopping {
			return
		}
	}
}

// groupWait is SyncGroup's window, which began with the append that kicked
// the committer: at least GroupWindow; then, within a stream of appends
// (the previous commit ended less than GroupMaxWindow before) and while
// less than GroupFill bytes of records are pending, on until
// GroupMaxWindow from its start.
// groupMax records or a critical record end it at once (q.full), and so
// does Close (it returns true). At a vehicle's low rates a fixed 20 ms
// window synced a few hundred bytes 50 times a second, and every sync
// rewrote the same partial pages and committed the ext4 journal: 11.2
// device bytes per payload byte at 200 records/s, 2.2 with this window
// (scripts/wear.sh, docs/perf/buffer.md).
func (q *Queue) groupWait(timer *time.Timer) (stopping bool) {
	start := time.Now()
	wait := func(d time.Duration, filled <-chan struct{}) (done, stop bool) {
		timer.Reset(d)
		defer timer.Stop() // Go >= 1.23: no stale tick after Stop
		select {
		case <-timer.C:
			return false, false
		case <-q.full:
			return true, false
		case <-filled:
			return true, false
		case <-q.stop:
			return true, true
		}
	}
	done, stop := wait(q.opts.GroupWindow, nil)
	if done || q.opts.GroupMaxWindow <= q.opts.GroupWindow {
		return stop
	}
	// A lone append (the first after a quiet GroupMaxWindow: a start, an
	// event of a parked car) commits at GroupWindow: waiting would only
	// delay it, the wear of a rare sync is negligible. A stream (the
	// previous commit just ended) batches up to GroupMaxWindow.
	if q.lastCommit.IsZero() || start.Sub(q.lastCommit) > q.opts.GroupMaxWindow {
		return stop
	}
	// Drain a fill signal of an earlier window under pendMu: an enqueue
	// that fills this one either is counted in pendData here or signals
	// after the drain.
	q.pendMu.Lock()
	select {
	case <-q.filled:
	default:
	}
	filled := q.pendData >= q.opts.GroupFill
	q.pendMu.Unlock()
	if filled {
		return false
	}
	if rest := q.opts.GroupMaxWindow - time.Since(start); rest > 0 {
		_, stop = wait(rest, q.filled)
	}
	return stop
}

// commit writes batch, syncs per policy and completes every request.
func (q *Queue) commit(batch []*appendReq) {
	q.mu.Lock()
	q.idle.busy++ // the store stays open until the sync (idle.go)
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.idle.busy--
		q.usedLocked()
		q.mu.Unlock()
	}()
	last, err, repaired := q.writeSync(batch)
	if repaired {
		// The store panicked and was replaced by a fresh one: none of
		// these appends returned, so write them there.
		for _, r := range batch {
			r.err, r.seq = nil, 0
		}
		last, err, _ = q.writeSync(batch)
	}
	if err == nil && last > 0 {
		q.mu.Lock()
		q.durable = last
		now := q.opts.Now()
		for _, r := range batch {
			if r.err == nil && r.seq != 0 {
				q.addLiveLocked(r.class, r.seq, r.ref)
				q.ttlAppendedLocked(r.class, now)
			}
		}
		q.mu.Unlock()
		q.signalReady()
	}
	for _, r := range batch {
		if r.err == nil && err != nil {
			r.err = classify(err)
		}
		if r.err == nil {
			q.appends.Add(1)
		}
		close(r.done)
	}
}

// writeSync writes batch and syncs it per policy. repaired reports that
// the store panicked and was replaced (the batch is not in the new one).
func (q *Queue) writeSync(batch []*appendReq) (last uint64, err error, repaired bool) { //nolint:revive // repaired is a flag beside the error
	db, last, err := q.writeBatch(batch)
	if errors.Is(err, errRepaired) {
		return 0, err, true
	}
	if err != nil || last == 0 || q.opts.Sync == SyncNone {
		return last, err, false
	}
	q.swapMu.RLock()
	if q.db != db {
		q.swapMu.RUnlock()
		return 0, errRepaired, true // replaced by another caller before the sync
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = panicError("sync", r)
			}
		}()
		err = db.Sync()
	}()
	q.swapMu.RUnlock()
	switch {
	case errors.Is(err, ErrCorrupt):
		q.mu.Lock()
		q.log.Error("queue store panicked", "op", "sync", "err", err)
		q.repairLocked(db, err)
		broken := q.broken
		q.mu.Unlock()
		return 0, err, broken == nil
	case err != nil:
		return 0, fmt.Errorf("sync store: %w", err), false
	}
	q.syncs.Add(1)
	return last, nil, false
}

// errRepaired: the store panicked during the commit and was replaced.
var errRepaired = errors.New("store replaced")

// writeBatch assigns seqs, evicts to make room and writes the batch (not
// synced). It returns the highest seq written (0 when nothing was).
// Requests that could not be admitted get r.err set.
//
// The batch is ordered by class so that each class's records get
// consecutive seqs and are packed into as few chunks as possible.
func (q *Queue) writeBatch(batch []*appendReq) (db *badger.DB, last uint64, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usableLocked(); err != nil {
		return nil, 0, err
	}
	if err := q.wakeLocked(); err != nil {
		return nil, 0, err
	}
	q.usedLocked()
	db = q.db
	defer func() {
		if err != nil && errors.Is(err, ErrCorrupt) && q.db != db && q.broken == nil {
			err = fmt.Errorf("%w: %w", errRepaired, err)
		}
	}()
	defer q.catchLocked("append", &err)
	critOnly, none := q.guardLocked()
	if critOnly {
		kept := batch[:0:0]
		for _, r := range batch {
			if none || r.class != ClassCritical {
				r.err = fmt.Errorf("%w: disk nearly full", ErrFull)
				q.cls[r.class].shed++
			} else {
				kept = append(kept, r)
			}
		}
		batch = kept
	}
	q.hook("append")
	slices.SortStableFunc(batch, func(a, b *appendReq) int { return cmp.Compare(a.class, b.class) })
	ev := newEvictor(q)
	defer ev.close()
	w := q.newTxnWriterLocked(q.opts.Sync != SyncNone)
	defer w.discard()
	p := packer{w: w, t: q.opts.Now()}
	for _, r := range batch {
		size := recordBytes(len(r.data))
		if !q.makeRoomLocked(ev, r.class, size) {
			r.err = ErrFull
			q.cls[r.class].shed++
			continue
		}
		if err := q.reserveSeqLocked(); err != nil {
			r.err = err
			continue
		}
		r.seq = q.next
		q.next++
		if err := p.add(r); err != nil {
			q.failLocked(err)
			return db, 0, err
		}
		q.cls[r.class].records++
		q.cls[r.class].bytes += size
		last = r.seq
	}
	if err := p.flush(); err != nil {
		q.failLocked(err)
		return db, 0, err
	}
	if last == 0 && !ev.evicted {
		return db, 0, nil
	}
	if err := q.writeMetaLocked(w, last); err != nil {
		q.failLocked(err)
		return db, 0, err
	}
	if err := w.commit(); err != nil {
		q.failLocked(err)
		return db, 0, err
	}
	return db, last, nil
}

// packer packs consecutive requests of one class into chunks.
type packer struct {
	w    *txnWriter
	t    time.Time
	b    chunkBuilder
	reqs []*appendReq
}

// add adds r (seq assigned) to the current chunk, writing the chunk first
// when r cannot join it.
func (p *packer) add(r *appendReq) error {
	if n := len(p.reqs); n > 0 {
		prev := p.reqs[n-1]
		if prev.class != r.class || prev.seq+1 != r.seq || !p.b.fits(len(r.data)) {
			if err := p.flush(); err != nil {
				return err
			}
		}
	}
	p.b.add(r.data)
	p.reqs = append(p.reqs, r)
	return nil
}

// flush writes the current chunk.
func (p *packer) flush() error {
	if len(p.reqs) == 0 {
		return nil
	}
	ref := chunkRef{first: p.reqs[0].seq, n: uint16(len(p.reqs)), data: uint32(p.b.data)} //nolint:gosec // bounded by maxChunkRecords and maxChunkData/MaxRecordBytes
	if err := p.w.set(chunkKey(p.reqs[0].class, ref), p.b.encode(p.t)); err != nil {
		return err
	}
	for _, r := range p.reqs {
		r.ref = ref
	}
	p.b.reset()
	p.reqs = p.reqs[:0]
	return nil
}

// writeMetaLocked adds z/seq (when records were written) and the changed
// z/lo keys to w.
func (q *Queue) writeMetaLocked(w *txnWriter, last uint64) error {
	if last > 0 {
		if err := w.set([]byte(keySeq), putU64(last)); err != nil {
			return err
		}
		// The previous commits are synced (the committer syncs each
		// before the next begins): chunks up to q.durable are whole.
		if q.opts.Sync != SyncNone && q.durable > q.syncedSaved {
			if err := w.set([]byte(keySynced), putU64(q.durable)); err != nil {
				return err
			}
			q.syncedSaved = q.durable
		}
	}
	if err := q.flushGoneLocked(w); err != nil {
		return err
	}
	for c := range q.cls {
		cs := &q.cls[c]
		if cs.lo != cs.loSaved {
			if err := w.set(loKey(Class(c)), putU64(cs.lo)); err != nil {
				return err
			}
			cs.loSaved = cs.lo
		}
	}
	return nil
}

// failLocked recovers from a failed write: the in-memory counters may no
// longer match the store, so they are recounted from it.
func (q *Queue) failLocked(err error) {
	q.log.Warn("queue write failed", "err", err)
	if _, rerr := q.reloadLocked(); rerr != nil {
		q.log.Error("queue recount failed", "err", rerr)
		q.setDegradedLocked("recount failed: " + rerr.Error())
	}
}

// reserveSeqLocked makes sure q.next is below the persisted high-water
// mark, writing a new one (fsync'd) when needed.
func (q *Queue) reserveSeqLocked() error {
	if q.opts.InMemory || q.next < q.hw {
		return nil
	}
	hw := q.next + seqReserve
	if err := writeSeqFile(seqPath(q.opts.Dir), seqState{Epoch: q.epoch, HW: hw}); err != nil {
		return classify(err)
	}
	q.hw = hw
	return nil
}

// addLiveLocked remembers a durable append for the live-first lease rule.
func (q *Queue) addLiveLocked(c Class, seq uint64, ref chunkRef) {
	if q.opts.LiveWindow < 0 {
		return
	}
	cs := &q.cls[c]
	if len(cs.live) >= maxLive {
		n := copy(cs.live, cs.live[len(cs.live)/4:])
		clear(cs.live[n:])
		cs.live = cs.live[:n]
	}
	cs.live = append(cs.live, liveEnt{seq: seq, ref: ref, t: q.opts.Now()})
}

// txnWriter writes entries in as few Badger transactions as possible,
// starting a new one when a transaction gets too big.
//
// With syncSplit, every transaction but the last is synced when it is
// committed: db.Sync syncs only the current memtable's WAL, and a
// memtable switch between two parts of one commit would otherwise leave
// the first part unsynced in the previous WAL.
//
// It estimates the memtable bytes it commits for the level-0 check
// (compact.go).
type txnWriter struct {
	q         *Queue
	db        *badger.DB
	txn       *badger.Txn
	syncSplit bool
	mem       int64 // estimated memtable bytes of the open transaction
}

// newTxnWriterLocked starts a write transaction on q.db.
func (q *Queue) newTxnWriterLocked(syncSplit bool) *txnWriter {
	return &txnWriter{q: q, db: q.db, txn: q.db.NewTransaction(true), syncSplit: syncSplit}
}

func (w *txnWriter) set(k, v []byte) error {
	w.mem += int64(len(k) + len(v) + memEntryOverhead)
	return w.do(func() error { return w.txn.Set(k, v) })
}

func (w *txnWriter) delete(k []byte) error {
	w.mem += int64(len(k) + memEntryOverhead)
	return w.do(func() error { return w.txn.Delete(k) })
}

func (w *txnWriter) do(f func() error) error {
	err := f()
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.commit(); err != nil {
			return err
		}
		if w.syncSplit {
			if err = w.db.Sync(); err != nil {
				return fmt.Errorf("sync store: %w", err)
			}
		}
		w.txn = w.db.NewTransaction(true)
		err = f()
	}
	if err != nil {
		return fmt.Errorf("write store: %w", err)
	}
	return nil
}

func (w *txnWriter) commit() error {
	mem := w.mem
	w.mem = 0
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("commit store: %w", err)
	}
	w.q.wroteLocked(mem)
	return nil
}

func (w *txnWriter) discard() { w.txn.Discard() }

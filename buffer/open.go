package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Open opens (or creates) the queue store. A store that cannot be read
// (checksum, structure, or a panic while reading it) is moved aside to
// <Dir>.corrupt-<unix seconds>, a fresh one is opened in its place and
// Stats().Degraded says so: a bad disk never turns into a crash loop.
// A store locked by another process is an error; so is a storage fault
// (permission, read-only file system, no space, I/O error, a path that is
// not a directory): that error wraps ErrStorage, the data is kept, and the
// caller retries later.
func Open(opts Options) (*Queue, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q := &Queue{
		opts:    o,
		log:     o.Logger,
		ready:   make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		filled:  make(chan struct{}, 1),
		gcKick:  make(chan struct{}, 1),
		gcRearm: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		leased:  make(map[uint64]leaseEnt),
	}
	q.compact.init(badgerOptions(o).MemTableSize)
	if !o.InMemory {
		if err := checkDir(o.Dir); err != nil {
			return nil, err
		}
		if _, total, err := o.diskSpace(filepath.Dir(filepath.Clean(o.Dir))); err == nil {
			q.opts.vlogFileSize = vlogFileSize(total)
			if total < smallDisk && opts.valueThreshold == 0 {
				q.opts.valueThreshold = smallValueThreshold
			}
		}
	}
	if !o.InMemory {
		// The queue's own lock: Badger's is released while the store is
		// closed for idleness (idle.go). Retried like Badger's below.
		lock, err := lockStore(o.Dir)
		for i := 0; i < 10 && errors.Is(err, errLocked); i++ {
			time.Sleep(100 * time.Millisecond)
			lock, err = lockStore(o.Dir)
		}
		if err != nil {
			return nil, fmt.Errorf("open queue %s: %w", o.Dir, classify(err))
		}
		q.idle.lock = lock
	}
	if err := q.start(); err != nil {
		q.unlock()
		return nil, err
	}
	return q, nil
}

// start opens the store and starts the queue's goroutines (Open).
func (q *Queue) start() error {
	o := q.opts
	storeSeq, storeEpoch, err := q.openStore()
	// Badger's directory lock is an flock that a child forked elsewhere in
	// this process holds until it execs: a lock conflict is retried for up
	// to a second before it is reported (another agent on the same store).
	for i := 0; i < 10 && isLocked(err); i++ {
		time.Sleep(100 * time.Millisecond)
		storeSeq, storeEpoch, err = q.openStore()
	}
	// Badger can fail once after a kill while it was creating a file
	// (dgraph-io/badger#2207) and open fine on the next try: retry, after a
	// pause, before moving a store with unsent records aside.
	var cause error // the damage that made Open retry
	for i := 0; i < len(openRetryDelays) && retryable(err) && !errors.Is(err, errChecked) && !o.InMemory; i++ {
		q.log.Warn("queue store did not open, retrying before quarantine", "attempt", i+1, "err", err)
		time.Sleep(openRetryDelays[i])
		cause = err
		if storeSeq, storeEpoch, err = q.openStore(); err != nil && !retryable(err) {
			err = fmt.Errorf("%w (after %w)", err, cause)
		}
	}
	// A retry that finds the directory locked after the damaged attempt's
	// Close was abandoned (closeQuietly: it did not finish in time, e.g.
	// a slow 32-bit board) meets this process's own handle, not another
	// agent: the store is still the damaged one and is moved aside.
	if cause != nil && q.abandoned && isLocked(err) && !o.InMemory {
		err = cause
	}
	if retryable(err) && !o.InMemory {
		reason, qerr := q.quarantine(err)
		if qerr != nil {
			return classify(qerr)
		}
		storeSeq, storeEpoch, err = q.openStore()
		q.degraded = reason
	}
	if err != nil {
		return fmt.Errorf("open queue %s: %w", o.Dir, classify(err))
	}
	if err := q.initSeq(storeSeq, storeEpoch); err != nil {
		q.closeQuietly(q.db)
		return fmt.Errorf("open queue %s: %w", o.Dir, classify(err))
	}
	if !o.InMemory {
		q.dirBytes = dirSize(o.Dir) // until the first GC pass measures it again
	}
	for c, ttl := range q.opts.TTL {
		if ttl > 0 && q.cls[c].records > 0 {
			q.gc.ttlDue = q.opts.Now() // a sweep finds the next deadline
		}
	}
	q.idle.last = time.Now()
	q.wg.Add(2)
	go q.commitLoop()
	go q.gcLoop()
	go q.compactLoop()
	// A store left with many level-0 tables (older options, or a crash
	// before a pass) is compacted down now.
	q.mu.Lock()
	q.checkL0Locked()
	q.mu.Unlock()
	return nil
}

// retryable reports whether an Open failure may be corruption: retried,
// then quarantined. A locked store and storage faults are neither.
func retryable(err error) bool {
	return err != nil && !isLocked(err) && !isStorage(err)
}

// openStore checks the tables, opens Badger and loads the queue state. On
// error the store is closed again. A panic while reading becomes an error
// wrapping ErrCorrupt.
func (q *Queue) openStore() (seq, epoch uint64, err error) {
	// A damaged table can make Badger read its mmap'd file out of bounds
	// (a fault, not a panic): in this goroutine it becomes a panic that
	// openStore's recover turns into ErrCorrupt instead of killing the
	// process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	q.suspect, q.orphanSeq = "", 0
	if !q.opts.InMemory {
		suspect, orphanSeq, err := checkTables(q.opts.Dir)
		if err != nil && !isStorage(err) {
			return 0, 0, fmt.Errorf("%w: %w", errChecked, err)
		}
		if err != nil {
			return 0, 0, err
		}
		q.suspect, q.orphanSeq = suspect, orphanSeq
	}
	db, err := openBadger(q.opts)
	if err != nil {
		return 0, 0, err
	}
	q.db = db
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = panicError("load store", r)
			}
		}()
		seq, epoch, err = q.load()
	}()
	if err != nil {
		if !q.closeQuietly(db) {
			q.abandoned = true // its directory lock stays held
		}
		q.db = nil
		return 0, 0, err
	}
	return seq, epoch, nil
}

// openBadger opens Badger, turning a panic into an error.
func openBadger(o Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("badger open", r)
		}
	}()
	return badger.Open(badgerOptions(o))
}

func isLocked(err error) bool {
	return err != nil && (errors.Is(err, errLocked) || strings.Contains(err.Error(), "Cannot acquire directory lock"))
}

// quarantine moves the store directory aside.
func (q *Queue) quarantine(cause error) (string, error) {
	dst := fmt.Sprintf("%s.corrupt-%d", filepath.Clean(q.opts.Dir), q.opts.Now().Unix())
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.corrupt-%d.%d", filepath.Clean(q.opts.Dir), q.opts.Now().Unix(), i)
	}
	if err := os.Rename(q.opts.Dir, dst); err != nil {
		return "", fmt.Errorf("open queue: quarantine %s: %w (after %w)", q.opts.Dir, err, cause)
	}
	q.log.Error("queue store corrupt, moved aside", "path", dst, "err", cause)
	return fmt.Sprintf("store corrupt, moved to %s: %v", dst, cause), nil
}

// load reads the meta keys and counts the records.
func (q *Queue) load() (seq, epoch uint64, err error) {
	var schema uint32
	var synced uint64
	hasSchema := false
	err = q.db.View(func(txn *badger.Txn) error {
		if v, ok, err := getKey(txn, []byte(keySchema)); err != nil {
			return err
		} else if ok {
			if len(v) != 4 {
				return fmt.Errorf("%w: schema key of %d bytes", ErrCorrupt, len(v))
			}
			schema, hasSchema = uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), true
		}
		if seq, err = getU64(txn, keySeq); err != nil {
			return err
		}
		if epoch, err = getU64(txn, keyEpoch); err != nil {
			return err
		}
		synced, err = getU64(txn, keySynced)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if hasSchema && schema != schemaVersion {
		return 0, 0, fmt.Errorf("%w: schema %d, this version reads %d", ErrCorrupt, schema, schemaVersion)
	}
	maxSeq, err := q.reloadLocked()
	if err != nil {
		return 0, 0, err
	}
	if err := q.dropTornLocked(synced); err != nil {
		return 0, 0, err
	}
	if !hasSchema {
		err = q.db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte(keySchema), []byte{0, 0, 0, byte(schemaVersion)})
		})
	}
	return max(seq, maxSeq), epoch, err
}

func getKey(txn *badger.Txn, k []byte) ([]byte, bool, error) {
	it, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := it.ValueCopy(nil)
	return v, err == nil, err
}

func getU64(txn *badger.Txn, k string) (uint64, error) {
	v, ok, err := getKey(txn, []byte(k))
	if err != nil || !ok {
		return 0, err
	}
	x, err := u64(v)
	if err != nil {
		return 0, fmt.Errorf("%w: key %s: %w", ErrCorrupt, k, err)
	}
	return x, nil
}

// reloadLocked loads the low-water marks and gone sets and recounts the
// per-class counters from the store (chunk keys only); it returns the
// highest record seq found. Called from Open (no concurrency yet) and with
// q.mu held after a failed write.
func (q *Queue) reloadLocked() (uint64, error) {
	var maxSeq uint64
	var stale [][]byte
	err := q.db.View(func(txn *badger.Txn) error {
		for c := range Class(NumClasses) {
			cs := &q.cls[c]
			lo, err := getU64(txn, string(loKey(c)))
			if err != nil {
				return err
			}
			cs.lo, cs.loSaved = lo, lo
			cs.records, cs.bytes = 0, 0
			cs.gone, cs.dirty = make(map[uint64]*goneSet), make(map[uint64]chunkRef)
			err = q.scanChunks(txn, c, cs.lo, func(r chunkRef, _ *badger.Item) (bool, error) {
				cs.records += int64(r.n)
				cs.bytes += r.accounted()
				maxSeq = max(maxSeq, r.end()-1)
				return true, nil
			})
			if err != nil {
				return err
			}
			s, err := q.loadGone(txn, c)
			if err != nil {
				return err
			}
			stale = append(stale, s...)
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return maxSeq, err
	}
	// Gone sets whose chunk is gone (deleted in a later transaction, or
	// its key was lost): delete them.
	w := q.newTxnWriterLocked(false)
	defer w.discard()
	for _, k := range stale {
		if err := w.delete(k); err != nil {
			return 0, err
		}
	}
	return maxSeq, w.commit()
}

// loadGone loads the gone sets of class c and subtracts their records from
// the counters. It returns the keys of gone sets without a chunk.
func (q *Queue) loadGone(txn *badger.Txn, c Class) ([][]byte, error) {
	cs := &q.cls[c]
	var stale [][]byte
	io := badger.DefaultIteratorOptions
	io.Prefix = []byte{gonePrefix, byte(c)}
	it := txn.NewIterator(io)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		_, first, err := decodeGoneKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		r, ok := findChunk(txn, c, first)
		if !ok || r.first != first || first < cs.lo {
			stale = append(stale, k)
			continue
		}
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		g, err := decodeGone(v, int(r.n))
		if err != nil {
			// Its records count as not acknowledged: they are sent again
			// (at-least-once) rather than the whole store moved aside.
			q.log.Warn("queue dropped a corrupt gone set", "class", c.String(), "first_seq", first, "err", err)
			q.setDegradedLocked("corrupt gone set dropped")
			stale = append(stale, k)
			continue
		}
		cs.gone[first] = g
		cs.sub(int64(g.n), g.data+int64(g.n)*RecordOverhead)
		if g.n == int(r.n) {
			q.touchLocked(c, r, g) // all gone: delete on the next write
		}
	}
	return stale, nil
}

// initSeq picks the first seq of this run and persists the new epoch (see
// docs/buffer.md "Seq"): the store's own counter when the seq file next to
// the store vouches for it, else the maximum of the store counter, the
// file's reserved high-water mark and the clock (Unix microseconds).
func (q *Queue) initSeq(storeSeq, storeEpoch uint64) error {
	for c := range q.cls {
		q.cls[c].fwd, q.cls[c].fwdChunk = q.cls[c].lo, q.cls[c].lo
	}
	if q.opts.InMemory {
		q.next = storeSeq + 1
		q.durable = storeSeq
		return nil
	}
	path := seqPath(q.opts.Dir)
	fs, ok, err := readSeqFile(path)
	if err != nil {
		if isStorage(err) {
			return classify(err)
		}
		// Not readable as a file (e.g. a directory in its place): no
		// trustworthy mark, as for a torn file; the seq jumps forward.
		q.log.Warn("queue seq file unreadable, seq continues from the store and the clock", "err", err)
		ok = false
	}
	next := storeSeq + 1
	// The same store as the file's: normally the epochs match; a pending
	// file one epoch ahead (or equal) means an Open died between its two
	// writes below, before anything could be appended.
	same := ok && !fs.Pending && fs.Epoch == storeEpoch ||
		ok && fs.Pending && (fs.Epoch == storeEpoch+1 || fs.Epoch == storeEpoch)
	if q.suspect == "" && q.orphanSeq > storeSeq {
		// A table the MANIFEST does not list holds seqs the store lost.
		q.suspect = fmt.Sprintf("a table the manifest does not list holds seq %d, above the store's %d", q.orphanSeq, storeSeq)
	}
	if same && q.suspect != "" {
		q.log.Warn("queue store may have lost its newest entries, seq continues above the reservation", "reason", q.suspect)
		same = false
	}
	if !same || q.opts.Sync == SyncNone {
		next = max(next, fs.HW, clockFloor(q.opts.Now()))
		if ok && !same {
			q.log.Warn("queue store older than its seq file, seq jumps", "seq", next)
		}
	}
	q.next, q.durable = next, next-1
	q.epoch = max(fs.Epoch, storeEpoch) + 1
	if same && fs.Pending && fs.Epoch == storeEpoch+1 {
		q.epoch = fs.Epoch // finish the interrupted Open's epoch
	}
	// File first (pending), then the store, then the file again: a kill at
	// any point leaves a combination the code above recognises.
	hw := next + seqReserve
	seqErr := writeSeqFile(seqPath(q.opts.Dir), seqState{Epoch: q.epoch, HW: hw, Pending: true})
	err = q.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyEpoch), putU64(q.epoch)); err != nil {
			return err
		}
		if err := txn.Set([]byte(keySynced), putU64(next-1)); err != nil {
			return err
		}
		return txn.Set([]byte(keySeq), putU64(next-1))
	})
	if err == nil {
		err = q.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("write epoch: %w", err)
	}
	if seqErr == nil {
		seqErr = writeSeqFile(seqPath(q.opts.Dir), seqState{Epoch: q.epoch, HW: hw})
	}
	if seqErr != nil && isStorage(seqErr) && !isNoSpace(seqErr) {
		return classify(seqErr)
	}
	if seqErr != nil {
		// Not fatal: without a trustworthy file the next Open jumps the
		// seq forward (the safe direction) instead of reusing one.
		q.log.Warn("queue seq file not written", "err", seqErr)
		q.setDegradedLocked("seq file not written: " + seqErr.Error())
	}
	q.hw = hw
	q.syncedSaved = next - 1
	return nil
}

// dropTornLocked checks the chunks above the store's last sync point
// (z/synced). A power cut can leave a chunk's key (memtable WAL) on disk
// without its value (value log), or with part of it: the kernel writes
// dirty pages back in any order. Such a chunk was never synced, so no
// Append of its records returned: it is dropped quietly, counted in
// Stats.Torn, and the queue is not marked degraded (a corrupt chunk found
// anywhere else is).
func (q *Queue) dropTornLocked(synced uint64) error {
	var bad []badChunk
	err := q.db.View(func(txn *badger.Txn) error {
		for c := range Class(NumClasses) {
			err := q.scanChunks(txn, c, synced+1, func(r chunkRef, it *badger.Item) (bool, error) {
				torn, err := readChunk(it, r, func(*chunk) error { return nil })
				if torn {
					bad = append(bad, badChunk{c, r})
				}
				return true, err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(bad) == 0 {
		return err
	}
	var n int64
	for _, b := range bad {
		n += q.markChunkGoneLocked(b.c, b.r)
	}
	if err := q.saveLoLocked(); err != nil {
		return err
	}
	q.torn.Add(uint64(n))
	q.log.Warn("queue dropped records torn by a power cut (never acknowledged)", "records", n, "chunks", len(bad))
	return nil
}

// clockFloor is the lowest seq allowed when no persisted counter can be
// trusted: the wall clock in microseconds, which a queue appending fewer
// than a million records per second never overtakes.
func clockFloor(t time.Time) uint64 {
	if us := t.UnixMicro(); us > 0 {
		return uint64(us)
	}
	return 1
}

package buffer

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Errors returned by the queue. Test them with errors.Is.
var (
	// ErrFull: the record was not stored because the queue is at its
	// bounds and only more important records could be evicted, or the
	// disk is (nearly) full. The caller sheds the record or retries later.
	ErrFull = errors.New("queue full")
	// ErrClosed: the queue is closed.
	ErrClosed = errors.New("queue closed")
	// ErrCorrupt: the store could not be read. Open never returns it (it
	// quarantines the store instead); Stats.Degraded reports the cause.
	ErrCorrupt = errors.New("queue store corrupt")
	// ErrTooLarge: a single record exceeds MaxRecordBytes or MaxBytes.
	ErrTooLarge = errors.New("record too large")
	// ErrInvalid: invalid Options or arguments.
	ErrInvalid = errors.New("invalid queue argument")
	// ErrStorage: the environment refused (permission denied, read-only
	// file system, no space, I/O error, a path that is not a directory).
	// The data on disk is kept, never moved aside; the caller retries
	// with backoff. An ENOSPC error wraps ErrFull as well.
	ErrStorage = errors.New("queue storage unavailable")
)

// Record is one queued record as returned by Lease.
type Record struct {
	// Seq is unique and increasing for the life of the store (and of the
	// seq file next to it); see docs/buffer.md.
	Seq uint64
	// Class is the priority class it was appended with.
	Class Class
	// Time is the append time (Options.Now at commit).
	Time time.Time
	// Data is the payload, owned by the caller.
	Data []byte
}

// ClassStats describes one class.
type ClassStats struct {
	Records int64 // records stored (leased ones included)
	Bytes   int64 // accounted bytes (key + header + data)
	// OldestAge is the age of the oldest stored record (0 when empty).
	OldestAge time.Duration
	Evicted   uint64 // records evicted to honour MaxBytes/MaxRecords or a full disk
	Shed      uint64 // appends refused with ErrFull
	Expired   uint64 // records dropped by TTL
}

// Stats is a snapshot of the queue's state.
type Stats struct {
	Classes [NumClasses]ClassStats // indexed by Class
	Records int64
	Bytes   int64
	Leased  int    // records leased and not yet acked or released
	Appends uint64 // successful appends since Open
	Syncs   uint64 // db syncs since Open
	Corrupt uint64 // undecodable records dropped since Open
	// Torn counts records dropped at Open because a power cut tore their
	// chunk before it was synced: their Append never returned, so nothing
	// acknowledged is lost and the queue is not marked degraded.
	Torn    uint64
	NextSeq uint64 // seq the next append will get
	// DiskBytes is the size of the store directory at the last GC run.
	DiskBytes int64
	// Degraded is empty when healthy, else the reason (store quarantined,
	// disk nearly full, corrupt records found).
	Degraded string
	// Disk is the space guard's state (zero in memory or when disabled).
	Disk DiskStats
	// StoreClosed: the store is closed because it has not been used for
	// Options.IdleClose; the next use reopens it (idle.go).
	StoreClosed bool
	// StoreOpens counts reopens after an idle close since Open.
	StoreOpens uint64
}

// DiskStats is the space guard's state (docs/buffer.md "Disk space").
type DiskStats struct {
	// Floor is the free-space floor in bytes (Options.MinFree, or the
	// automatic one for the file system); 0 before the first append.
	Floor int64
	// Free is the file system's free space at the last append.
	Free int64
	// Shedding: free space fell below Floor and has not yet come back
	// above Floor*1.5; non-critical records are being evicted to fit.
	Shedding bool
	// Cap is the limit on accounted bytes the guard imposes on
	// non-critical records (0 = none, MaxBytes applies).
	Cap int64
	// Transitions counts entries into and exits from shedding since Open.
	Transitions uint64
}

// liveEnt is a recently appended record, remembered so that Lease can take
// live records without scanning. Guarded by Queue.mu.
type liveEnt struct {
	seq  uint64
	ref  chunkRef // the chunk holding seq
	t    time.Time
	gone bool // acked, evicted or expired
}

// maxLive caps each class's live ring; older live records are found by the
// backlog scan instead.
const maxLive = 4096

// classState is the in-memory state of one class. Guarded by Queue.mu.
type classState struct {
	records, bytes int64
	// lo: no chunk of the class starts below lo, so every record below
	// it is gone (acked, evicted, expired). Scans start there.
	lo      uint64
	loSaved uint64 // lo as last written to z/lo
	// fwd is the backlog lease cursor: every record in [lo, fwd) is leased
	// or gone. fwdChunk <= the first seq of the chunk holding fwd: the
	// backlog scan seeks there. Release moves both back.
	fwd, fwdChunk uint64
	// gone holds the gone sets of the class's partially gone chunks, by
	// first seq; dirty lists the chunks whose gone set changed since the
	// last write (flushGoneLocked).
	gone  map[uint64]*goneSet
	dirty map[uint64]chunkRef
	live  []liveEnt

	evicted, shed, expired uint64
}

// leaseEnt is a leased record.
type leaseEnt struct {
	class Class
	ref   chunkRef
	size  int // data bytes
}

// Queue is a durable priority queue. All methods are safe for concurrent use.
type Queue struct {
	opts  Options
	db    *badger.DB
	log   *slog.Logger
	ready chan struct{}

	pendMu   sync.Mutex
	pending  []*appendReq // guarded by pendMu
	stopping bool         // guarded by pendMu: Close has begun
	kick     chan struct{}
	full     chan struct{} // a group-commit window has groupMax records
	pendData int64         // guarded by pendMu: data bytes in pending
	// lastCommit is when the committer last finished a commit (commitLoop's
	// goroutine only): a window extends only within a stream of appends.
	lastCommit time.Time
	filled     chan struct{} // pendData reached GroupFill
	gcKick     chan struct{}
	gcRearm    chan struct{} // a GC deadline changed (gc.go)
	gcIters    atomic.Uint64 // GC goroutine wake-ups (tests)
	stop       chan struct{}
	wg         sync.WaitGroup

	mu     sync.Mutex
	closed bool   // guarded by mu
	next   uint64 // guarded by mu: seq of the next append
	// syncedSaved is z/synced as last written (guarded by mu).
	syncedSaved uint64
	hw          uint64                 // guarded by mu: reserved high-water (on disk only)
	epoch       uint64                 // guarded by mu
	durable     uint64                 // guarded by mu: every seq <= durable is synced per policy
	cls         [NumClasses]classState // guarded by mu
	leased      map[uint64]leaseEnt    // guarded by mu
	degraded    string                 // guarded by mu
	guard       guardState             // guarded by mu: the space guard (guard.go)
	dirBytes    int64                  // guarded by mu
	// deleted counts chunks deleted since the last GC pass: their value-log
	// space comes back only after a compaction (gc.go).
	deleted int // guarded by mu
	// gc is what the GC goroutine waits for (gc.go).
	gc gcState // guarded by mu

	syncs, appends, corrupt, torn atomic.Uint64

	// swapMu guards q.db against replacement (repairLocked, which holds
	// mu too) for the users of q.db that do not hold mu: the committer's
	// sync and the GC goroutine's value-log GC.
	swapMu sync.RWMutex
	// suspect says why the store's seq counter may be behind (checkTables);
	// set by openStore.
	suspect string
	// abandoned is set when Open gave up closing a damaged attempt's
	// store (its directory lock stays held); see Open.
	abandoned bool
	// orphanSeq is the highest seq held by tables the MANIFEST does not
	// list (checkTables); above the store's counter it makes Open suspect.
	orphanSeq uint64
	// broken is set when a failed store could not be replaced: every
	// call then fails with ErrStorage. Guarded by mu.
	broken error

	// compact is the level-0 compactor's state (compact.go).
	compact compactState
	// idle is the idle-close state (idle.go); guarded by mu but for its
	// counters and lock file.
	idle idleState

	closeOnce sync.Once
	closeErr  error
}

// Ready returns a channel that receives a value (non-blocking, capacity 1)
// after each durable append.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

func (q *Queue) signalReady() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the queue's counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	for range 2 { // a store that panics is replaced: count the fresh one
		if s, ok := q.statsLocked(); ok {
			return s
		}
	}
	s, _ := q.statsLocked()
	return s
}

// statsLocked builds Stats; ok is false when reading the store panicked
// (and it was replaced).
func (q *Queue) statsLocked() (s Stats, ok bool) {
	var err error
	defer func() { ok = err == nil }()
	defer q.catchLocked("stats", &err)
	s = Stats{
		Leased:      len(q.leased),
		Appends:     q.appends.Load(),
		Syncs:       q.syncs.Load(),
		Corrupt:     q.corrupt.Load(),
		Torn:        q.torn.Load(),
		NextSeq:     q.next,
		DiskBytes:   q.dirBytes,
		Degraded:    q.degraded,
		StoreClosed: q.idle.closed,
		StoreOpens:  q.idle.opens.Load(),
	}
	if s.Degraded == "" && (q.guard.shedding || q.guard.refusing) {
		s.Degraded = "disk nearly full"
	}
	s.Disk = DiskStats{
		Floor: q.guard.floor, Free: q.guard.free, Shedding: q.guard.shedding,
		Cap: q.guard.cap, Transitions: q.guard.trans,
	}
	now := q.opts.Now()
	for c := range q.cls {
		cs := &q.cls[c]
		s.Classes[c] = ClassStats{
			Records: cs.records, Bytes: cs.bytes,
			Evicted: cs.evicted, Shed: cs.shed, Expired: cs.expired,
		}
		switch {
		case cs.records > 0 && q.idle.closed:
			if t := q.idle.oldest[c]; !t.IsZero() {
				s.Classes[c].OldestAge = max(now.Sub(t), 0)
			}
		case cs.records > 0 && !q.closed && q.db != nil:
			if t, ok := q.oldestLocked(Class(c)); ok {
				s.Classes[c].OldestAge = max(now.Sub(t), 0)
			}
		}
		s.Records += cs.records
		s.Bytes += cs.bytes
	}
	return s, true
}

// oldestLocked returns the append time of the oldest record of class c.
func (q *Queue) oldestLocked(c Class) (time.Time, bool) {
	var t time.Time
	found := false
	_ = q.db.View(func(txn *badger.Txn) error {
		return q.scanChunks(txn, c, q.cls[c].lo, func(_ chunkRef, it *badger.Item) (bool, error) {
			err := it.Value(func(v []byte) error {
				ch, err := decodeChunk(v)
				if err == nil {
					t, found = ch.t, true
				}
				return nil // corrupt: Lease will drop it
			})
			return !found, err
		})
	})
	return t, found
}

// Close commits pending appends, stops the background goroutines and closes
// the store. It is idempotent.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.pendMu.Lock()
		q.stopping = true
		q.pendMu.Unlock()
		close(q.stop)
		q.wg.Wait() // the committer drains pending appends before exiting
		// The compactor stops after the committer: a pass may be needed
		// for the committer's last writes to get through.
		close(q.compact.stop)
		<-q.compact.done
		q.mu.Lock()
		var err error
		if q.db != nil {
			func() {
				defer q.catchLocked("close", &err)
				err = q.saveLoLocked()
			}()
		}
		q.closed = true
		db := q.db
		closing := q.idle.closing
		q.mu.Unlock()
		if closing != nil { // an idle close still running: its lock goes with it
			select {
			case <-closing:
			case <-time.After(cmp.Or(q.opts.idleCloseWait, idleCloseWait)):
				err = fmt.Errorf("%w: the store's idle close has not finished", ErrStorage)
			}
		}
		if db != nil {
			func() {
				defer func() {
					if r := recover(); r != nil {
						err = panicError("close", r)
					}
				}()
				if cerr := db.Close(); err == nil {
					err = cerr
				}
			}()
		}
		q.unlock()
		if err != nil {
			q.closeErr = fmt.Errorf("close queue: %w", err)
		}
	})
	return q.closeErr
}

// unlock releases the queue's lock file.
func (q *Queue) unlock() {
	if q.idle.lock != nil {
		_ = q.idle.lock.Close()
		q.idle.lock = nil
	}
}

// setDegradedLocked records a degradation reason (first one wins until
// cleared).
func (q *Queue) setDegradedLocked(reason string) {
	if q.degraded == "" {
		q.degraded = reason
	}
}

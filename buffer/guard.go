package buffer

import (
	"math"
	"time"
)

// The space guard (docs/buffer.md "Disk space"). Badger writes through
// mmap: a real ENOSPC inside an mmap'd write is a SIGBUS, not an error, so
// the queue keeps a floor of free space on the file system holding Dir and
// sizes itself to stay above it.
//
// Before each commit (statfs):
//   - free < 2*floor: a GC pass is started early, at most one per second
//     (10 per second below the floor): acknowledged and evicted records
//     are garbage until one runs.
//   - free < floor: the queue's size is frozen (a disk cap at its current
//     accounted bytes): new records still come in and evict older ones of
//     their class or below, oldest telemetry first, never critical ones.
//   - free < floor/2 (the reserve): only critical records are stored;
//     below floor/4 nothing is (ErrFull).
//
// After each GC pass, when the garbage is gone and what is missing is
// missing because of what the queue holds (or what others wrote):
//   - free < floor: shedding. The cap is lowered by the shortfall
//     (1.5*floor - free), the queue evicted down to it and another pass
//     started. One step per pass, each measured after the space came
//     back: only what the shortfall needs is evicted.
//   - floor <= free < 2*floor: nothing is evicted (hysteresis: the value
//     log frees space one whole file at a time, so free space swings);
//     a cap below what the disk holds now is raised to the queue's size
//     plus half of the free space above 1.75*floor, so a queue the
//     shortfall evicted to nothing stores again.
//   - free >= 2*floor ends shedding, and the cap grows by half the
//     surplus (free - 2*floor) per pass; it is dropped once it reaches
//     MaxBytes.
//
// While the guard holds the queue down (shedding, or a cap) and a commit
// finds free >= 2*floor, it starts a pass at once (at most one per
// gcTick): space that came back is used within about a second, without a
// restart and without waiting for the next GCInterval.
//
// Lease and Ack never consult the guard: publishing never stops because
// of it.

// Auto floor: floorShare of the file system, within [minAutoFloor,
// maxAutoFloor]; margin = floor/2.
const (
	floorShare   = 8 // 1/8
	minAutoFloor = 2 << 20
	maxAutoFloor = 32 << 20
)

// autoFloor returns the automatic free-space floor for a file system of
// total bytes.
func autoFloor(total uint64) int64 {
	if total > math.MaxInt64 {
		return maxAutoFloor
	}
	return min(max(int64(total)/floorShare, minAutoFloor), maxAutoFloor) //nolint:gosec // checked above
}

// guardState is the space guard's state. Guarded by Queue.mu.
type guardState struct {
	floor    int64  // effective floor (bytes); 0 until the first check
	free     int64  // free bytes at the last check
	shedding bool   // below the floor, not yet back above floor+margin
	cap      int64  // disk cap on accounted bytes; 0 = none
	passes   uint64 // GC passes completed
	trans    uint64 // transitions into or out of shedding
	refusing bool   // the last commit was below the reserve (floor/2)
	kicked   bool   // a GC pass was asked for at kickPass
	kickPass uint64
	lastPass time.Time // when the last GC pass ended (monotonic clock)
}

// guardLocked runs before each commit. It reports which classes may be
// stored: critOnly (only ClassCritical) or none.
func (q *Queue) guardLocked() (critOnly, none bool) {
	free, ok := q.diskLocked()
	if !ok {
		return false, false
	}
	g := &q.guard
	if free < g.floor && g.cap == 0 {
		// Freeze the queue's size (new records replace old ones) until
		// a GC pass has shown what the disk can hold.
		_, bytes := q.totalsLocked()
		g.cap = max(bytes, 1)
	}
	switch {
	case free < 2*g.floor:
		// Approaching the floor: collect garbage early.
		q.kickGCLocked(free < g.floor)
	case g.shedding || g.cap > 0:
		// The space came back (the queue drained, or another program
		// freed it) while the guard still holds the queue down: a pass
		// now ends shedding and grows the cap, rather than at the next
		// GCInterval, while new records are refused or replace old ones.
		q.kickGCLocked(false)
	}
	g.refusing = free < g.floor/2
	return free < g.floor/2, free < g.floor/4
}

// diskLocked measures the file system and updates the floor; ok is false
// when the guard is off or the file system cannot be measured.
func (q *Queue) diskLocked() (free int64, ok bool) {
	if q.opts.InMemory || q.opts.MinFree < 0 {
		return 0, false
	}
	free64, total, err := q.opts.diskSpace(q.opts.Dir)
	if err != nil {
		return 0, false
	}
	g := &q.guard
	g.floor = q.opts.MinFree
	if g.floor == 0 {
		g.floor = autoFloor(total)
	}
	g.free = int64(min(free64, math.MaxInt64)) //nolint:gosec // clamped
	return g.free, true
}

// afterGCLocked runs after each GC pass, when the space acknowledged and
// evicted records held has been given back: what is missing now is missing
// because of what the queue holds (or what others wrote). It lowers the
// cap by the shortfall and evicts, or grows the cap back, and moves in and
// out of shedding.
func (q *Queue) afterGCLocked() {
	g := &q.guard
	g.passes++
	g.lastPass = time.Now()
	free, ok := q.diskLocked()
	if !ok {
		return
	}
	margin := g.floor / 2 // the shortfall is measured to floor+margin
	_, bytes := q.totalsLocked()
	q.log.Debug("queue gc pass", "free", free, "bytes", bytes, "cap", g.cap, "dir", q.dirBytes)
	switch {
	case free < g.floor:
		if !g.shedding {
			g.shedding = true
			g.trans++
			q.log.Warn("queue disk nearly full, shedding", "free_bytes", free, "min_free_bytes", g.floor)
		}
		if g.cap == 0 {
			g.cap = bytes
		}
		g.cap = max(min(bytes, g.cap)-(g.floor+margin-free), 1)
		q.evictToCapLocked()
		q.kickGCLocked(true) // give the evicted records' space back
	case free < 2*g.floor:
		// Hysteresis: not shedding more, and not growing past what keeps
		// free space at floor+1.5*margin. But a cap the shortfall pushed
		// below what the disk holds now (the queue was small next to the
		// shortfall, or space came back part of the way) grows to it:
		// otherwise a queue evicted to nothing would refuse every new
		// record for as long as free space stays in this band.
		if room := free - (g.floor + 3*margin/2); g.cap > 0 && room > 0 {
			g.cap = max(g.cap, bytes+room/2)
		}
	default:
		if g.shedding {
			g.shedding = false
			g.trans++
			q.log.Info("queue disk space recovered", "free_bytes", free, "disk_cap_bytes", g.cap)
		}
		if g.cap > 0 {
			// Well above the floor: grow back by half the surplus.
			g.cap += (free - 2*g.floor) / 2
			if g.cap >= q.opts.MaxBytes {
				g.cap = 0
			}
		}
	}
}

// capFor returns the accounted-bytes limit for an append of class k.
func (q *Queue) capFor(k Class) int64 {
	if k != ClassCritical && q.guard.cap > 0 {
		return min(q.opts.MaxBytes, q.guard.cap)
	}
	return q.opts.MaxBytes
}

// evictToCapLocked evicts non-critical records, oldest of the lowest class
// first, until the queue fits the disk cap.
func (q *Queue) evictToCapLocked() {
	e := newEvictor(q)
	defer e.close()
	for {
		_, b := q.totalsLocked()
		if b <= q.guard.cap || !q.evictOneLocked(e, ClassEvent) {
			break
		}
	}
	if e.evicted {
		if err := q.saveLoLocked(); err != nil {
			q.log.Warn("queue eviction not saved", "err", err)
		}
	}
}

// kickGCLocked starts a GC pass unless one was asked for since the last
// one completed.
func (q *Queue) kickGCLocked(urgent bool) {
	g := &q.guard
	if g.kicked && g.kickPass == g.passes {
		return
	}
	// At most one early pass per gcTick, and 10 per second when urgent:
	// a pass compacts and walks the directory.
	if since := time.Since(g.lastPass); since < gcTick && (!urgent || since < gcTick/10) {
		return
	}
	q.guard.kicked, q.guard.kickPass = true, q.guard.passes
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
}

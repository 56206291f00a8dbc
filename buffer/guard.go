package buffer

import "math"

// The space guard (docs/buffer.md "Disk space"). Badger writes through
// mmap: a real ENOSPC inside an mmap'd write is a SIGBUS, not an error, so
// the queue keeps a floor of free space on the file system holding Dir and
// sizes itself to stay above it:
//
//   - free >= floor: normal.
//   - free < floor: shedding. The guard lowers a disk cap on the queue's
//     accounted bytes by the shortfall (floor + margin - free) and evicts
//     down to it, oldest telemetry first, then events, never critical
//     records; a GC pass is started to give the space back. The cap is
//     lowered again only after that pass has run (its effect is then
//     measured), so a disk filled by someone else does not wipe the queue
//     one commit at a time. Appends continue: a new record evicts older
//     ones of its class or below (the queue keeps the newest data it can
//     hold).
//   - free < floor/2: the reserve is reached: only critical records are
//     stored while free >= floor/4; below that nothing is.
//   - free >= floor + margin ends shedding; the cap then grows by half the
//     surplus per GC pass and is dropped once it reaches MaxBytes.
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
	capPass  uint64 // gcPasses when the cap last changed
	changed  bool   // the cap changed since capPass
	passes   uint64 // GC passes completed
	trans    uint64 // transitions into or out of shedding
}

// guardLocked runs before each commit. It reports which classes may be
// stored: critOnly (only ClassCritical) or none.
func (q *Queue) guardLocked() (critOnly, none bool) {
	if q.opts.InMemory || q.opts.MinFree < 0 {
		return false, false
	}
	free64, total, err := q.opts.diskSpace(q.opts.Dir)
	if err != nil {
		return false, false
	}
	g := &q.guard
	g.floor = q.opts.MinFree
	if g.floor == 0 {
		g.floor = autoFloor(total)
	}
	free := int64(min(free64, math.MaxInt64)) //nolint:gosec // clamped
	g.free = free
	margin := g.floor / 2
	switch {
	case !g.shedding && free < g.floor:
		g.shedding = true
		g.trans++
		q.log.Warn("queue disk nearly full, shedding", "free_bytes", free, "min_free_bytes", g.floor)
	case g.shedding && free >= g.floor+margin:
		g.shedding = false
		g.trans++
		q.log.Info("queue disk space recovered", "free_bytes", free, "disk_cap_bytes", g.cap)
	}
	fresh := !g.changed || g.passes != g.capPass // a GC pass ran since the last change
	_, bytes := q.totalsLocked()
	switch {
	case free < g.floor && fresh:
		base := bytes
		if g.cap > 0 {
			base = min(base, g.cap)
		}
		g.cap = max(base-(g.floor+margin-free), 1)
		g.capPass, g.changed = g.passes, true
		q.evictToCapLocked()
		q.kickGC()
	case free < g.floor:
		q.kickGC() // a pass is pending: wait for it before shedding more
	case g.cap > 0 && free > g.floor+margin && fresh:
		g.cap += (free - g.floor - margin) / 2
		if g.cap >= q.opts.MaxBytes {
			g.cap = 0
		}
		g.capPass, g.changed = g.passes, true
	}
	return free < g.floor/2, free < g.floor/4
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

func (q *Queue) kickGC() {
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
}

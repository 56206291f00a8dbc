package buffer

// SetFreeSpace replaces the free-space probe (tests simulate a full disk).
func SetFreeSpace(o *Options, f func(path string) (uint64, error)) {
	o.diskSpace = func(path string) (uint64, uint64, error) {
		free, err := f(path)
		return free, 1 << 40, err
	}
}

// SetValueThreshold overrides the value-log threshold (benchmarks).
func SetValueThreshold(o *Options, n int64) { o.valueThreshold = n }

// SetMemTableSize overrides Badger's memtable size (tests).
func SetMemTableSize(o *Options, n int64) { o.memTableSize = n }

// FixIdleClose keeps the idle-close wait at IdleClose (no stretching):
// the kill and power-cut tests want the store to close and reopen all the
// time.
func FixIdleClose(o *Options) { o.idleFixed = true }

// DisableCompactor turns the queue's level-0 compactor off (tests build
// level-0-heavy stores with it).
func DisableCompactor(o *Options) { o.noCompact = true }

// L0Tables returns the store's level-0 table count.
func L0Tables(q *Queue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.db == nil {
		return 0
	}
	return l0Tables(q.db)
}

// Compactions returns how many level-0 passes the compactor ran.
func Compactions(q *Queue) uint64 { return q.compact.runs.Load() }

// GCIterations returns how often the GC goroutine woke up.
func GCIterations(q *Queue) uint64 { return q.gcIters.Load() }

package buffer

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// badgerOptions returns Badger options for a ~32 MB resident budget.
// Badger's defaults (64 MB memtables x5, 256 MB block cache, 1 GB value-log
// files, 4 compactors) peak at gigabytes; every knob below trades a little
// throughput for memory.
func badgerOptions(o Options) badger.Options {
	dir := o.Dir
	if o.InMemory {
		dir = ""
	}
	bo := badger.DefaultOptions(dir).
		WithInMemory(o.InMemory).
		// Two 2 MB memtables: the skiplist arenas are Go heap (2.6 MB each
		// with the batch headroom) and each memtable flush builds its L0
		// table in a Go-heap allocator that grows with the memtable
		// (measured: flush builders were 56 MB of heap with 4 MB
		// memtables, 33 MB with 2 MB). The .mem WAL is also a 2x mmap.
		// 2 MB still holds ~9k records of 200 bytes per flush, and keeps
		// Badger's largest transaction (15 % of it, 314 KB) above
		// MaxRecordBytes.
		WithMemTableSize(2 << 20).
		WithNumMemtables(2).
		// Values stay in the LSM tree (threshold above MaxRecordBytes), not
		// in the value log: DropPrefix deletes whole tables of acknowledged
		// records without updating value-log discard statistics, so values
		// in the value log would never be given back (measured: 64 MB
		// stayed on disk after a full drain). In the tree, a dropped range
		// frees its disk at once. The cost is write amplification from
		// compactions of records that live long (docs/perf/buffer.md).
		WithValueThreshold(valueThreshold(o)).
		// The value log holds nothing (values are inline) but Badger still
		// mmaps 2x its file size: 1 MB files keep that at 2 MB, and well
		// below what 32-bit armv7 can map (a 1 GB default needs a 2 GB
		// mapping and fails there, ssbc/go-ssb#124).
		WithValueLogFileSize(1 << 20).
		// 2 MB tables, not smaller than the memtable: with 1 MB tables
		// and 2 MB memtables Badger v4.9.6 on 32-bit lost flushed tables
		// much more often (it still can; see docs/buffer.md "32-bit").
		// The base level is sized to hold the
		// whole queue (MaxBytes + 25 %), so records go memtable -> L0 ->
		// last level and are never compacted through intermediate levels:
		// measured 3.6 disk bytes per payload byte (WAL + L0 + last level)
		// against 7.1 with an 8 MB base level. L0 -> base compactions are
		// cheap because new keys sort at the end (keys.go). 4 L0 tables
		// before compacting halve the number of compactions.
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(max(8<<20, o.MaxBytes+o.MaxBytes/4)).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		// 1 MB block and index caches: reads are sequential (drain order
		// is key order), so caching buys little; without compression the
		// tables are read straight from their mmap.
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithCompression(options.None).
		// Two compactors is Badger's minimum when compaction is on.
		WithNumCompactors(2).
		// One goroutine for Stream framework users (we have none).
		WithNumGoroutines(1).
		// The queue serialises its own writes; conflict detection would
		// only cost memory. Metrics are exported through Stats instead.
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		// The queue syncs itself per its SyncPolicy (db.Sync once per
		// commit group); SyncWrites would sync every internal write.
		WithSyncWrites(false).
		WithCompactL0OnClose(false).
		WithLogger(badgerLogger{o.Logger})
	return bo
}

// valueThreshold keeps every record value inline in the LSM tree.
func valueThreshold(Options) int64 { return MaxRecordBytes + valueHeaderLen + 1 }

// badgerLogger adapts Badger's printf logger to slog. Badger's messages are
// not constant; they go in the "badger" attribute under constant messages.
// Badger's info chatter (compactions, flushes) is logged at debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, args []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, "badger log", "badger", fmt.Sprintf(f, args...))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a) }

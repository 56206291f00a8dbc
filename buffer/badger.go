package buffer

import (
	"cmp"
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
	memtable := int64(1 << 20)
	if o.InMemory {
		// In memory every value is inline, and one transaction may hold
		// at most 15 % of a memtable: 2 MB keeps MaxRecordBytes in.
		memtable = 2 << 20
	}
	memtable = cmp.Or(o.memTableSize, memtable)
	bo := badger.DefaultOptions(dir).
		WithInMemory(o.InMemory).
		// The tree holds chunk keys, value pointers and small gone sets:
		// ~50 bytes per chunk of up to 1024 records. Two 1 MB memtables
		// (Go-heap skiplist arenas) hold ~20k chunks each; a flush
		// builds a table of the same size.
		WithMemTableSize(memtable).
		WithNumMemtables(2).
		// Chunks of at least valueThreshold bytes go to the value log:
		// written once, sequentially, and never again by compactions
		// (inline, data is written three times: WAL, L0, base level;
		// measured 3.7 disk bytes per payload byte with every record
		// inline). Smaller chunks stay inline, see valueThreshold.
		WithValueThreshold(o.valueThreshold).
		// 8 MB value-log files: each new file costs a sync of the old one,
		// a bootstrap and fresh page faults, so larger files append faster
		// (BenchmarkAppendVsRaw, 2 KB records at batch 64 / 1024, back to
		// back: 41k / 113k rec/s with 4 MB files, 63k / 145k with 8 MB,
		// 57k / 164k with 16 MB), but 16 MB files raised the fill's peak RssAnon from
		// 18-24 MB to 26-39 MB (5 runs each; 8 MB: 18-24 MB). The head file
		// cannot be collected: up to 8 MB stay on disk after a complete
		// drain. Badger maps the head file at 2x, far below 32-bit limits.
		// On a small file system (< 128 MiB) files are smaller, 1/16 of
		// it and at least 1 MiB: disk space comes back one whole file at
		// a time (gc.go), and the head file always stays.
		WithValueLogFileSize(cmp.Or(o.vlogFileSize, maxVlogFileSize)).
		// The tree is small; 2 MB tables keep the number of files low
		// (and 1 MB tables made Badger v4.9.6 lose data more often on
		// 32-bit, docs/buffer.md). The base level holds the whole tree so
		// it is never compacted through intermediate levels.
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(max(8<<20, o.MaxBytes/4)).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		// No block or index cache: reads are sequential (drain order is
		// key order), values are read from the value log's mmap, and with
		// compression and encryption off Badger reads blocks straight from
		// the tables' mmap. Each cache was a ristretto instance with its
		// own goroutines and 2.5 s cleanup tickers (~1 wake-up/s on an
		// idle store); drain throughput without them: docs/perf/buffer.md.
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithCompression(options.None).
		// No Badger compactors: each runs a fixed 50 ms ticker (40
		// wake-ups/s for two, idle or not). The queue compacts level 0
		// itself when it fills (compact.go).
		WithNumCompactors(0).
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

// maxVlogFileSize is the value-log file size (badgerOptions).
const maxVlogFileSize = 8 << 20

// vlogFileSize returns the value-log file size for a file system of total
// bytes: 1/16 of it within [1 MiB, maxVlogFileSize], in whole MiB.
func vlogFileSize(total uint64) int64 {
	mb := min(max(total/16>>20, 1), maxVlogFileSize>>20)
	return int64(mb) << 20 //nolint:gosec // at most 8
}

// valueThreshold: chunks of at least 4 KiB go to the value log; smaller
// values (small chunks, gone sets, meta keys) stay inline in the tree.
//
// A sync costs at least one page program per file it touches: a chunk in
// the value log makes a commit sync two files (the memtable WAL and the
// value log), an inline one only the WAL, at the price of being written
// again by the L0 flush and the base-level compaction. For a small commit
// (a vehicle's group window holds a few records) the second synced page
// costs more than those two rewrites: BenchmarkVehicleRate measured 7.4
// disk bytes per payload byte at 200 records/s with 4 KiB, 11.0 with every
// chunk in the value log. Bulk commits go to the value log either way.
const valueThreshold = 4 << 10

// smallValueThreshold replaces valueThreshold (and alwaysValueThreshold)
// on a file system smaller than smallDisk: there, free space matters more
// than the second synced file. Inline chunks live in the LSM tree, whose
// compactions write new tables (through mmap: SIGBUS when the space runs
// out) before deleting the old ones; with chunks of 1 KiB or more in the
// value log the tree holds little more than keys and pointers, and its
// compactions stay small (TestSpaceGuardTmpfs: a 16 MB tmpfs died in a
// compaction with 4 KiB).
const smallValueThreshold = 1 << 10

// smallDisk: below this file system size the queue uses
// smallValueThreshold.
const smallDisk = 128 << 20

// alwaysValueThreshold replaces valueThreshold under SyncAlways, where every
// commit is synced and the number of files per sync dominates: a typical
// batch of 64 small records (13 KB) then costs one sync, not two
// (BenchmarkAppendVsRaw). Larger chunks still go to the value log, which
// keeps max-rate fills out of the tree (BenchmarkFillDrain/always: 23 MB
// peak RssAnon).
const alwaysValueThreshold = 16 << 10

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

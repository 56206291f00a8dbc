package buffer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Fault classes (docs/buffer.md "Faults"):
//
//   - corruption: a checksum or structure the store cannot read, and any
//     panic raised while reading it (recovered here, at the package
//     boundary). The store is moved aside, a fresh one takes its place and
//     Stats().Degraded says why.
//   - storage: the environment refuses (permission, read-only file system,
//     no space, I/O error, a path component that is not a directory).
//     Nothing is moved: the call fails promptly with an error wrapping
//     ErrStorage and the caller retries with backoff.

// storageErrnos are the errors that mean "the environment", not "the data".
var storageErrnos = []syscall.Errno{
	syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ENOSPC,
	syscall.EDQUOT, syscall.EIO, syscall.ENOTDIR, syscall.EISDIR,
	syscall.ENXIO, syscall.ENODEV,
}

// storageTexts match the same errors after a library formatted them with
// %v (Badger and ristretto do in places).
var storageTexts = []string{
	"permission denied", "operation not permitted", "read-only file system",
	"no space left on device", "disk quota exceeded", "input/output error",
	"not a directory",
}

// isStorage reports whether err was caused by the environment.
func isStorage(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrStorage) {
		return true
	}
	for _, e := range storageErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	s := strings.ToLower(err.Error())
	for _, t := range storageTexts {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// isNoSpace reports whether err is ENOSPC/EDQUOT.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "no space left on device") || strings.Contains(s, "disk quota exceeded")
}

// classify maps store errors the caller can act on to sentinels: storage
// faults wrap ErrStorage (and ENOSPC also ErrFull: the record was not
// stored because the disk is full).
func classify(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrStorage):
		return err
	case isNoSpace(err):
		return fmt.Errorf("%w: %w: %w", ErrStorage, ErrFull, err)
	case isStorage(err):
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return err
}

// panicError turns a recovered panic into an error wrapping ErrCorrupt.
func panicError(op string, r any) error {
	return fmt.Errorf("%w: %s panicked: %v", ErrCorrupt, op, r)
}

// checkDir makes sure dir's parent exists and dir, when present, is a
// directory this process may use. Errors wrap ErrStorage.
func checkDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o700); err != nil {
		return fmt.Errorf("open queue: %w: %w", ErrStorage, err)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("open queue: %w: %w", ErrStorage, err)
	case !fi.IsDir():
		return fmt.Errorf("open queue: %w: %s is not a directory", ErrStorage, dir)
	}
	if err := accessRW(dir); err != nil {
		return fmt.Errorf("open queue: %w: %s: %w", ErrStorage, dir, err)
	}
	return nil
}

// checkTables opens every table the MANIFEST lists, read-only, and verifies
// the checksums of all its blocks, before Badger sees them. Badger opens
// tables in goroutines of its own, where a damaged table panics (slice
// bounds in table.initIndex) beyond anyone's recover; here the panic or
// checksum error is ours to turn into ErrCorrupt. Permission and I/O
// errors come back as storage errors. A store without a MANIFEST is left
// to Badger (a new store, or one Badger refuses: corruption).
//
// It also returns why the store's own seq counter may be behind seqs that
// were handed out (suspect, "" when there is no sign of that): a memtable
// WAL with data past the point where its entries stop being valid (a
// damaged page, or a power cut that tore unsynced writes: Badger drops
// everything after it), or tables the MANIFEST does not list (Badger
// deletes them). Open then continues the seq above the seq file's
// reservation instead of the store's counter.
func checkTables(dir string) (suspect string, orphanSeq uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError("table check", r)
			suspect, orphanSeq = "", 0
		}
	}()
	suspect, err = checkWALs(dir)
	if err != nil {
		return "", 0, err
	}
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return suspect, 0, nil
	}
	if err != nil {
		return "", 0, classify(fmt.Errorf("check store: %w", err))
	}
	mf, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir))
	_ = f.Close()
	if err != nil {
		return "", 0, fmt.Errorf("%w: manifest: %w", ErrCorrupt, err)
	}
	for id, tm := range mf.Tables {
		if err := checkTable(table.NewFilename(id, dir), tm); err != nil {
			return "", 0, err
		}
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, p := range ssts {
		if id, ok := table.ParseFileID(p); ok {
			if _, listed := mf.Tables[id]; !listed {
				// A kill during a flush or compaction leaves such a table
				// routinely (its data is still in the WAL or in the listed
				// tables); only the seqs it holds can tell a damaged
				// MANIFEST from that. Open compares them with the store's.
				orphanSeq = max(orphanSeq, tableMaxSeq(p))
			}
		}
	}
	return suspect, orphanSeq, nil
}

// tableMaxSeq returns the highest seq that the table at path holds (the
// last seq of its newest chunk, or its z/seq value), or 0 when it holds
// none or cannot be read: a table cut short by a kill while Badger wrote
// it is not a sign of lost seqs (its contents are still in the WAL).
func tableMaxSeq(path string) (seq uint64) {
	defer func() {
		if recover() != nil {
			seq = 0
		}
	}()
	m, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer func() { _ = m.Close(-1) }()
	t, err := table.OpenTable(m, table.Options{ChkMode: options.OnTableRead, BlockSize: 4 << 10})
	if err != nil {
		return 0
	}
	it := t.NewIterator(0)
	defer func() { _ = it.Close() }()
	for it.Rewind(); it.Valid(); it.Next() {
		k := y.ParseKey(it.Key())
		if string(k) == keySeq {
			if v, err := u64(it.ValueCopy().Value); err == nil {
				seq = max(seq, v)
			}
			continue
		}
		if _, r, err := decodeChunkKey(k); err == nil && r.n > 0 {
			seq = max(seq, r.end()-1)
		}
	}
	return seq
}

// walHeader is the size of a Badger log file's header (key id and IV).
const walHeader = 20

// checkWALs reads Badger's memtable WALs (*.mem) the way Badger replays
// them (header: meta, user meta, uvarint key and value lengths and expiry;
// key; value; CRC-32C) and reports a WAL with non-zero bytes after the
// last valid entry.
func checkWALs(dir string) (string, error) {
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, p := range mems {
		b, err := os.ReadFile(p) //nolint:gosec // our store's file
		if err != nil {
			if isStorage(err) {
				return "", classify(fmt.Errorf("check wal: %w", err))
			}
			continue
		}
		end := walValidEnd(b)
		for _, x := range b[end:] {
			if x != 0 {
				return fmt.Sprintf("%s has data past its valid end (offset %d)", filepath.Base(p), end), nil
			}
		}
	}
	return "", nil
}

// walValidEnd returns the offset after the last valid WAL entry of b, at
// most len(b): a file shorter than its header (Badger killed while it
// created it) holds no entry, and nothing past its valid end.
func walValidEnd(b []byte) int {
	if len(b) <= walHeader {
		return len(b)
	}
	off := walHeader
	for off+2 < len(b) {
		i := off + 2
		var n [3]uint64
		for j := range n {
			v, k := binary.Uvarint(b[i:])
			if k <= 0 {
				return off
			}
			n[j], i = v, i+k
		}
		klen, vlen := n[0], n[1]
		if klen == 0 || klen > uint64(len(b)) || vlen > uint64(len(b)) {
			return off
		}
		body := i + int(klen) + int(vlen) //nolint:gosec // bounded by len(b) above
		if body+4 > len(b) || crc32.Checksum(b[off:body], crcTable) != binary.BigEndian.Uint32(b[body:]) {
			return off
		}
		off = body + 4
	}
	return off
}

func checkTable(name string, tm badger.TableManifest) error {
	m, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if err != nil {
		if isStorage(err) {
			return classify(fmt.Errorf("check table %s: %w", filepath.Base(name), err))
		}
		return fmt.Errorf("%w: table %s: %w", ErrCorrupt, filepath.Base(name), err)
	}
	defer func() { _ = m.Close(-1) }()
	if tm.KeyID != 0 {
		return fmt.Errorf("%w: table %s is encrypted", ErrCorrupt, filepath.Base(name))
	}
	_, err = table.OpenTable(m, table.Options{
		ChkMode:     options.OnTableRead,
		Compression: tm.Compression,
		BlockSize:   4 << 10,
	})
	if err != nil {
		return fmt.Errorf("%w: table %s: %w", ErrCorrupt, filepath.Base(name), err)
	}
	return nil
}

// errChecked marks corruption found by checkTables: a checksum or
// structure that will not read differently on a second try.
var errChecked = errors.New("store check failed")

// openRetryDelays are the pauses between Open's attempts before a store
// that does not open is treated as corrupt: Badger can fail once after a
// kill while it was creating a file (dgraph-io/badger#2207) and open fine
// on the next try.
var openRetryDelays = []time.Duration{50 * time.Millisecond, 250 * time.Millisecond}

// catchLocked is deferred (with q.mu held, after the Unlock defer) by every
// method that reads the store: a panic becomes an error wrapping
// ErrCorrupt, and the store is replaced (repairLocked).
func (q *Queue) catchLocked(op string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	perr := panicError(op, r)
	q.log.Error("queue store panicked", "op", op, "err", perr, "stack", string(debug.Stack()))
	q.repairLocked(q.db, perr)
	if err != nil {
		*err = fmt.Errorf("%s: %w", op, perr)
	}
}

// repairLocked replaces a store that panicked or turned out corrupt while
// open: the old store is closed (best effort), moved aside like a store
// that does not open, and a fresh one is opened in its place. Seqs
// continue above every seq handed out. db is the store the failure was
// seen on: when it is no longer the current one, another caller repaired
// it already.
func (q *Queue) repairLocked(db *badger.DB, cause error) {
	if db != q.db || q.closed || q.idle.closed {
		return
	}
	q.swapMu.Lock()
	defer q.swapMu.Unlock()
	q.closeQuietly(db)
	q.db = nil
	if q.opts.InMemory {
		q.broken = cause
		q.setDegradedLocked("store broken: " + cause.Error())
		return
	}
	reason, err := q.quarantine(cause)
	if err != nil {
		q.broken = err
		q.degraded = "store broken: " + err.Error()
		q.log.Error("queue store cannot be replaced", "err", err)
		return
	}
	q.resetLocked()
	if _, _, err = q.openStore(); err == nil {
		err = q.initSeq(q.next-1, q.epoch)
	}
	if err != nil {
		if q.db != nil {
			q.closeQuietly(q.db)
			q.db = nil
		}
		q.broken = err
		q.degraded = "store broken: " + err.Error()
		q.log.Error("queue fresh store did not open", "err", err)
		return
	}
	q.degraded = reason
}

// resetLocked forgets the in-memory state of a store that was moved aside.
func (q *Queue) resetLocked() {
	for c := range q.cls {
		cs := &q.cls[c]
		ev, sh, ex := cs.evicted, cs.shed, cs.expired
		*cs = classState{evicted: ev, shed: sh, expired: ex}
	}
	clear(q.leased)
	q.deleted = 0
}

// usableLocked returns an error when the store could not be replaced after
// a failure (the queue then refuses everything).
func (q *Queue) usableLocked() error {
	if q.broken != nil {
		return fmt.Errorf("%w: %w", ErrStorage, q.broken)
	}
	return nil
}

// closeQuietly closes a store that failed, recovering a panic and giving
// up after a few seconds (the goroutine is then left behind: a broken
// store must not block the queue). It reports whether Close finished: an
// abandoned store still holds its directory lock.
func (q *Queue) closeQuietly(db *badger.DB) (finished bool) {
	if db == nil {
		return true
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				q.log.Warn("queue store panicked while closing", "panic", fmt.Sprint(r))
			}
		}()
		q.hook("close")
		if err := db.Close(); err != nil {
			q.log.Warn("queue store close failed", "err", err)
		}
	}()
	select {
	case <-done:
		return true
	case <-time.After(cmp.Or(q.opts.idleCloseWait, idleCloseWait)):
		q.log.Warn("queue store close did not finish, abandoned")
		return false
	}
}

// hook calls the test fault hook.
func (q *Queue) hook(op string) {
	if q.opts.faultHook != nil {
		q.opts.faultHook(op)
	}
}

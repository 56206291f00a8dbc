// Package ledger is the command engine's durable record of command ids: the
// at-most-once guarantee of remote commands rests on it.
//
// The ledger is an append-only file of checksummed JSON lines
// (StateDir/commands/ledger.log). Every state change of a command appends
// one line; the in-memory index holds the latest line per id. Begin (before
// the actuation frame) and Finish (before the result is published) are
// written and fsynced before they return. Receive and Record are buffered
// and reach the file as one append with one fsync at the next Sync, so a
// burst of requests costs one fsync per batch, not per request. Responded
// is written but not fsynced (losing it to a power cut only sends the
// response once more).
//
// Crash semantics: a torn tail (the last append, cut by a power loss) is
// dropped by Open, which truncates the file after the last good line. A
// damaged line elsewhere (media error) is skipped and counted (Corrupt),
// the good lines after it are kept, the damaged file is copied aside to
// ledger.log.damaged-<unix ms> and DamagedAt reports when (the engine then
// refuses commands that may be among the lost lines). Any failed write or
// fsync stops all further writes (ErrFailed) until the file is opened
// again: after a failed fsync nothing written since the last good one is
// certain. Compaction writes the live entries to a new file, fsyncs it and
// renames it over the old one, then fsyncs the directory; from the rename
// on the new file is the ledger, so a crash leaves either file, never a
// mix, and no line is ever appended to the unlinked old file.
package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// State is where a command is in its lifecycle.
type State string

// Command states, in order. Introduced in v1 of the ledger format.
const (
	// Received: the request passed the checks and was admitted (queued or
	// about to run) but not actuated. Written (batched, then fsynced) before
	// the request is acknowledged to the broker. Introduced in v1.1.
	Received State = "received"
	// Executing: the command was admitted and its actuation may have begun
	// (the entry is written before the first frame).
	Executing State = "executing"
	// Done: the final result is recorded but not yet handed to the
	// responder.
	Done State = "done"
	// Responded: the final response was acknowledged by the broker
	// (PUBACK of the message carrying it).
	Responded State = "responded"
)

// Entry is the latest recorded state of one command id.
type Entry struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Topic is where the command's responses go.
	Topic string `json:"topic,omitempty"`
	State State  `json:"state"`
	// Expires is when the entry may be pruned (end of the command's
	// validity window plus retention), Unix ms.
	Expires int64 `json:"expires"`
	// Updated is when the line was written, Unix ms.
	Updated int64 `json:"updated"`
	// Result is the engine's opaque final response, set from Done on.
	Result json.RawMessage `json:"result,omitempty"`
}

// ErrExists is returned by Begin and Record for an id already in the ledger.
var ErrExists = errors.New("command id already recorded")

// ErrUnknown is returned when an id is not in the ledger.
var ErrUnknown = errors.New("command id not recorded")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("ledger closed")

// fileName is the ledger file inside the directory given to Open.
const fileName = "ledger.log"

// Ledger is the durable id store. It is safe for concurrent use.
type Ledger struct {
	dir     string
	corrupt int       // damaged lines skipped at Open
	damaged time.Time // latest quarantine of a damaged ledger; zero if none
	ops     ops

	mu      sync.Mutex
	f       *os.File         // guarded by mu; nil after Close
	off     int64            // guarded by mu; end of the last complete line
	failed  error            // guarded by mu; a write or sync failed: no more writes
	pending []byte           // guarded by mu; buffered lines not yet written
	dirty   bool             // guarded by mu; lines written since the last sync
	entries map[string]Entry // guarded by mu
	lines   int              // guarded by mu; lines in the file
}

// ErrFailed is returned by every write after a write or fsync of the
// ledger failed: what is on disk is then uncertain, so nothing that relies
// on it (an actuation) may proceed until the agent restarts and reads the
// file again.
var ErrFailed = errors.New("ledger failed")

// Open opens (creating if needed) the ledger in dir.
//
// A file with damaged lines (bad CRC, not a torn tail) is copied aside to
// ledger.log.damaged-<unix ms> and rewritten with its good entries;
// DamagedAt then reports when, so the engine can refuse commands that may
// have been recorded in the lost lines. A file that cannot be read for
// another reason (permissions, I/O) is not treated as damage: Open fails
// and the file is left alone.
func Open(dir string) (*Ledger, error) { return open(dir, osOps, time.Now) }

// OpenClock is Open with the clock that dates a quarantine (the engine's
// wall clock).
func OpenClock(dir string, now func() time.Time) (*Ledger, error) { return open(dir, osOps, now) }

func open(dir string, o ops, now func() time.Time) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	path := filepath.Join(dir, fileName)
	_ = os.Remove(path + ".tmp") // an interrupted compaction; the old file is intact
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	entries, good, lines, bad, err := load(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read ledger %s: %w", path, err)
	}
	if err := f.Truncate(good); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("truncate ledger %s: %w", path, err)
	}
	if _, err := f.Seek(good, 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seek ledger %s: %w", path, err)
	}
	// The directory entry of a new file must be durable too.
	if err := o.syncDir(dir); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	l := &Ledger{dir: dir, ops: o, f: f, off: good, entries: entries, lines: lines + bad, corrupt: bad}
	if bad > 0 {
		at := now()
		if err := quarantine(path, at); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("quarantine damaged ledger %s: %w", path, err)
		}
		l.mu.Lock()
		err := l.compactLocked()
		l.mu.Unlock()
		if err != nil {
			_ = l.f.Close()
			return nil, fmt.Errorf("rewrite damaged ledger %s: %w", path, err)
		}
	}
	l.damaged = lastQuarantine(dir)
	return l, nil
}

// DamagedAt returns when a damaged ledger was last quarantined in this
// directory (zero if never): commands received before then may be missing
// from the ledger.
func (l *Ledger) DamagedAt() time.Time { return l.damaged }

// Corrupt returns the number of damaged lines skipped by Open (not
// counting a torn last line, which is expected after a crash).
func (l *Ledger) Corrupt() int { return l.corrupt }

// Get returns the entry for id.
func (l *Ledger) Get(id string) (Entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[id]
	return e, ok
}

// Len returns the number of ids in the ledger.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Receive records that the command id was admitted but not yet actuated.
// It is not fsynced: call Sync before acknowledging the request. It fails
// with ErrExists when id is known.
func (l *Ledger) Receive(id, name, topic string, expires, now time.Time) error {
	return l.insert(Entry{ID: id, Name: name, Topic: topic, State: Received, Expires: expires.UnixMilli(), Updated: now.UnixMilli()}, buffered)
}

// Begin records that the command id is about to be actuated. It is durable
// (fsynced) when it returns nil. It fails with ErrExists when id is known
// in any state but Received.
func (l *Ledger) Begin(id, name, topic string, expires, now time.Time) error {
	return l.insert(Entry{ID: id, Name: name, Topic: topic, State: Executing, Expires: expires.UnixMilli(), Updated: now.UnixMilli()}, synced)
}

// Record records the final result of a command that was never actuated
// (a refusal). It is not fsynced: call Sync before the result is handed
// on (refusals are batched). It fails with ErrExists when id is known in
// any state but Received.
func (l *Ledger) Record(id, name, topic string, expires, now time.Time, result []byte) error {
	return l.insert(Entry{ID: id, Name: name, Topic: topic, State: Done, Expires: expires.UnixMilli(), Updated: now.UnixMilli(), Result: result}, buffered)
}

func (l *Ledger) insert(e Entry, m mode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.entries[e.ID]; ok {
		if old.State != Received {
			return fmt.Errorf("ledger insert %s: %w", e.ID, ErrExists)
		}
		e.Expires = max(e.Expires, old.Expires) // an entry's retention never shrinks
	}
	return l.writeLocked(e, m)
}

// Sync makes every line recorded so far durable (one write of the
// buffered lines, one fsync).
func (l *Ledger) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	return l.flushLocked(true)
}

// Finish durably records the final result of an executing command.
func (l *Ledger) Finish(id string, now time.Time, result []byte) error {
	return l.update(id, now, Done, result, synced)
}

// Responded records that id's final response was acknowledged by the
// broker. It is not fsynced (losing it to a power cut only makes the
// response go out once more).
func (l *Ledger) Responded(id string, now time.Time) error {
	return l.update(id, now, Responded, nil, written)
}

func (l *Ledger) update(id string, now time.Time, st State, result []byte, m mode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[id]
	if !ok {
		return fmt.Errorf("ledger update %s: %w", id, ErrUnknown)
	}
	e.State, e.Updated = st, now.UnixMilli()
	if result != nil {
		e.Result = result
	}
	return l.writeLocked(e, m)
}

// Unfinished returns the entries not yet Responded, oldest first: boot
// reconciliation answers them.
func (l *Ledger) Unfinished() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, e := range l.entries {
		if e.State != Responded {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Updated < out[j].Updated })
	return out
}

// Due reports what the ledger will next need from its owner's maintenance,
// so that it can sleep until then instead of polling: pruneAt is the
// earliest time at which Prune drops an entry (the earliest Expires of the
// responded entries, plus one millisecond: Prune drops those that expired
// before now), zero when no entry is responded; doneSince is the earliest
// Updated of the entries whose result is recorded but not yet responded
// (State Done: their answer is still to be handed over), zero when there
// is none. It costs one pass over the entries.
func (l *Ledger) Due() (pruneAt, doneSince time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var prune, done int64
	var havePrune, haveDone bool
	for _, e := range l.entries {
		switch e.State {
		case Responded:
			if !havePrune || e.Expires < prune {
				prune, havePrune = e.Expires, true
			}
		case Done:
			if !haveDone || e.Updated < done {
				done, haveDone = e.Updated, true
			}
		}
	}
	if havePrune {
		pruneAt = time.UnixMilli(prune + 1)
	}
	if haveDone {
		doneSince = time.UnixMilli(done)
	}
	return pruneAt, doneSince
}

// write modes: how far a line goes before writeLocked returns.
type mode int

const (
	buffered mode = iota // kept in memory until the next write or Sync (batched)
	written              // written to the file (survives a process crash)
	synced               // written and fsynced (survives a power cut)
)

// writeLocked records e and appends its line with mode m. Buffered lines
// go to the file in one write together with the next line that is
// written, so a batch reaches the file as one contiguous append.
func (l *Ledger) writeLocked(e Entry, m mode) error {
	if l.f == nil {
		return ErrClosed
	}
	if l.failed != nil {
		return l.failed
	}
	line, err := encodeLine(e)
	if err != nil {
		return fmt.Errorf("ledger write %s: %w", e.ID, err)
	}
	l.pending = append(l.pending, line...)
	l.entries[e.ID] = e
	l.lines++
	if m == buffered {
		return nil
	}
	return l.flushLocked(m == synced)
}

// flushLocked writes the buffered lines and, with sync, fsyncs the file.
// Any failure stops all further writes (ErrFailed): a failed fsync may have
// dropped dirty pages, and a failed write leaves lines recorded in memory
// that are not on disk.
func (l *Ledger) flushLocked(sync bool) error {
	if l.failed != nil {
		return l.failed
	}
	if len(l.pending) > 0 {
		if _, err := l.ops.write(l.f, l.pending); err != nil {
			// A partial line must not stay in the middle of the file.
			if terr := l.truncateLocked(); terr != nil {
				err = fmt.Errorf("%w (and truncate: %v)", err, terr)
			}
			l.failed = fmt.Errorf("%w: write: %w", ErrFailed, err)
			return l.failed
		}
		l.off += int64(len(l.pending))
		l.pending = l.pending[:0]
		l.dirty = true
	}
	if sync && l.dirty {
		if err := l.ops.sync(l.f); err != nil {
			l.failed = fmt.Errorf("%w: sync: %w", ErrFailed, err)
			return l.failed
		}
		l.dirty = false
	}
	return nil
}

// truncateLocked cuts the file back to the end of the last complete line.
func (l *Ledger) truncateLocked() error {
	if err := l.f.Truncate(l.off); err != nil {
		return err
	}
	_, err := l.f.Seek(l.off, 0)
	return err
}

// Prune drops responded entries whose Expires is before now and compacts
// the file when at least half of its lines are dead. It returns the number
// of entries dropped.
func (l *Ledger) Prune(now time.Time) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return 0, l.failed
	}
	n := 0
	for id, e := range l.entries {
		if e.State == Responded && e.Expires < now.UnixMilli() {
			delete(l.entries, id)
			n++
		}
	}
	if l.lines > 64 && l.lines >= 2*len(l.entries) {
		if err := l.compactLocked(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Close syncs and closes the file.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.flushLocked(true)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("close ledger: %w", err)
	}
	return nil
}

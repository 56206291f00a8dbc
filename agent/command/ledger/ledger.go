// Package ledger is the command engine's durable record of command ids: the
// at-most-once guarantee of remote commands rests on it.
//
// The ledger is an append-only file of checksummed JSON lines
// (StateDir/commands/ledger.log). Every state change of a command appends
// one line; the in-memory index holds the latest line per id. Writes that
// must survive a crash (Begin before the actuation frame, Finish before the
// response is handed on) are fsynced before they return; Responded is not
// (losing it only makes boot reconciliation hand the same recorded response
// on once more).
//
// Crash semantics: a torn line can only be the last one written (every line
// is fsynced before the next); Open drops a bad tail by truncating the file
// after the last good line. A damaged line elsewhere (media error) is
// skipped and counted (Corrupt) and the good lines after it are kept. Compact rewrites the live entries into a new
// file, fsyncs it and renames it over the old one (then fsyncs the
// directory), so a crash during compaction leaves either the old or the new
// file, never a mix.
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

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// State is where a command is in its lifecycle.
type State string

// Command states, in order. Introduced in v1 of the ledger format.
const (
	// Executing: the command was admitted and its actuation may have begun
	// (the entry is written before the first frame).
	Executing State = "executing"
	// Done: the final result is recorded but not yet handed to the
	// responder.
	Done State = "done"
	// Responded: the final result was handed to the responder.
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
	corrupt int // damaged lines skipped at Open

	mu      sync.Mutex
	f       *os.File         // guarded by mu; nil after Close
	entries map[string]Entry // guarded by mu
	lines   int              // guarded by mu; lines in the file
}

// Open opens (creating if needed) the ledger in dir.
func Open(dir string) (*Ledger, error) {
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
	if err := fsutil.SyncDir(dir); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	return &Ledger{dir: dir, f: f, entries: entries, lines: lines + bad, corrupt: bad}, nil
}

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

// Begin records that the command id is about to be actuated. It is durable
// (fsynced) when it returns nil. It fails with ErrExists when id is known.
func (l *Ledger) Begin(id, name, topic string, expires, now time.Time) error {
	return l.insert(Entry{ID: id, Name: name, Topic: topic, State: Executing, Expires: expires.UnixMilli(), Updated: now.UnixMilli()})
}

// Record durably records the final result of a command that was never
// actuated (a refusal). It fails with ErrExists when id is known.
func (l *Ledger) Record(id, name, topic string, expires, now time.Time, result []byte) error {
	return l.insert(Entry{ID: id, Name: name, Topic: topic, State: Done, Expires: expires.UnixMilli(), Updated: now.UnixMilli(), Result: result})
}

func (l *Ledger) insert(e Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.entries[e.ID]; ok {
		return fmt.Errorf("ledger insert %s: %w", e.ID, ErrExists)
	}
	return l.writeLocked(e, true)
}

// Finish durably records the final result of an executing command.
func (l *Ledger) Finish(id string, now time.Time, result []byte) error {
	return l.update(id, now, Done, result, true)
}

// Responded records that id's result was handed to the responder. It is
// not fsynced.
func (l *Ledger) Responded(id string, now time.Time) error {
	return l.update(id, now, Responded, nil, false)
}

func (l *Ledger) update(id string, now time.Time, st State, result []byte, sync bool) error {
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
	return l.writeLocked(e, sync)
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

func (l *Ledger) writeLocked(e Entry, sync bool) error {
	if l.f == nil {
		return ErrClosed
	}
	line, err := encodeLine(e)
	if err != nil {
		return fmt.Errorf("ledger write %s: %w", e.ID, err)
	}
	if _, err := l.f.Write(line); err != nil {
		return fmt.Errorf("ledger write %s: %w", e.ID, err)
	}
	if sync {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("ledger sync %s: %w", e.ID, err)
		}
	}
	l.entries[e.ID] = e
	l.lines++
	return nil
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
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("close ledger: %w", err)
	}
	return nil
}

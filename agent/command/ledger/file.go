package ledger

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// Line format (v1): 8 lower-case hex digits of the CRC-32C of the JSON, one
// space, the JSON of an Entry, "\n". Example:
//
//	1c291ca3 {"id":"c-1","name":"door.lock","state":"executing","expires":1,"updated":1}
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// maxLine bounds one line; longer lines are corrupt.
const maxLine = 1 << 20

func encodeLine(e Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+10)
	out = fmt.Appendf(out, "%08x ", crc32.Checksum(b, crcTable))
	out = append(out, b...)
	return append(out, '\n'), nil
}

var errBadLine = errors.New("bad ledger line")

func decodeLine(line []byte) (Entry, error) {
	if len(line) < 10 || line[8] != ' ' {
		return Entry{}, errBadLine
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return Entry{}, errBadLine
	}
	body := line[9:]
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if crc32.Checksum(body, crcTable) != want {
		return Entry{}, errBadLine
	}
	var e Entry
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" {
		return Entry{}, errBadLine
	}
	switch e.State {
	case Received, Executing, Done, Responded:
	default:
		return Entry{}, errBadLine
	}
	return e, nil
}

// load reads every line. Bad lines are skipped and counted: a torn write
// can only be the last line (each line is fsynced before the next is
// written), anything else is media damage, and the good lines after it
// must not be lost. It returns the entries, the offset just past the last
// good line (a bad tail is truncated there), the number of good lines and
// the number of bad ones before that offset.
func load(f *os.File) (map[string]Entry, int64, int, int, error) {
	entries := map[string]Entry{}
	r := bufio.NewReaderSize(f, 64<<10)
	var off, good int64
	lines, bad, pending := 0, 0, 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return entries, good, lines, bad, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, 0, 0, err
		}
		off += int64(len(line))
		if errors.Is(err, io.EOF) { // no newline: a torn last line
			return entries, good, lines, bad, nil
		}
		e, derr := decodeLine(bytes.TrimSuffix(line, []byte{'\n'}))
		if derr != nil || len(line) > maxLine {
			pending++
			continue
		}
		entries[e.ID] = e
		good, lines, bad, pending = off, lines+1, bad+pending, 0
	}
}

// compactLocked rewrites the live entries to a new file and renames it over
// the ledger. Until the rename the old file stays the ledger; once the
// rename is done the new file is the ledger even if a later step (the
// directory fsync) fails, so l.f is switched to it in every case after the
// rename: later lines must never go to the unlinked old file.
func (l *Ledger) compactLocked() error {
	path := filepath.Join(l.dir, fileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	var buf []byte
	ids := make([]string, 0, len(l.entries))
	for id := range l.entries {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return l.entries[ids[i]].Updated < l.entries[ids[j]].Updated })
	for _, id := range ids {
		line, err := encodeLine(l.entries[id])
		if err != nil {
			return fmt.Errorf("compact ledger: %w", err)
		}
		buf = append(buf, line...)
	}
	if _, err := l.ops.write(f, buf); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	if err := l.ops.sync(f); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	if err := l.ops.rename(tmp, path); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	renamed = true
	old := l.f
	// The new file holds every entry, buffered ones included.
	l.f, l.off, l.lines, l.dirty, l.pending = f, int64(len(buf)), len(l.entries), false, l.pending[:0]
	_ = old.Close()
	if err := l.ops.syncDir(l.dir); err != nil {
		// The rename may not be durable: a power cut could bring back the
		// old file (a superset of the live entries, so nothing is lost),
		// but which file later lines land in is then uncertain.
		l.failed = fmt.Errorf("%w: compact: sync dir: %w", ErrFailed, err)
		return l.failed
	}
	return nil
}

// ops are the file system calls whose failures matter; tests inject
// faults through them.
type ops struct {
	write   func(f *os.File, b []byte) (int, error)
	sync    func(f *os.File) error
	rename  func(from, to string) error
	syncDir func(dir string) error
}

var osOps = ops{
	write:   func(f *os.File, b []byte) (int, error) { return f.Write(b) },
	sync:    func(f *os.File) error { return f.Sync() },
	rename:  os.Rename,
	syncDir: fsutil.SyncDir,
}

// quarantinePrefix names copies of damaged ledgers: ledger.log.damaged-<unix ms>.
const quarantinePrefix = fileName + ".damaged-"

// quarantine copies the damaged ledger aside (for forensics, and so the
// damage time survives restarts) before it is rewritten.
func quarantine(path string, at time.Time) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dst := filepath.Join(filepath.Dir(path), quarantinePrefix+strconv.FormatInt(at.UnixMilli(), 10))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(path))
}

// lastQuarantine returns the time of the newest quarantined copy in dir.
func lastQuarantine(dir string) time.Time {
	names, _ := filepath.Glob(filepath.Join(dir, quarantinePrefix+"*"))
	var last int64
	for _, n := range names {
		ms, err := strconv.ParseInt(strings.TrimPrefix(filepath.Base(n), quarantinePrefix), 10, 64)
		if err == nil && ms > last {
			last = ms
		}
	}
	if last == 0 {
		return time.Time{}
	}
	return time.UnixMilli(last)
}

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
	case Executing, Done, Responded:
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
// the ledger.
func (l *Ledger) compactLocked() error {
	path := filepath.Join(l.dir, fileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	w := bufio.NewWriter(f)
	for _, e := range l.entries {
		line, err := encodeLine(e)
		if err != nil {
			return fmt.Errorf("compact ledger: %w", err)
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("compact ledger: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	ok = true
	if err := fsutil.SyncDir(l.dir); err != nil {
		return fmt.Errorf("compact ledger: %w", err)
	}
	old := l.f
	l.f = f
	l.lines = len(l.entries)
	if err := old.Close(); err != nil {
		return fmt.Errorf("compact ledger: close old file: %w", err)
	}
	return nil
}

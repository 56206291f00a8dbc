package candump

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// Reader reads records from a candump -l log, skipping blank lines,
// comments ("#"), remote and error frames and malformed lines (counted by
// Skipped; the first reason is kept by FirstSkip).
type Reader struct {
	s       *bufio.Scanner
	line    int
	skipped int
	first   error
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), 64<<10)
	return &Reader{s: s}
}

// Next reads the next record into rec. It returns io.EOF at the end of
// the log and the underlying read error otherwise.
func (r *Reader) Next(rec *Record) error {
	for r.s.Scan() {
		r.line++
		b := r.s.Bytes()
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		if err := ParseLine(b, rec); err != nil {
			r.skipped++
			if r.first == nil {
				r.first = fmt.Errorf("line %d: %w", r.line, err)
			}
			continue
		}
		return nil
	}
	if err := r.s.Err(); err != nil {
		return fmt.Errorf("read candump line %d: %w", r.line+1, err)
	}
	return io.EOF
}

// Line returns the number of the line last read.
func (r *Reader) Line() int { return r.line }

// Skipped returns how many lines were skipped as malformed or
// unsupported.
func (r *Reader) Skipped() int { return r.skipped }

// FirstSkip returns why the first skipped line was skipped, or nil.
func (r *Reader) FirstSkip() error { return r.first }

// Writer writes frames as candump -l lines. It is safe for concurrent use.
type Writer struct {
	mu    sync.Mutex
	w     *bufio.Writer // guarded by mu
	buf   []byte        // guarded by mu
	iface string
}

// NewWriter returns a Writer that logs frames under the interface name
// iface.
func NewWriter(w io.Writer, iface string) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), iface: iface}
}

// Write logs one frame, timestamped with its Time.
func (w *Writer) Write(f *canbus.Frame) error {
	if f.Time.IsZero() {
		return errors.New("write candump line: frame has no time")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	r := Record{Time: f.Time, Interface: w.iface, Frame: *f}
	w.buf = AppendLine(w.buf[:0], &r)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write candump line: %w", err)
	}
	return nil
}

// Flush writes buffered lines to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

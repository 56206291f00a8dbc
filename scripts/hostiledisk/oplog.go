package main

// The write log (-log): every write and every completed flush, in the
// order the server carried them out, with the time on the host's
// CLOCK_MONOTONIC (the clock `hostiledisk stamp` stamps console lines
// with). Like dm-log-writes: `hostiledisk replay` rebuilds from it the
// disk of a power cut at any point.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const logMagic = "HDLOG1\n"

// Record kinds.
const (
	recWrite = 'W' // t, off, n, n bytes of data
	recZero  = 'Z' // t, off, n
	recFlush = 'F' // t: when the flush completed (after fsync, before the reply)
)

// monoNow is CLOCK_MONOTONIC in nanoseconds, comparable across processes.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux
	}
	return ts.Nano()
}

// opLog writes the log; a nil *opLog records nothing.
type opLog struct {
	f *os.File
	w *bufio.Writer
}

func createLog(path string) (*opLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	l := &opLog{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	_, err = l.w.WriteString(logMagic)
	return l, err
}

func (l *opLog) op(o op) error {
	if l == nil {
		return nil
	}
	kind := byte(recWrite)
	if o.data == nil {
		kind = recZero
	}
	var h [25]byte
	h[0] = kind
	binary.BigEndian.PutUint64(h[1:], uint64(monoNow()))
	binary.BigEndian.PutUint64(h[9:], uint64(o.off))
	binary.BigEndian.PutUint64(h[17:], uint64(o.n))
	if _, err := l.w.Write(h[:]); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	if _, err := l.w.Write(o.data); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	return nil
}

func (l *opLog) flush() error {
	if l == nil {
		return nil
	}
	var h [9]byte
	h[0] = recFlush
	binary.BigEndian.PutUint64(h[1:], uint64(monoNow()))
	if _, err := l.w.Write(h[:]); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	return nil
}

func (l *opLog) close() error {
	if l == nil {
		return nil
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// logRec is one record read back.
type logRec struct {
	kind byte
	t    int64
	op   op // writes and zeroes
}

// logReader reads a log record by record.
type logReader struct {
	br *bufio.Reader
	n  int
}

func newLogReader(r io.Reader) (*logReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(logMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != logMagic {
		return nil, errors.New("log: not a hostiledisk write log")
	}
	return &logReader{br: br}, nil
}

// next returns the next record, io.EOF after the last. Sizes are bounded
// by maxRequest per write (the server never logs more) and offsets by
// maxOffset.
func (lr *logReader) next() (logRec, error) {
	kind, err := lr.br.ReadByte()
	if errors.Is(err, io.EOF) {
		return logRec{}, io.EOF
	}
	if err != nil {
		return logRec{}, fmt.Errorf("log: %w", err)
	}
	n := lr.n
	lr.n++
	var t [8]byte
	if _, err := io.ReadFull(lr.br, t[:]); err != nil {
		return logRec{}, fmt.Errorf("log record %d: %w", n, noEOF(err))
	}
	rec := logRec{kind: kind, t: int64(binary.BigEndian.Uint64(t[:]))}
	switch kind {
	case recFlush:
	case recWrite, recZero:
		var h [16]byte
		if _, err := io.ReadFull(lr.br, h[:]); err != nil {
			return logRec{}, fmt.Errorf("log record %d: %w", n, noEOF(err))
		}
		off, size := binary.BigEndian.Uint64(h[:]), binary.BigEndian.Uint64(h[8:])
		if off > maxOffset || size > maxOffset || off%sectorSize != 0 || size%sectorSize != 0 || kind == recWrite && size > maxRequest {
			return logRec{}, fmt.Errorf("log record %d: bad range %d+%d", n, off, size)
		}
		rec.op = op{off: int64(off), n: int64(size)}
		if kind == recWrite {
			rec.op.data = make([]byte, size)
			if _, err := io.ReadFull(lr.br, rec.op.data); err != nil {
				return logRec{}, fmt.Errorf("log record %d: %w", n, noEOF(err))
			}
		}
	default:
		return logRec{}, fmt.Errorf("log record %d: unknown kind %q", n, kind)
	}
	return rec, nil
}

// noEOF turns a mid-record EOF into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLog parses a whole log.
func readLog(r io.Reader) ([]logRec, error) {
	lr, err := newLogReader(r)
	if err != nil {
		return nil, err
	}
	var recs []logRec
	for {
		rec, err := lr.next()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
}

// maxOffset bounds offsets and lengths in a log (1 TiB).
const maxOffset = 1 << 40

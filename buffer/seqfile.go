package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// The seq file lives next to the store directory (Dir+".seq"), so that
// restoring an older copy of the directory does not restore it. It holds:
//
//	magic "TCUQSEQ1" (8) | epoch (8) | high-water seq (8) | CRC-32C of the first 24 bytes (4)
//
// high-water is a reservation: no seq >= high-water is handed out before a
// larger high-water is written (and fsynced). epoch equals the store's
// z/epoch key when the directory is the one this file was written with.
// Introduced in schema 1.
//
// The top bit of the epoch field (pendingBit) marks a file written by Open
// before it updated the store's epoch: if the process dies between the two
// writes, the next Open sees a pending file one epoch ahead of (or equal
// to) the store and knows that nothing was appended in between, so the seq
// continues without a jump. Introduced with schema 1; files without the bit
// read as before.
const (
	seqMagic   = "TCUQSEQ1"
	seqFileLen = 28
	// seqReserve is how far ahead the high-water mark is reserved: one
	// fsync'd file write per 1M appends.
	seqReserve = 1 << 20
)

// pendingBit marks an epoch written before the store was updated.
const pendingBit = 1 << 63

// seqState is the content of the seq file.
type seqState struct {
	Epoch   uint64
	HW      uint64
	Pending bool // written by Open before the store's epoch was updated
}

func seqPath(dir string) string { return filepath.Clean(dir) + ".seq" }

func encodeSeqFile(s seqState) []byte {
	b := make([]byte, 0, seqFileLen)
	b = append(b, seqMagic...)
	e := s.Epoch &^ pendingBit
	if s.Pending {
		e |= pendingBit
	}
	b = binary.BigEndian.AppendUint64(b, e)
	b = binary.BigEndian.AppendUint64(b, s.HW)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

var errBadSeqFile = errors.New("bad seq file")

func decodeSeqFile(b []byte) (seqState, error) {
	if len(b) != seqFileLen || string(b[:8]) != seqMagic {
		return seqState{}, fmt.Errorf("%w: bad header", errBadSeqFile)
	}
	if crc32.Checksum(b[:24], crcTable) != binary.BigEndian.Uint32(b[24:]) {
		return seqState{}, fmt.Errorf("%w: checksum mismatch", errBadSeqFile)
	}
	e := binary.BigEndian.Uint64(b[8:16])
	return seqState{Epoch: e &^ pendingBit, HW: binary.BigEndian.Uint64(b[16:24]), Pending: e&pendingBit != 0}, nil
}

// readSeqFile reads the seq file; ok is false when it does not exist or
// cannot be decoded (both mean "no trustworthy high-water mark").
func readSeqFile(path string) (s seqState, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return seqState{}, false, nil
	}
	if err != nil {
		return seqState{}, false, fmt.Errorf("read seq file: %w", err)
	}
	s, err = decodeSeqFile(b)
	if err != nil {
		return seqState{}, false, nil //nolint:nilerr // a torn file is "no mark"; the clock floor covers it
	}
	return s, true, nil
}

// writeSeqFile atomically replaces the seq file: temp file, fsync, rename,
// fsync of the parent directory.
func writeSeqFile(path string, s seqState) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write seq file: %w", err)
	}
	_, err = f.Write(encodeSeqFile(s))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("write seq file: %w", err)
	}
	return nil
}

//go:build !linux

package buffer

import (
	"io/fs"
	"math"
)

// diskSpace is not implemented off Linux: it reports unlimited space.
func diskSpace(string) (free, total uint64, err error) { return math.MaxUint64, math.MaxUint64, nil }

// allocated returns the length of a file (no block count off Linux).
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// accessRW is not checked off Linux (Badger reports what it cannot do).
func accessRW(string) error { return nil }

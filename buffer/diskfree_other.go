//go:build !linux

package buffer

import (
	"io/fs"
	"math"
)

// freeSpace is not implemented off Linux: it reports unlimited space.
func freeSpace(string) (uint64, error) { return math.MaxUint64, nil }

// allocated returns the length of a file (no block count off Linux).
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

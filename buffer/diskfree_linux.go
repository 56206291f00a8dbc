package buffer

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// diskSpace returns the bytes available to unprivileged users and the
// size of the file system holding path.
func diskSpace(path string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize) //nolint:gosec // Bsize is positive.
	return st.Bavail * bs, st.Blocks * bs, nil
}

// allocated returns the bytes a file occupies on disk.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512 //nolint:unconvert // Blocks is int32 on some 32-bit targets
	}
	return fi.Size()
}

// accessRW checks that this process may list, read and write dir.
func accessRW(dir string) error { return unix.Access(dir, unix.R_OK|unix.W_OK|unix.X_OK) }

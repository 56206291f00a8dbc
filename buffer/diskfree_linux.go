package buffer

import "golang.org/x/sys/unix"

// freeSpace returns the bytes available to unprivileged users on the file
// system holding path.
func freeSpace(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil //nolint:gosec // Bsize is positive.
}

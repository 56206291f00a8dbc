//go:build unix

package buffer

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive, non-blocking flock on f; errLocked when
// another open file description holds it.
func flock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) //nolint:gosec // an fd fits int
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

//go:build !linux

package nmeasim

import (
	"errors"
	"fmt"
	"os"
)

// OpenPTY is only implemented on Linux.
func OpenPTY() (master *os.File, slave string, err error) {
	return nil, "", fmt.Errorf("open pty: %w", errors.ErrUnsupported)
}

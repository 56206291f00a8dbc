//go:build !unix

package buffer

import "os"

// flock is not implemented off Unix: Badger's directory lock is all
// there is.
func flock(*os.File) error { return nil }

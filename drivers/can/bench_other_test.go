//go:build !linux

package can

// asGenerator: the ingest benchmark (getrusage) is Linux-only.
func asGenerator() (int, bool) { return 0, false }

// Package fsutil holds the small file-system helpers that crash-safe file
// updates need (the command ledger, the buffer's sequence file, the
// provisioning identity files).
//
// It imports nothing of this module.
package fsutil

import "os"

// SyncDir fsyncs the directory dir, making the creations, renames and
// removals of its entries durable. The error is the *os.PathError of the
// step that failed (open, sync or close).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

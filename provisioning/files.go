package provisioning

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// Directory and file names under the state directory. Introduced in v1.
const (
	identityDir  = "identity"          // mode 0700
	identityFile = "identity.json"     // committed identity; its rename is the commit point
	stateFile    = "provisioning.json" // provisioning state machine
	caFile       = "est-ca.pem"        // EST trust anchors from /cacerts
)

// testHook, when set by tests, is called at named points of the flow (the
// kill test SIGKILLs itself there). It is nil in production.
var testHook func(point string)

func hook(point string) {
	if testHook != nil {
		testHook(point)
	}
}

// writeFileAtomic replaces name with data: temp file in the same
// directory, fsync, rename, directory fsync. A crash leaves either the old
// or the new content, never a mix.
func writeFileAtomic(name string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp for %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	hook("file_synced")
	if err = os.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return fsutil.SyncDir(dir)
}

// ensureDir creates dir with mode 0700 and tightens an existing one.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // G302 wants 0600, but a directory needs its x bit; 0700 is owner-only
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

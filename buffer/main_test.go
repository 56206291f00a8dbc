package buffer_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(killEnv) != "" {
		killWriter() // subprocess mode of TestKillDurability; never returns
	}
	if os.Getenv(openAsEnv) != "" {
		openAs() // subprocess mode of TestOpenStorageFaults; never returns
	}
	goleak.VerifyTestMain(m,
		// badger.Open leaves these two behind when it fails after creating
		// its caches (a damaged value log, WAL or key registry; seen in
		// TestCorruptStoreFuzz): Badger's leak, once per damaged store.
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}

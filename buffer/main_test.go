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
	goleak.VerifyTestMain(m)
}

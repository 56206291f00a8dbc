package provisioning_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(killEnvDir) != "" {
		os.Exit(runKillChild())
	}
	goleak.VerifyTestMain(m)
}

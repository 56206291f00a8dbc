package agenttest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// agentBin is the binary built once for this test binary; buildErr says
// why there is none.
var (
	agentBin string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agenttest-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	agentBin, buildErr = Build(ctx, dir)
	cancel()
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// binary returns the built agent or skips the test.
func binary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Skipf("system tests need the tcu-agent binary, which could not be built: %v", buildErr)
	}
	return agentBin
}

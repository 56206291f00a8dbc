package can

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(genEnv); spec != "" {
		os.Exit(runGenerator(spec))
	}
	goleak.VerifyTestMain(m)
}

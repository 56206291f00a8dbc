package can

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if code, ok := asGenerator(); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

package socketcan

import (
	"errors"
	"testing"

	"github.com/tcu-agent/tcu-agent/drivers"
)

func TestOpenMissingInterfaceNotReady(t *testing.T) {
	t.Parallel()
	_, err := Open("nosuchcan9", Options{})
	if !errors.Is(err, drivers.ErrNotReady) && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open(missing) error = %v, want ErrNotReady (or ErrUnsupported off Linux)", err)
	}
}

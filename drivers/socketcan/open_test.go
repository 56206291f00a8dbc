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

func TestOpenLoopbackIsNotCAN(t *testing.T) {
	t.Parallel()
	_, err := Open("lo", Options{})
	var fe *drivers.FatalError
	if !errors.As(err, &fe) && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open(lo) error = %v, want *drivers.FatalError", err)
	}
}

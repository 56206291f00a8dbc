package buffer_test

import (
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/buffer/buffertest"
)

func openOnDisk(t testing.TB, o buffer.Options) buffertest.Queue {
	t.Helper()
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return q
}

func openInMemory(t testing.TB, o buffer.Options) buffertest.Queue {
	t.Helper()
	o.InMemory = true
	return openOnDisk(t, o)
}

func TestConformanceOnDisk(t *testing.T) {
	t.Parallel()
	buffertest.Run(t, openOnDisk)
	buffertest.RunPersistent(t, openOnDisk)
}

func TestConformanceInMemory(t *testing.T) {
	t.Parallel()
	buffertest.Run(t, openInMemory)
}

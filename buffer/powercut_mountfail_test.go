//go:build powercut && linux

package buffer_test

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPcMountFailLine checks the MOUNTFAIL line scripts/powercut.sh
// greps for ("^MOUNTFAIL cut=NAME ", the errno= field in its rows).
func TestPcMountFailLine(t *testing.T) {
	for _, tc := range []struct {
		label, dev string
		err        error
		want       string
	}{
		{"cut-0767", "/dev/vdc", fmt.Errorf("mount /dev/vdc: %w", unix.EUCLEAN),
			"MOUNTFAIL cut=cut-0767 dev=/dev/vdc errno=EFSCORRUPTED mount /dev/vdc: structure needs cleaning"},
		{"cut-0001", "/dev/vda", fmt.Errorf("mount /dev/vda: %w", unix.EINVAL),
			"MOUNTFAIL cut=cut-0001 dev=/dev/vda errno=EINVAL mount /dev/vda: invalid argument"},
		{"", "/dev/vda", errors.New("odd"), "MOUNTFAIL cut=- dev=/dev/vda errno=unknown odd"},
	} {
		if got := pcMountFailLine(tc.label, tc.dev, tc.err); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
	// x/sys names errno 117 EFSCORRUPTED (the kernel's alias of EUCLEAN).
	if unix.EUCLEAN != 117 {
		t.Fatalf("EUCLEAN = %d", int(unix.EUCLEAN))
	}
}

// TestPcReopenFailLine checks the verdict line of a store that does not
// open: scripts/powercut.sh finds it with "^POWERCUT [A-Z]+ .*cut=NAME "
// (offline cuts) or "^POWERCUT " (live cuts).
func TestPcReopenFailLine(t *testing.T) {
	for _, tc := range []struct {
		label string
		err   error
		want  string
	}{
		{"cut-0079", fmt.Errorf("open queue: %w", fmt.Errorf("open 000001.vlog: %w\nunable to open", unix.EIO)),
			"POWERCUT FAIL cut=cut-0079 reopen: open queue: open 000001.vlog: input/output error unable to open"},
		{"", errors.New("odd"), "POWERCUT FAIL reopen: odd"},
	} {
		if got := pcReopenFailLine(tc.label, tc.err); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

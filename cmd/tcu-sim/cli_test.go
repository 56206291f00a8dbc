package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCLIVersionHelp: --version and version print the version on stdout,
// -h/--help the flags on stdout, all exit 0; stray arguments exit 2.
func TestCLIVersionHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"--version"}, 0, "tcu-sim " + version + "\n"},
		{[]string{"-version"}, 0, "tcu-sim " + version + "\n"},
		{[]string{"version"}, 0, "tcu-sim " + version + "\n"},
		{[]string{"--help"}, 0, "Usage of tcu-sim"},
		{[]string{"-h"}, 0, "Usage of tcu-sim"},
		{[]string{"version", "x"}, 2, ""},
		{[]string{"stray"}, 2, ""},
		{[]string{"--no-such-flag"}, 2, ""},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), tt.args, &out, &errb)
		if code != tt.wantCode || !strings.HasPrefix(out.String(), tt.wantOut) || (tt.wantOut == "" && out.Len() > 0) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q", tt.args, code, out.String(), errb.String(), tt.wantCode, tt.wantOut)
		}
	}
}

// TestParkFlags: the drive-park scenario's knobs parse and are range-checked.
func TestParkFlags(t *testing.T) {
	t.Parallel()
	var errb bytes.Buffer
	o, err := parseFlags([]string{"--scenario", "drive-park", "--sleep-after", "2m", "--drain", "0.5", "--no-wake"}, &errb)
	if err != nil || o.scenario != "drive-park" || o.sleepAfter.Minutes() != 2 || o.drain != 0.5 || !o.noWake {
		t.Errorf("parse: %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"--drain", "-1"}, {"--sleep-after", "-1s"}} {
		if _, err := parseFlags(bad, &errb); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

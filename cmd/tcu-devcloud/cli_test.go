package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCLIVersionHelp: --version and version exit 0 with the version, help
// exits 0 on the program and on every verb, stray arguments exit 2.
func TestCLIVersionHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"--version"}, 0, "tcu-devcloud " + version + "\n"},
		{[]string{"version"}, 0, "tcu-devcloud " + version + "\n"},
		{[]string{"--help"}, 0, "usage: tcu-devcloud"},
		{[]string{"-h"}, 0, "usage: tcu-devcloud"},
		{[]string{"serve", "--help"}, 0, ""},
		{[]string{"send", "-h"}, 0, ""},
		{[]string{"mint", "--help"}, 0, ""},
		{[]string{"job", "--help"}, 0, "usage: tcu-devcloud job push"},
		{[]string{"job", "push", "--help"}, 0, ""},
		{[]string{"job", "list", "-h"}, 0, ""},
		{[]string{"job", "describe", "--help"}, 0, ""},
		{[]string{"job", "cancel", "--help"}, 0, ""},
		{[]string{"job"}, 2, ""},
		{[]string{"job", "bogus"}, 2, ""},
		{[]string{"job", "push"}, 2, ""},
		{[]string{"job", "push", "dir", "--thing", "T", "stray"}, 2, ""},
		{[]string{"job", "list"}, 2, ""},
		{[]string{"version", "x"}, 2, ""},
		{[]string{"serve", "stray"}, 2, ""},
		{[]string{"send", "--no-such-flag"}, 2, ""},
		{[]string{"mint", "stray"}, 2, ""},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, nil, &out, &errb)
		if code != tt.wantCode || !strings.HasPrefix(out.String(), tt.wantOut) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q", tt.args, code, out.String(), errb.String(), tt.wantCode, tt.wantOut)
		}
	}
}

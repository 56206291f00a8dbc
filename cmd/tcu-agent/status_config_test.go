package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

func TestStatusConfigLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cb   *ctl.ConfigBundle
		want string
	}{
		{nil, ""},
		{&ctl.ConfigBundle{Version: "base"}, "config        base\n"},
		{&ctl.ConfigBundle{Version: "2026-12-07.1", SHA256: "7cc96a64293c19e262bf", Slot: "a", Trial: true},
			"config        2026-12-07.1 sha256 7cc96a64293c (on trial)\n"},
		{&ctl.ConfigBundle{Version: "base", LastJob: &ctl.ConfigJob{ID: "cfg-2", Status: "FAILED", Reason: "crash_loop"}},
			"config        base; last job cfg-2 FAILED (crash_loop)\n"},
	} {
		st := statusFixture()
		st.Config = tc.cb
		var buf bytes.Buffer
		printStatus(&buf, st)
		var line string
		for l := range strings.Lines(buf.String()) {
			if strings.HasPrefix(l, "config ") {
				line = l
			}
		}
		if strings.Join(strings.Fields(line), " ") != strings.Join(strings.Fields(tc.want), " ") {
			t.Errorf("config line %q, want %q", line, tc.want)
		}
	}
}

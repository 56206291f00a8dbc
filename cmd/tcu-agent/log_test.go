package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestNewLogger: text and json formats, the initial level, and a level
// change through the returned LevelVar taking effect at once.
func TestNewLogger(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "") // timestamps on, whatever runs the test
	var buf bytes.Buffer
	log, lv := newLogger(&buf, "warn", "json")
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("json log line %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["k"] != 1.0 {
		t.Errorf("json record = %v", rec)
	}
	buf.Reset()
	lv.Set(slog.LevelDebug)
	log.Debug("now shown")
	if !strings.Contains(buf.String(), `"msg":"now shown"`) {
		t.Errorf("after lowering the level: %q", buf.String())
	}

	buf.Reset()
	log, _ = newLogger(&buf, "info", "text")
	log.Info("hello", "k", "v")
	if out := buf.String(); !strings.Contains(out, "level=INFO msg=hello k=v") || !strings.HasPrefix(out, "time=") {
		t.Errorf("text log line = %q", out)
	}

	t.Setenv("JOURNAL_STREAM", "8:1234")
	buf.Reset()
	log, _ = newLogger(&buf, "info", "text")
	log.Info("journal")
	if out := buf.String(); strings.Contains(out, "time=") {
		t.Errorf("under journald the line has a timestamp: %q", out)
	}
}

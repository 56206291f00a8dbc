package main

import (
	"io"
	"log/slog"
	"os"
)

// newLogger returns the agent's logger writing to w in format ("text":
// key=value, or "json": one object per line) and the LevelVar that holds
// its level, initially level (debug, info, warn, error; anything else is
// info). Changing the LevelVar (`tcu-agent log-level`, via the control
// socket) takes effect at once. When stderr is the journal
// (JOURNAL_STREAM set) no timestamps are written: journald adds its own.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by the config; default info
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

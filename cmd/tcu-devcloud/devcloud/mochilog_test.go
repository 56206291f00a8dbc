package devcloud

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestMochiHandler(t *testing.T) {
	t.Parallel()
	closed := fmt.Errorf("accept tcp 127.0.0.1:1883: %w", net.ErrClosed)
	tests := []struct {
		name  string
		level slog.Level
		msg   string
		err   error
		want  string // "" = nothing logged
	}{
		{"accept error", slog.LevelInfo, "", errors.New("too many open files"), `level=WARN msg="mochi listener error"`},
		{"shutdown, info", slog.LevelInfo, "", closed, ""},
		{"shutdown, debug", slog.LevelDebug, "", closed, `level=DEBUG msg="mochi listener closed"`},
		{"other message", slog.LevelInfo, "client disconnected", closed, `msg="client disconnected"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(mochiHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level})})
			log.With("component", "mochi").Warn(tt.msg, "error", tt.err)
			got := buf.String()
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
			if tt.want != "" && !strings.Contains(got, "component=mochi") {
				t.Errorf("logged %q without its attributes", got)
			}
		})
	}
}

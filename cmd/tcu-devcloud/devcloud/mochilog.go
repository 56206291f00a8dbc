package devcloud

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// mochiHandler adapts mochi's logging: its listeners log accept errors
// with an empty message, also the "use of closed network connection" that
// every shutdown produces. Those get a message, and the shutdown one is
// logged at debug.
type mochiHandler struct{ slog.Handler }

func (h mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" {
		r.Message = "mochi listener error"
		closed := false
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && errors.Is(err, net.ErrClosed) {
				closed = true
			}
			return !closed
		})
		if closed {
			if !h.Enabled(ctx, slog.LevelDebug) {
				return nil
			}
			d := slog.NewRecord(r.Time, slog.LevelDebug, "mochi listener closed", r.PC)
			r.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
			r = d
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h mochiHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return mochiHandler{h.Handler.WithAttrs(a)}
}

func (h mochiHandler) WithGroup(name string) slog.Handler {
	return mochiHandler{h.Handler.WithGroup(name)}
}

package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
)

// LogLevelPath is the HTTP path of the log level: GET returns it (e.g.
// "INFO"), PUT with a level name in the body (debug, info, warn, error;
// case-insensitive) sets it and returns the new level.
const LogLevelPath = "/v1/log-level"

// An Option adds an optional part of the control API.
type Option func(*http.ServeMux)

// WithLogLevel serves LogLevelPath over lv, the level of the agent's
// logger: `tcu-agent log-level debug` takes effect at once, without a
// restart, and lasts until the agent restarts.
func WithLogLevel(lv *slog.LevelVar) Option {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET "+LogLevelPath, func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, lv.Level())
		})
		mux.HandleFunc("PUT "+LogLevelPath, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 64))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			l, err := ParseLevel(string(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			lv.Set(l)
			fmt.Fprintln(w, lv.Level())
		})
	}
}

// ParseLevel parses one of debug, info, warn, error (any case).
func ParseLevel(s string) (slog.Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "debug", "info", "warn", "error":
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return 0, fmt.Errorf("log level %q: %w", s, err)
		}
		return l, nil
	}
	return 0, fmt.Errorf("log level %q not one of debug, info, warn, error", s)
}

// LogLevel asks the agent at the control socket path for its log level;
// with a non-empty set it first sets it. It returns the level in effect.
func LogLevel(ctx context.Context, path, set string) (string, error) {
	method, body := http.MethodGet, io.Reader(nil)
	if set != "" {
		method, body = http.MethodPut, strings.NewReader(set)
	}
	resp, err := do(ctx, path, method, LogLevelPath, body)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return "", fmt.Errorf("log level from %s: %w", path, err)
	}
	msg = bytes.TrimSpace(msg)
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return "", fmt.Errorf("log level via %s: %w", path, ErrUnsupported)
		}
		return "", fmt.Errorf("log level via %s: %s", path, msg)
	}
	return string(msg), nil
}

// ErrUnsupported is returned by LogLevel when the agent does not serve
// the log level (an older version).
var ErrUnsupported = errors.New("not supported by this agent")

// do sends one request to the control socket at path.
func do(ctx context.Context, path, method, urlPath string, body io.Reader) (*http.Response, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tcu-agent"+urlPath, body)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", path, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if isNotRunning(err) {
			return nil, fmt.Errorf("query %s: %w", path, ErrNotRunning)
		}
		return nil, fmt.Errorf("query %s: %w", path, err)
	}
	return resp, nil
}

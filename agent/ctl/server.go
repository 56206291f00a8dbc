package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/internal/httpserve"
)

// SocketMode is the control socket's permission: the agent's user and group
// (operators in group tcu-agent) may connect, nobody else.
const SocketMode fs.FileMode = 0o660

// ErrInUse is returned by Listen when another process is serving the socket.
var ErrInUse = errors.New("control socket in use by another process")

// Listen creates the unix socket at path with mode SocketMode. It creates
// the parent directory (0750) when missing, and replaces a stale socket left
// by a crashed agent, but refuses a live one (ErrInUse) and anything that is
// not a socket.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create control socket dir: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("control socket %s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// Serve listens on path (see Listen) and serves the document returned by
// status at StatusPath until ctx is done; then it closes the listener,
// removes the socket and returns nil. status is called once per request and
// must be safe for concurrent use. opts add optional endpoints.
func Serve(ctx context.Context, path string, status func() Status, opts ...Option) error {
	ln, err := Listen(path)
	if err != nil {
		return err
	}
	return ServeListener(ctx, ln, status, opts...)
}

// ServeListener is Serve on an existing listener, which it closes.
func ServeListener(ctx context.Context, ln net.Listener, status func() Status, opts ...Option) error {
	if err := httpserve.Serve(ctx, ln, Handler(status, opts...)); err != nil {
		return fmt.Errorf("serve control socket: %w", err)
	}
	return nil
}

// Handler returns the control API's http.Handler: GET StatusPath returns
// status() as JSON; opts add optional endpoints (WithLogLevel).
func Handler(status func() Status, opts ...Option) http.Handler {
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux)
	}
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		// An error here means the client went away; nothing to do.
		_ = enc.Encode(status())
	})
	return mux
}

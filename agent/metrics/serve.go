package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/tcu-agent/tcu-agent/agent/internal/httpserve"
)

// ErrNotLoopback is returned by Listen and Serve for an address that is not
// on the loopback interface, unless AllowNonLoopback is given.
var ErrNotLoopback = errors.New("not a loopback address")

// Path is the URL path the metrics are served at.
const Path = "/metrics"

// A ServeOption changes how Listen and Serve behave.
type ServeOption func(*serveOptions)

type serveOptions struct {
	allowNonLoopback bool
}

// AllowNonLoopback lets Listen bind any address. The endpoint has no
// authentication: use it only behind a firewall or on an isolated network.
func AllowNonLoopback() ServeOption {
	return func(o *serveOptions) { o.allowNonLoopback = true }
}

// CheckAddr reports whether addr ("host:port") may be listened on: the host
// must be a loopback IP literal or "localhost", unless AllowNonLoopback is
// given. An empty host (all interfaces) is not loopback.
func CheckAddr(addr string, opts ...ServeOption) error {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if o.allowNonLoopback || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("metrics address %q: %w (use 127.0.0.1 or [::1], or allow non-loopback explicitly)", addr, ErrNotLoopback)
}

// Listen checks addr with CheckAddr and opens a TCP listener on it.
func Listen(addr string, opts ...ServeOption) (net.Listener, error) {
	if err := CheckAddr(addr, opts...); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen metrics %s: %w", addr, err)
	}
	return ln, nil
}

// Serve listens on addr (see Listen) and serves h at Path until ctx is done,
// then shuts the server down and returns nil.
func Serve(ctx context.Context, addr string, h http.Handler, opts ...ServeOption) error {
	ln, err := Listen(addr, opts...)
	if err != nil {
		return err
	}
	return ServeListener(ctx, ln, h)
}

// ServeListener serves h at Path on ln until ctx is done, then shuts the
// server down (ln is closed) and returns nil.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	if err := httpserve.Serve(ctx, ln, mux); err != nil {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}

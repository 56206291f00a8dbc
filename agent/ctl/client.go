package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"syscall"
)

// ErrNotRunning is returned by Query when nothing listens on the socket
// (the agent is not running, or runs with another ctl_socket).
var ErrNotRunning = errors.New("agent not running")

// maxStatusBytes bounds the status document a client accepts.
const maxStatusBytes = 4 << 20

// Query fetches the running agent's Status from the control socket at path.
// ctx bounds the whole exchange.
func Query(ctx context.Context, path string) (Status, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tcu-agent"+StatusPath, nil)
	if err != nil {
		return Status{}, fmt.Errorf("query %s: %w", path, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if isNotRunning(err) {
			return Status{}, fmt.Errorf("query %s: %w", path, ErrNotRunning)
		}
		return Status{}, fmt.Errorf("query %s: %w", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Status{}, fmt.Errorf("query %s: %s: %q", path, resp.Status, msg)
	}
	var s Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBytes)).Decode(&s); err != nil {
		return Status{}, fmt.Errorf("decode status from %s: %w", path, err)
	}
	return s, nil
}

// isNotRunning reports whether a dial error means nobody serves the socket.
func isNotRunning(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
}

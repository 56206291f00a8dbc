// Package sdnotify implements the systemd notification protocol (sd_notify)
// without cgo: readiness, stopping, one-line status and a watchdog whose
// pings are gated on agent/health, so that a hung critical loop (not only a
// dead process) gets the service restarted.
//
// Every function is a no-op returning nil when $NOTIFY_SOCKET is unset, i.e.
// when the agent does not run under systemd with Type=notify.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/health"
)

// Environment variables set by systemd (systemd.exec(5), sd_notify(3)).
const (
	envSocket      = "NOTIFY_SOCKET"
	envWatchdogUs  = "WATCHDOG_USEC"
	envWatchdogPID = "WATCHDOG_PID"
)

// StatusPeriod is how often Watchdog refreshes STATUS= when the systemd
// watchdog is off (with the watchdog on, it refreshes on every ping).
const StatusPeriod = 5 * time.Second

// Notify sends one notification message (newline-separated VAR=value
// assignments, see sd_notify(3)) to $NOTIFY_SOCKET. It reports whether a
// socket was configured; without one it does nothing. A socket name starting
// with '@' is in the Linux abstract namespace.
func Notify(state string) (sent bool, err error) {
	socket := os.Getenv(envSocket)
	if socket == "" {
		return false, nil
	}
	if err := send(socket, state); err != nil {
		return false, err
	}
	return true, nil
}

func send(socket, state string) error {
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sdnotify dial %s: %w", socket, err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify send: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up is complete (READY=1). Send it only once
// the store is open, the identity is loaded (or provisioning has started) and
// the drivers run.
func Ready() error {
	_, err := Notify("READY=1")
	return err
}

// Stopping tells systemd that shutdown has begun (STOPPING=1).
func Stopping() error {
	_, err := Notify("STOPPING=1")
	return err
}

// Status sets the one-line status shown by `systemctl status` (STATUS=).
// Newlines in line are replaced by spaces.
func Status(line string) error {
	_, err := Notify("STATUS=" + oneLine(line))
	return err
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// WatchdogInterval returns the systemd watchdog interval (WatchdogSec=) from
// $WATCHDOG_USEC, or 0 when the watchdog is off or meant for another process
// ($WATCHDOG_PID names a different PID). Like sd_watchdog_enabled(3) it
// returns an error for malformed values.
func WatchdogInterval() (time.Duration, error) {
	us := os.Getenv(envWatchdogUs)
	if us == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(us, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("parse %s=%q: not a positive integer", envWatchdogUs, us)
	}
	if p := os.Getenv(envWatchdogPID); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("parse %s=%q: not a positive integer", envWatchdogPID, p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	return time.Duration(n) * time.Microsecond, nil
}

// A Notifier sends watchdog pings and STATUS= on its caller's schedule, so
// that the caller can coalesce them with its own periodic work (one timer
// for liveness probes, health log and watchdog). The zero value is not
// usable; call NewNotifier.
type Notifier struct {
	socket     string
	interval   time.Duration
	lastStatus string
}

// NewNotifier returns a Notifier for $NOTIFY_SOCKET with the watchdog
// interval of WatchdogInterval, or nil (and no error) when $NOTIFY_SOCKET
// is unset. A malformed $WATCHDOG_USEC or $WATCHDOG_PID is an error.
func NewNotifier() (*Notifier, error) {
	socket := os.Getenv(envSocket)
	if socket == "" {
		return nil, nil
	}
	interval, err := WatchdogInterval()
	if err != nil {
		return nil, err
	}
	return &Notifier{socket: socket, interval: interval}, nil
}

// Interval is the systemd watchdog interval (WatchdogSec=), 0 when the
// watchdog is off. Call Tick at least every Interval/2.
func (n *Notifier) Interval() time.Duration { return n.interval }

// Tick sends WATCHDOG=1 if the watchdog is on and tracker.Healthy(Interval)
// holds, and STATUS= from statusFn when it changed since the last Tick that
// got through (while pings are withheld the status says why). tracker and
// statusFn may be nil. A failed send is returned; it is not fatal
// (systemd may be re-executing): the next Tick sends again.
func (n *Notifier) Tick(tracker *health.Tracker, statusFn func() string) error {
	msg, status := tick(tracker, statusFn, n.interval, n.lastStatus)
	if msg == "" {
		return nil
	}
	if err := send(n.socket, msg); err != nil {
		return err
	}
	n.lastStatus = status
	return nil
}

// Watchdog runs until ctx is done, then returns nil. Every interval/2 (the
// watchdog interval from WatchdogInterval) it sends WATCHDOG=1, but only if
// tracker.Healthy(interval) holds: when a critical loop hangs the pings stop
// and systemd restarts the service once WatchdogSec passes. With each ping it
// also refreshes STATUS= from statusFn (when changed); while pings are
// withheld the status says why. Without the watchdog it only refreshes
// STATUS= every StatusPeriod; without $NOTIFY_SOCKET it returns nil at once.
// tracker and statusFn may be nil. It is Notifier.Tick on its own timer;
// the agent uses a Notifier to share one timer with its liveness probes.
//
// A failed send is not fatal (systemd may be re-executing); it is retried on
// the next tick.
func Watchdog(ctx context.Context, tracker *health.Tracker, statusFn func() string) error {
	n, err := NewNotifier()
	if n == nil || err != nil {
		return err
	}
	period := StatusPeriod
	if n.interval > 0 {
		period = n.interval / 2
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		_ = n.Tick(tracker, statusFn) // retried on the next tick
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// tick builds one notification: WATCHDOG=1 if the watchdog is on and the
// tracker is healthy, and STATUS= if the status line changed. It returns the
// message ("" for nothing to send) and the status line it carries.
func tick(tracker *health.Tracker, statusFn func() string, interval time.Duration, lastStatus string) (msg, status string) {
	if statusFn != nil {
		status = oneLine(statusFn())
	}
	var lines []string
	if interval > 0 {
		ok, why := true, ""
		if tracker != nil {
			ok, why = tracker.Healthy(interval)
		}
		if ok {
			lines = append(lines, "WATCHDOG=1")
		} else {
			status = "unhealthy, watchdog withheld: " + oneLine(why)
		}
	}
	if status != lastStatus {
		lines = append(lines, "STATUS="+status)
	}
	return strings.Join(lines, "\n"), status
}

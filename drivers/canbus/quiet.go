package canbus

import (
	"sync"
	"time"
)

// Quiet windows let a driver that actuates on a bus (a remote command's
// frames) tell other drivers of the same process that poll the same bus
// (OBD-II requests) to keep off it for a while. Buses are named by a key
// such as "socketcan:can0" or "vbus:/tmp/tcu-sim/vbus.sock" (BusKey).
var quiet struct {
	mu    sync.Mutex
	until map[string]time.Time // guarded by mu
}

// BusKey names a bus for Quiet and QuietUntil: transport and interface or
// address.
func BusKey(transport, where string) string { return transport + ":" + where }

// Quiet asks pollers to keep off bus for d from now (a longer earlier
// window is kept).
func Quiet(bus string, d time.Duration) {
	t := time.Now().Add(d)
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	if quiet.until == nil {
		quiet.until = map[string]time.Time{}
	}
	if t.After(quiet.until[bus]) {
		quiet.until[bus] = t
	}
}

// QuietUntil returns when bus's quiet window ends (zero or past: none).
func QuietUntil(bus string) time.Time {
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	return quiet.until[bus]
}

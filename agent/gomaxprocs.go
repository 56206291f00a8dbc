package agent

import (
	"os"
	"runtime"
	"sync"
)

// procs applies a profile's gomaxprocs (agent/profile Settings.GOMAXPROCS)
// to the Go runtime and restores the runtime's own choice when a profile
// without one takes over.
type procs struct {
	mu      sync.Mutex
	initial int  // GOMAXPROCS before the first override
	set     bool // an override is in effect
}

// apply sets GOMAXPROCS to n (> 0), or restores it (0): to $GOMAXPROCS's
// value when the operator set one, otherwise to the runtime's default,
// which also turns its automatic updates (CPU quota changes) back on.
func (p *procs) apply(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case n > 0:
		if !p.set {
			p.initial, p.set = runtime.GOMAXPROCS(0), true
		}
		if runtime.GOMAXPROCS(0) != n {
			runtime.GOMAXPROCS(n)
		}
	case p.set:
		p.set = false
		if os.Getenv("GOMAXPROCS") != "" {
			runtime.GOMAXPROCS(p.initial)
		} else {
			runtime.SetDefaultGOMAXPROCS()
		}
	}
}

package sdnotify_test

import (
	"context"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/health"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
)

// Example shows the wiring in the agent: critical loops beat, READY=1 once
// capture runs, the watchdog goroutine gates its pings on the tracker.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	tracker := health.New(nil)
	batcher := tracker.Loop("batcher", true)
	go func() { // the batcher loop; stopped by ctx
		defer batcher.Close()
		tick := time.NewTicker(time.Second) // well under WatchdogSec
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				batcher.Beat()
				// ... flush a batch ...
			}
		}
	}()

	// Store open, identity loaded or provisioning started, drivers running:
	_ = sdnotify.Ready()
	_ = sdnotify.Watchdog(ctx, tracker, func() string {
		return "provisioned; mqtt connected; queue 12 rec; can0 ok"
	})
	_ = sdnotify.Stopping()
	// Output:
}

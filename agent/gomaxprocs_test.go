package agent

import (
	"runtime"
	"testing"
)

// TestProcsApply: a profile's gomaxprocs is applied and a profile without
// one restores what the runtime had ($GOMAXPROCS, or its default).
func TestProcsApply(t *testing.T) {
	for _, env := range []string{"", "3"} {
		t.Run("GOMAXPROCS="+env, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", env)
			before := runtime.GOMAXPROCS(0)
			if env != "" {
				runtime.GOMAXPROCS(3) // as the runtime reads $GOMAXPROCS at start
				before = 3
			}
			defer runtime.SetDefaultGOMAXPROCS()
			var p procs
			p.apply(0) // nothing overridden: nothing to restore
			if got := runtime.GOMAXPROCS(0); got != before {
				t.Fatalf("apply(0) first: GOMAXPROCS %d, want %d", got, before)
			}
			for _, step := range []struct{ n, want int }{{1, 1}, {2, 2}, {0, before}, {1, 1}, {0, before}} {
				p.apply(step.n)
				if got := runtime.GOMAXPROCS(0); got != step.want {
					t.Errorf("apply(%d): GOMAXPROCS %d, want %d", step.n, got, step.want)
				}
			}
		})
	}
}

package agent

// TEMPORARY: hotapply implements ApplyConfig (CONTRACTS C.5); the
// coordinator deletes this file at merge.

import (
	"context"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
)

// ApplyResult says how a configuration was applied.
type ApplyResult struct {
	Live            bool
	RestartSections []string
	Gap             time.Duration
}

// ApplyConfig is a stub until hotapply lands: it applies nothing live.
func (a *Agent) ApplyConfig(_ context.Context, _ *config.Config, _ string) (ApplyResult, error) {
	return ApplyResult{Live: false, RestartSections: []string{"all"}}, nil
}

package agent

import (
	"bytes"
	"fmt"
)

// MetricsText renders the agent's Prometheus registry as a scrape would:
// for the external end-to-end tests.
func (a *Agent) MetricsText() (string, error) {
	var b bytes.Buffer
	if err := a.metrics().WriteText(&b); err != nil {
		return "", fmt.Errorf("write metrics: %w", err)
	}
	return b.String(), nil
}

package agenttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Demo-config values the generated config replaces. If configs/demo.toml
// changes them, configFrom fails rather than testing the wrong setup.
const (
	demoDir      = "/tmp/tcu-demo/"
	demoStateDir = "/tmp/tcu-demo/state"
	demoBusSock  = "/tmp/tcu-demo/vbus.sock"
	demoCtlSock  = "/tmp/tcu-demo/ctl.sock"
	demoBroker   = "127.0.0.1:18830"
	demoThing    = "demo-car-001"
	demoInterval = "[telemetry]\ninterval = \"1s\""
	demoBackoff  = "backoff_max = \"5s\""
	demoEvents   = "events = [\n"
)

// paths are the per-test locations written into the generated config.
type paths struct {
	dir, stateDir, busSock, ctlSock, broker string
}

// configFrom derives the agent's config from the demo config text.
func configFrom(demo string, opts Options, p paths) (string, error) {
	pairs := [][2]string{
		{demoStateDir, p.stateDir},
		{demoBusSock, p.busSock},
		{demoCtlSock, p.ctlSock},
		{demoBroker, p.broker},
		{demoThing, opts.Thing},
	}
	if opts.TelemetryInterval != "" {
		pairs = append(pairs, [2]string{demoInterval, "[telemetry]\ninterval = " + strconv.Quote(opts.TelemetryInterval)})
	}
	if opts.BackoffMax != "" {
		pairs = append(pairs, [2]string{demoBackoff, "backoff_max = " + strconv.Quote(opts.BackoffMax)})
	}
	if len(opts.ExtraEvents) > 0 {
		var b strings.Builder
		b.WriteString(demoEvents)
		for _, e := range opts.ExtraEvents {
			fmt.Fprintf(&b, "  %s,\n", strconv.Quote(e))
		}
		pairs = append(pairs, [2]string{demoEvents, b.String()})
	}
	text := demo
	for _, p := range pairs {
		if !strings.Contains(text, p[0]) {
			return "", fmt.Errorf("derive agent config: demo config no longer contains %q", p[0])
		}
		text = strings.ReplaceAll(text, p[0], p[1])
	}
	// Any other demo path (a device added later) moves into the test's
	// dir too, so that a test never touches a running demo.
	return strings.ReplaceAll(text, demoDir, p.dir+"/"), nil
}

// writeConfig writes the agent's config and its DBC into dir and returns
// the config's path.
func writeConfig(root, dir string, opts Options, p paths) (string, error) {
	demo, err := os.ReadFile(filepath.Join(root, "configs", "demo.toml"))
	if err != nil {
		return "", fmt.Errorf("read demo config: %w", err)
	}
	text, err := configFrom(string(demo), opts, p)
	if err != nil {
		return "", err
	}
	if opts.EditConfig != nil {
		text = opts.EditConfig(text)
	}
	dbcText, err := os.ReadFile(filepath.Join(root, "configs", "vehicle.dbc"))
	if err != nil {
		return "", fmt.Errorf("read dbc: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vehicle.dbc"), dbcText, 0o644); err != nil {
		return "", fmt.Errorf("write dbc: %w", err)
	}
	path := filepath.Join(dir, "tcu-agent.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("write agent config: %w", err)
	}
	return path, nil
}

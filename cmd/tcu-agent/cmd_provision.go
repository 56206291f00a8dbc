package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
)

func init() {
	register(subcommand{name: "provision", summary: "obtain the device identity in the foreground, showing each step", run: runProvision})
}

func runProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, sec, err := parseAndLoad("provision", args, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	step := func(name string) {
		fmt.Fprintf(stdout, "%7.3fs  %s\n", time.Since(start).Seconds(), name)
	}
	fmt.Fprintf(stdout, "provisioning with method %q into %s\n", sec.Provisioning.Method, cfg.Agent.StateDir)
	id, err := agent.Provision(ctx, cfg, sec, newLogger(stderr, cfg.Agent.LogLevel), step)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "identity: thing %s, source %s, certificate valid until %s\n", id.Thing, id.Source, id.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

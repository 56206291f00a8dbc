package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/config"
)

func init() {
	register(subcommand{name: "provision", summary: "obtain the device identity in the foreground, showing each step",
		description: "Uses the [provisioning] method of the configuration. Exits 78 on a configuration error.",
		setup: func(fs *flag.FlagSet) runFunc {
			cf := addConfigFlags(fs, true)
			return func(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
				return runProvision(ctx, cf, stdout, stderr)
			}
		}})
}

func runProvision(ctx context.Context, cf *configFlags, stdout, stderr io.Writer) error {
	cfg, sec, err := cf.load()
	if err != nil {
		return err
	}
	start := time.Now()
	step := func(name string) {
		fmt.Fprintf(stdout, "%7.3fs  %s\n", time.Since(start).Seconds(), name)
	}
	fmt.Fprintf(stdout, "provisioning with method %q into %s\n", sec.Provisioning.Method, cfg.Agent.StateDir)
	id, err := agent.Provision(ctx, cfg, sec, logger(stderr, cfg), step)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "identity: thing %s, source %s, certificate valid until %s\n", id.Thing, id.Source, id.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// logger returns the agent's logger for a foreground verb.
func logger(w io.Writer, cfg *config.Config) *slog.Logger {
	l, _ := newLogger(w, cfg.Agent.LogLevel, cfg.Agent.LogFormat)
	return l
}

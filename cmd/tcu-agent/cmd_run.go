package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/config"
	_ "github.com/tcu-agent/tcu-agent/drivers/all" // link the drivers
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT is set.
const defaultMemoryLimit = 48 << 20

// defaultConfigPath is where packages install the configuration.
const defaultConfigPath = "/etc/tcu-agent/tcu-agent.toml"

func init() {
	register(subcommand{name: "run", summary: "run the agent (default verb)", run: runAgent})
	register(subcommand{name: "check-config", summary: "load and validate a config file, then exit", run: runCheckConfig})
}

// loadConfig loads path and turns configuration problems into exit code 78
// (EX_CONFIG), which the systemd unit does not restart on.
func loadConfig(path string) (*config.Config, *agent.Sections, error) {
	cfg, sec, err := agent.LoadConfig(path)
	if err != nil {
		if config.IsConfigError(err) {
			return nil, nil, &exitCodeError{code: 78, err: fmt.Errorf("invalid configuration:\n%w", err)}
		}
		return nil, nil, &exitCodeError{code: 78, err: err}
	}
	return cfg, sec, nil
}

// parseAndLoad parses the --config and --state-dir flags shared by the
// verbs that run against a configuration, then loads it (--state-dir
// overrides [agent] state_dir, e.g. with systemd's $STATE_DIRECTORY).
func parseAndLoad(verb string, args []string, stderr io.Writer) (*config.Config, *agent.Sections, error) {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	stateDir := fs.String("state-dir", "", "override [agent] state_dir (e.g. $STATE_DIRECTORY)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, &exitCodeError{code: 2, err: err}
	}
	cfg, sec, err := loadConfig(*path)
	if err != nil {
		return nil, nil, err
	}
	if *stateDir != "" {
		cfg.Agent.StateDir = *stateDir
	}
	return cfg, sec, nil
}

func runAgent(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, sec, err := parseAndLoad("run", args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Agent.LogLevel)
	// A soft memory limit for a small box: the collector runs before the
	// heap doubles (the buffer's 1M-record fill peaks at 19.8-29.2 MB
	// RssAnon without a limit, 16.8-19.0 MB with 24 MiB, at the same rate:
	// docs/perf/buffer.md). GOMEMLIMIT in the environment overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log, Version: version})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func runCheckConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return &exitCodeError{code: 2, err: err}
	}
	path := defaultConfigPath
	if fs.NArg() > 0 {
		path = fs.Arg(0)
	}
	cfg, _, err := loadConfig(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (version %d, %d drivers)\n", path, cfg.Version, len(cfg.Drivers))
	return nil
}

// newLogger returns a text logger for journald: no timestamps when stderr
// is the journal (JOURNAL_STREAM set), since journald adds its own.
func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

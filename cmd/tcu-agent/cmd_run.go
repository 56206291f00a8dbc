package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

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
	// SIGHUP reloads; it must not kill the agent (its default action),
	// so it is caught before anything else can take time.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, sec, err := parseAndLoad("run", args, stderr)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Agent.LogLevel))
	log := slog.New(&levelHandler{Handler: newLogger(stderr, "debug").Handler(), level: level})
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
	path := cfg.File
	var wg sync.WaitGroup
	hupCtx, stopHUP := context.WithCancel(ctx)
	wg.Go(func() { // ends with hupCtx
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				reload(path, cfg, sec, level, log)
				a.Reload()
			}
		}
	})
	err = a.Run(ctx)
	stopHUP()
	wg.Wait()
	if errors.Is(err, agent.ErrConfig) {
		return &exitCodeError{code: 78, err: err}
	}
	return err
}

// reload re-reads the config file on SIGHUP and applies what is safe to
// change at run time: the log level. Other changes are named in the log:
// they take effect at the next restart. An invalid file changes nothing.
func reload(path string, running *config.Config, runningSec *agent.Sections, level *slog.LevelVar, log *slog.Logger) {
	cfg, sec, err := agent.LoadConfig(path)
	if err != nil {
		log.Error("reload: config not reloaded, keeping the running one", "path", path, "err", err)
		return
	}
	if lv := parseLevel(cfg.Agent.LogLevel); lv != level.Level() {
		level.Set(lv)
		log.Info("reload: log level changed", "log_level", cfg.Agent.LogLevel)
	}
	if changed := restartNeeded(running, runningSec, cfg, sec); len(changed) > 0 {
		log.Warn("reload: changed settings take effect at the next restart", "sections", strings.Join(changed, ","))
	}
}

// restartNeeded lists the config sections that differ between the running
// config and a reloaded one, other than what reload applies.
func restartNeeded(old *config.Config, oldSec *agent.Sections, cfg *config.Config, sec *agent.Sections) []string {
	var changed []string
	a, b := old.Agent, cfg.Agent
	a.LogLevel, b.LogLevel = "", ""
	// --state-dir overrides the file's state_dir: not a change.
	b.StateDir = a.StateDir
	for _, c := range []struct {
		name string
		x, y any
	}{
		{"agent", a, b}, {"buffer", old.Buffer, cfg.Buffer}, {"telemetry", old.Telemetry, cfg.Telemetry},
		{"health", old.Health, cfg.Health}, {"mqtt", oldSec.MQTT, sec.MQTT},
		{"provisioning", oldSec.Provisioning, sec.Provisioning}, {"commands", oldSec.Commands, sec.Commands},
		{"driver", driverNames(old), driverNames(cfg)},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			changed = append(changed, c.name)
		}
	}
	return changed
}

func driverNames(c *config.Config) []string {
	var n []string
	for _, d := range c.Drivers {
		n = append(n, d.Name)
	}
	return n
}

func parseLevel(s string) slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(s)) // validated by the config loader
	return lv
}

// levelHandler filters a handler by a level that can change at run time.
type levelHandler struct {
	slog.Handler
	level *slog.LevelVar
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}

func (h *levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithAttrs(attrs), level: h.level}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithGroup(name), level: h.level}
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

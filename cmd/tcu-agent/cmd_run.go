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
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"github.com/tcu-agent/tcu-agent/agent/sdnotify"
	_ "github.com/tcu-agent/tcu-agent/drivers/all" // link the drivers
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT is set.
const defaultMemoryLimit = 48 << 20

// defaultConfigPath is where packages install the configuration.
const defaultConfigPath = "/etc/tcu-agent/tcu-agent.toml"

func init() {
	register(subcommand{name: "run", summary: "run the agent (default verb)",
		description: "Runs until SIGTERM or SIGINT. Exits 78 (EX_CONFIG) on a configuration error, which\nthe systemd unit does not restart on.",
		setup: func(fs *flag.FlagSet) runFunc {
			cf := addConfigFlags(fs, true)
			return func(ctx context.Context, _ []string, _, stderr io.Writer) error { return runAgent(ctx, cf, stderr) }
		}})
	register(subcommand{name: "check-config", summary: "load and validate a config file, then exit",
		operands: "[FILE]", maxArgs: 1,
		description: "FILE (or --config) defaults to " + defaultConfigPath + ". Exits 0 when valid, 78 with\nfile:line: key: problem lines when not.",
		setup: func(fs *flag.FlagSet) runFunc {
			cf := addConfigFlags(fs, false)
			return func(_ context.Context, args []string, stdout, _ io.Writer) error {
				return runCheckConfig(fs, cf, args, stdout)
			}
		}})
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

func runAgent(ctx context.Context, cf *configFlags, stderr io.Writer) error {
	// SIGHUP reloads; it must not kill the agent (its default action),
	// so it is caught before anything else can take time.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, sec, err := cf.load()
	if err != nil {
		return err
	}
	base := cfg.File
	cfg, sec, notes := activeConfig(cf, cfg, sec)
	log, level := newLogger(stderr, cfg.Agent.LogLevel, cfg.Agent.LogFormat)
	for _, n := range notes {
		log.Warn(n)
	}
	if cfg.File != base {
		log.Info("running a configuration bundle", "file", cfg.File, "base", base)
	}
	// A soft memory limit for a small box: the collector runs before the
	// heap doubles (the buffer's 1M-record fill peaks at 19.8-29.2 MB
	// RssAnon without a limit, 16.8-19.0 MB with 24 MiB, at the same rate:
	// docs/perf/buffer.md). GOMEMLIMIT in the environment overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log, LogLevel: level, Version: version, BaseFile: base})
	if err != nil {
		return err
	}
	// A configuration job that cannot be applied in process asks for a
	// restart: stop cleanly (the buffer is closed), then re-execute.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	restart := make(chan string, 1)
	go func() { // ends with runCtx
		select {
		case r := <-a.RestartRequested():
			restart <- r
			stopRun()
		case <-runCtx.Done():
		}
	}()
	path := cfg.File
	var wg sync.WaitGroup
	hupCtx, stopHUP := context.WithCancel(ctx)
	wg.Go(func() { // ends with hupCtx
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				reload(hupCtx, path, cf.stateDir, a, level, log)
				a.Reload()
			}
		}
	})
	err = a.Run(runCtx)
	stopHUP()
	wg.Wait()
	if errors.Is(err, agent.ErrConfig) {
		return &exitCodeError{code: 78, err: err}
	}
	select {
	case r := <-restart:
		if ctx.Err() == nil {
			log.Info("restarting in place", "reason", r)
			signal.Stop(hup)
			return reexec()
		}
	default:
	}
	return err
}

// reexec replaces the process with a fresh start of the same binary and
// arguments (the PID stays, so systemd keeps supervising it).
func reexec() error {
	_, _ = sdnotify.Notify("RELOADING=1")
	if err := syscall.Exec("/proc/self/exe", os.Args, os.Environ()); err != nil {
		return fmt.Errorf("restart: exec /proc/self/exe: %w", err)
	}
	return nil
}

// activeConfig is the jobs startup hook: with [jobs] on in the --config
// file, it counts this start in the A/B store (rolling a crash-looping
// trial back) and loads the active bundle's configuration; a bundle that
// does not load is rolled back and the --config file is used. It returns
// what to run and warnings to log.
func activeConfig(cf *configFlags, base *config.Config, baseSec *agent.Sections) (*config.Config, *agent.Sections, []string) {
	if !baseSec.Jobs.On() {
		return base, baseSec, nil
	}
	store, err := abstore.Open(agent.ConfigStoreDir(base.Agent.StateDir))
	if err != nil {
		return base, baseSec, []string{"configuration store unusable, running --config: " + err.Error()}
	}
	st, err := store.Boot(jobs.MaxBoots)
	if errors.Is(err, abstore.ErrCorrupt) {
		// A damaged state file (the store writes it atomically, so only
		// the medium damages it): start over from the --config file.
		if rerr := store.Save(abstore.State{}); rerr != nil {
			return base, baseSec, []string{"configuration store unusable, running --config: " + err.Error() + "; reset: " + rerr.Error()}
		}
		return base, baseSec, []string{"configuration store state damaged, reset to the --config file: " + err.Error()}
	}
	if err != nil {
		return base, baseSec, []string{"configuration store unreadable, running --config: " + err.Error()}
	}
	var notes []string
	if st.Trial == nil && st.Result != nil && st.Result.Reason == bundle.ReasonCrashLoop {
		notes = append(notes, "configuration bundle rolled back: "+st.Result.Detail)
	}
	for range 2 { // the active slot, then (after a rollback) the last-known-good
		slot, _ := st.Active()
		if slot == "" {
			return base, baseSec, notes
		}
		cfg, sec, err := agent.LoadConfig(store.ConfigPath(slot))
		if err == nil {
			if cf.stateDir != "" {
				cfg.Agent.StateDir = cf.stateDir
			}
			return cfg, sec, notes
		}
		notes = append(notes, fmt.Sprintf("configuration bundle in slot %s does not load, rolled back: %v", slot, err))
		if st.Trial != nil {
			st, err = store.Rollback(bundle.ReasonInvalidConfig, err.Error())
		} else {
			// The last-known-good itself is damaged: forget it.
			st.Good, st.GoodMeta = "", abstore.Meta{}
			err = store.Save(st)
		}
		if err != nil {
			return base, baseSec, append(notes, err.Error())
		}
	}
	return base, baseSec, notes
}

// reload re-reads the config file on SIGHUP with the loader the agent
// started with, applies the log level, and hands the rest to
// a.ApplyConfig: the capture side (drivers, signals, DBC files, telemetry
// interval and events) is swapped in process; changes to other sections
// are named in the log and take effect, with everything else in the file,
// at the next restart. An invalid file changes nothing.
func reload(ctx context.Context, path, stateDir string, a *agent.Agent, level *slog.LevelVar, log *slog.Logger) {
	cfg, _, err := agent.LoadConfig(path)
	if err != nil {
		log.Error("reload: config not reloaded, keeping the running one", "path", path, "err", err)
		return
	}
	// --state-dir overrides the file's state_dir: not a change.
	if stateDir != "" {
		cfg.Agent.StateDir = stateDir
	}
	if lv := parseLevel(cfg.Agent.LogLevel); lv != level.Level() {
		level.Set(lv)
		log.Info("reload: log level changed", "log_level", cfg.Agent.LogLevel)
	}
	res, err := a.ApplyConfig(ctx, cfg, path)
	switch {
	case err != nil:
		log.Error("reload: configuration not applied, the running one is unchanged", "path", path, "err", err)
	case !res.Live:
		log.Warn("reload: changed settings take effect at the next restart (drivers and telemetry too: nothing else was applied)",
			"sections", strings.Join(res.RestartSections, ","))
	default:
		log.Info("reload: configuration applied", "path", path, "capture_gap", res.Gap)
	}
}

func parseLevel(s string) slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(s)) // validated by the config loader
	return lv
}

func runCheckConfig(fs *flag.FlagSet, cf *configFlags, args []string, stdout io.Writer) error {
	path := cf.path
	if len(args) > 0 {
		configSet := false
		fs.Visit(func(f *flag.Flag) { configSet = configSet || f.Name == "config" })
		if configSet {
			return &exitCodeError{code: 2, err: errors.New("--config and FILE both name the file: give one")}
		}
		path = args[0]
	}
	cfg, _, err := loadConfig(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (version %d, %d drivers)\n", path, cfg.Version, len(cfg.Drivers))
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

func init() {
	register(subcommand{name: "log-level", summary: "show or change the running agent's log level",
		operands: "[LEVEL]", maxArgs: 1, complete: []string{"debug", "info", "warn", "error"},
		description: "LEVEL is debug, info, warn or error. The change takes effect at once and lasts\nuntil the agent restarts ([agent] log_level is the level at start).",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := addSocketFlags(fs)
			timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
			return func(ctx context.Context, args []string, stdout, _ io.Writer) error {
				set := ""
				if len(args) > 0 {
					if _, err := ctl.ParseLevel(args[0]); err != nil {
						return &usageError{err}
					}
					set = args[0]
				}
				socket, err := sf.path(fs)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(ctx, *timeout)
				defer cancel()
				level, err := ctl.LogLevel(ctx, socket, set)
				if errors.Is(err, ctl.ErrNotRunning) {
					return notRunning(socket)
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, level)
				return nil
			}
		}})
}

// Command tcu-agent is the in-vehicle edge agent: it reads vehicle state
// from CAN and GNSS, buffers it durably, publishes it over MQTT and executes
// remote commands safely. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a verb and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)

	verb := "run"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help" || a == "help" && len(args) == 1:
			usage(stdout)
			return 0
		case a == "--version" || a == "-version":
			args = args[1:]
			verb = "version"
		case a == "help":
			// help VERB: the verb's usage.
			if c, ok := subcommands[args[1]]; ok && len(args) == 2 {
				c.usage(stdout)
				return 0
			}
			fmt.Fprintf(stderr, "tcu-agent help: unknown verb %q\n", strings.Join(args[1:], " "))
			usage(stderr)
			return 2
		case a != "" && a[0] != '-':
			verb, args = a, args[1:]
		}
	}
	c, ok := subcommands[verb]
	if !ok {
		fmt.Fprintf(stderr, "tcu-agent: unknown verb %q\n", verb)
		usage(stderr)
		return 2
	}
	if err := c.dispatch(ctx, args, stdout, stderr); err != nil {
		if errors.Is(err, errSilentFailure) {
			return 1
		}
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "tcu-agent %s: %v\n\n", verb, err)
			c.usage(stderr)
			return 2
		}
		fmt.Fprintf(stderr, "tcu-agent %s: %v\n", verb, err)
		return exitCode(err)
	}
	return 0
}

// errSilentFailure is returned by verbs that already printed their problem.
var errSilentFailure = errors.New("failed")

// exitCodeError carries a specific exit code.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// exitCode maps an error to a process exit code: 78 (EX_CONFIG) for
// configuration errors so systemd does not restart on them, 1 otherwise.
func exitCode(err error) int {
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func init() {
	register(subcommand{name: "version", summary: "print the version", maxArgs: 0,
		setup: func(*flag.FlagSet) runFunc {
			return func(_ context.Context, _ []string, stdout, _ io.Writer) error {
				fmt.Fprintln(stdout, "tcu-agent", version)
				return nil
			}
		}})
}

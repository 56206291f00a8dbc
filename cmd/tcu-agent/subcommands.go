package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// A subcommand is one verb of the tcu-agent CLI ("run", "check-config",
// "dbc", ...). Each lives in its own cmd_<verb>.go file and registers itself
// from init. Its flags are defined once, by setup; the dispatcher, the
// usage text, the man page (`tcu-agent man`) and the bash completion
// (`tcu-agent completion bash`) are all generated from them.
type subcommand struct {
	name    string
	summary string
	// operands is the synopsis of the verb's operands ("", "[FILE]",
	// "FILE...", "LEVEL"); minArgs and maxArgs bound their number
	// (maxArgs < 0: unbounded). Any other count is a usage error (exit 2).
	operands         string
	minArgs, maxArgs int
	// description is the verb's longer explanation (help and man page).
	description string
	// complete is what bash completion offers for the operands: nil for
	// file names, or a fixed list of words.
	complete []string
	// setup defines the verb's flags on fs and returns the function that
	// runs the verb with them, given the operands. A returned error is
	// printed as "tcu-agent <verb>: <err>" and mapped to an exit code by
	// exitCode.
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs a verb after its flags were parsed; args are the operands.
type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var subcommands = map[string]subcommand{}

// register adds a verb; it panics on a duplicate (a programming error).
func register(c subcommand) {
	if _, dup := subcommands[c.name]; dup {
		panic("tcu-agent: subcommand registered twice: " + c.name)
	}
	subcommands[c.name] = c
}

// verbNames returns the verbs in alphabetical order.
func verbNames() []string {
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// flagSet returns c's flags, defined on a fresh set, and its runner.
func (c subcommand) flagSet() (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet("tcu-agent "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed by dispatch
	fs.Usage = func() {}
	r := c.setup(fs)
	return fs, r
}

// dispatch parses args with c's flags and runs it. -h/--help prints the
// verb's usage on stdout (exit 0); a bad flag or operand count is a
// usageError (exit 2, the problem and the usage on stderr).
func (c subcommand) dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, r := c.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(stdout)
			return nil
		}
		return &usageError{err}
	}
	if n := fs.NArg(); n < c.minArgs || (c.maxArgs >= 0 && n > c.maxArgs) {
		switch {
		case c.maxArgs == 0:
			return &usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
		case c.maxArgs >= 0 && n > c.maxArgs:
			return &usageError{fmt.Errorf("too many arguments: %q", fs.Args())}
		default:
			return &usageError{fmt.Errorf("missing %s", c.operands)}
		}
	}
	return r(ctx, fs.Args(), stdout, stderr)
}

// A usageError is a bad command line: exit 2, the verb's usage on stderr.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usage prints the verb's synopsis, description and flags.
func (c subcommand) usage(w io.Writer) {
	fs, _ := c.flagSet()
	fmt.Fprintf(w, "usage: %s\n\n%s.\n", c.synopsis(fs), upperFirst(c.summary))
	if c.description != "" {
		fmt.Fprintf(w, "\n%s\n", c.description)
	}
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nflags:")
		fs.VisitAll(func(f *flag.Flag) {
			name, help := flagDoc(f)
			fmt.Fprintf(w, "  %s\n      %s\n", name, help)
		})
		fmt.Fprintln(w, "  -h, --help\n      show this help")
	}
}

// synopsis is "tcu-agent VERB [flags] OPERANDS".
func (c subcommand) synopsis(fs *flag.FlagSet) string {
	syn := "tcu-agent " + c.name
	if hasFlags(fs) {
		syn += " [flags]"
	}
	if c.operands != "" {
		syn += " " + c.operands
	}
	return syn
}

// flagDoc returns "--name VALUE" and the help text (with the default) of f.
func flagDoc(f *flag.Flag) (name, help string) {
	arg, help := flag.UnquoteUsage(f)
	name = "--" + f.Name
	if arg != "" {
		name += " " + strings.ToUpper(arg)
	}
	if def := f.DefValue; def != "" && def != "false" && def != "0" {
		help += " (default " + def + ")"
	}
	return name, help
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// usage prints the program's usage: the verbs and the global flags.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tcu-agent [VERB] [flags] [ARGS]")
	fmt.Fprintln(w, "       tcu-agent --help | --version")
	fmt.Fprintln(w, "\nIn-vehicle edge agent: CAN and GNSS capture, store-and-forward, MQTT, remote commands.")
	fmt.Fprintln(w, "Without a verb (or with only flags) it runs the agent (verb run).")
	fmt.Fprintln(w, "\nverbs:")
	for _, n := range verbNames() {
		fmt.Fprintf(w, "  %-14s %s\n", n, subcommands[n].summary)
	}
	fmt.Fprintln(w, "\n`tcu-agent VERB --help` shows a verb's flags; `man tcu-agent` all of them.")
}

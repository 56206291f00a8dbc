package main

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// A subcommand is one verb of the tcu-agent CLI ("run", "check-config",
// "dbc", ...). Each lives in its own cmd_<verb>.go file and registers itself
// from init.
type subcommand struct {
	name    string
	summary string
	// run executes the verb. args excludes the verb itself. A returned
	// error is printed as "tcu-agent <verb>: <err>" and mapped to an exit
	// code by exitCode.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]subcommand{}

// register adds a verb; it panics on a duplicate (a programming error).
func register(c subcommand) {
	if _, dup := subcommands[c.name]; dup {
		panic("tcu-agent: subcommand registered twice: " + c.name)
	}
	subcommands[c.name] = c
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tcu-agent [verb] [flags]")
	fmt.Fprintln(w, "\nverbs:")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, subcommands[n].summary)
	}
}

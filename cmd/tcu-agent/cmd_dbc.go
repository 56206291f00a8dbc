package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

func init() {
	register(subcommand{name: "dbc", summary: "load DBC files as the agent would and report",
		operands: "FILE...", minArgs: 1, maxArgs: -1,
		description: "Prints each file's messages and signals (unless --brief) and every construct the\nloader skipped or adjusted, as file:line. Exits 1 when a file is unusable.",
		setup: func(fs *flag.FlagSet) runFunc {
			brief := fs.Bool("brief", false, "print only a summary and the skipped constructs")
			return func(ctx context.Context, args []string, stdout, _ io.Writer) error {
				return runDBC(ctx, args, *brief, stdout)
			}
		}})
}

// runDBC loads each DBC file named in args with the agent's tolerant
// loader, prints its messages and signals (unless brief) and then every
// skipped construct as file:line. It fails when a file is unusable.
func runDBC(ctx context.Context, args []string, brief bool, stdout io.Writer) error {
	var bad []string
	for _, path := range args {
		if err := ctx.Err(); err != nil {
			return err
		}
		db, warns, err := dbc.Load(path)
		if err != nil {
			fmt.Fprintf(stdout, "%s: UNUSABLE: %v\n", path, err)
			bad = append(bad, path)
		} else {
			printDatabase(stdout, path, db, len(warns), brief)
		}
		if len(warns) > 0 {
			fmt.Fprintf(stdout, "%s: %d skipped or adjusted constructs:\n", path, len(warns))
			for _, w := range warns {
				fmt.Fprintf(stdout, "  %s\n", w)
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d files unusable: %s", len(bad), len(args), strings.Join(bad, ", "))
	}
	return nil
}

func printDatabase(w io.Writer, path string, db *dbc.Database, nwarn int, brief bool) {
	nsig := 0
	for _, m := range db.Messages {
		nsig += len(m.Signals)
	}
	fmt.Fprintf(w, "%s: usable: %d messages, %d signals, %d warnings\n", path, len(db.Messages), nsig, nwarn)
	if brief {
		return
	}
	for _, m := range db.Messages {
		kind := "std"
		if m.Extended {
			kind = "ext"
		}
		fmt.Fprintf(w, "  BO_ %#x %s %s len=%d sender=%s", m.ID, kind, m.Name, m.Length, m.Sender)
		if m.FD {
			fmt.Fprint(w, " fd")
		}
		if m.CycleTime > 0 {
			fmt.Fprintf(w, " cycle=%s", m.CycleTime)
		}
		fmt.Fprintln(w)
		for _, s := range m.Signals {
			fmt.Fprintf(w, "    SG_ %s\n", describeSignal(s))
		}
	}
}

func describeSignal(s *dbc.Signal) string {
	var b strings.Builder
	order, sign := "le", "unsigned"
	if s.BigEndian {
		order = "be"
	}
	if s.Signed {
		sign = "signed"
	}
	fmt.Fprintf(&b, "%s %d|%d %s %s (%g,%g) [%g|%g] %q", s.Name, s.Start, s.Size, order, sign,
		s.Scale, s.Offset, s.Min, s.Max, s.Unit)
	switch s.Type {
	case dbc.Float32:
		b.WriteString(" float32")
	case dbc.Float64:
		b.WriteString(" float64")
	}
	if s.IsMultiplexer {
		b.WriteString(" multiplexer")
	}
	if s.MuxValue >= 0 {
		fmt.Fprintf(&b, " mux=%s%v", s.MuxParent, s.MuxRanges)
	}
	if len(s.Values) > 0 {
		fmt.Fprintf(&b, " values=%d", len(s.Values))
	}
	return b.String()
}

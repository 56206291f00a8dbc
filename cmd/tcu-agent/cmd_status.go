package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

func init() {
	register(subcommand{name: "status", summary: "show the running agent's status",
		description: "Exit status: 0 healthy, 1 a critical loop is hung, 3 the agent is not running.",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := addSocketFlags(fs)
			asJSON := fs.Bool("json", false, "print the raw status document as JSON")
			timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
			return func(ctx context.Context, _ []string, stdout, _ io.Writer) error {
				return runStatus(ctx, fs, sf, *asJSON, *timeout, stdout)
			}
		}})
}

// socketFlags are --socket and --config of the verbs that talk to the
// running agent over its control socket.
type socketFlags struct {
	socket, config string
}

func addSocketFlags(fs *flag.FlagSet) *socketFlags {
	sf := &socketFlags{}
	fs.StringVar(&sf.socket, "socket", ctl.DefaultSocket, "control `socket` of the running agent ([health] ctl_socket)")
	fs.StringVar(&sf.config, "config", "", "read the control socket from this config `file`'s [health] ctl_socket")
	return sf
}

// path returns the control socket to use: --socket, or the one named by
// the --config file.
func (sf *socketFlags) path(fs *flag.FlagSet) (string, error) {
	if sf.config == "" {
		return sf.socket, nil
	}
	socketSet := false
	fs.Visit(func(f *flag.Flag) { socketSet = socketSet || f.Name == "socket" })
	if socketSet {
		return "", &exitCodeError{code: 2, err: errors.New("--config and --socket both name the socket: give one")}
	}
	cfg, _, err := loadConfig(sf.config)
	if err != nil {
		return "", err
	}
	return cfg.Health.CtlSocket, nil
}

// runStatus queries the control socket and prints the status as a table
// (or JSON with --json). Exit codes: 0 healthy, 1 a critical loop is hung,
// 3 the agent is not running (as LSB init scripts' status).
func runStatus(ctx context.Context, fs *flag.FlagSet, sf *socketFlags, asJSON bool, timeout time.Duration, stdout io.Writer) error {
	socket, err := sf.path(fs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := ctl.Query(ctx, socket)
	if errors.Is(err, ctl.ErrNotRunning) {
		return notRunning(socket)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
	} else {
		printStatus(stdout, st)
	}
	if !st.Health.OK {
		return errSilentFailure
	}
	return nil
}

// notRunning is the error (exit 3) when nothing serves the socket.
func notRunning(socket string) error {
	return &exitCodeError{code: 3, err: fmt.Errorf("%w: nothing listens on %s (systemctl status tcu-agent)", ctl.ErrNotRunning, socket)}
}

// printStatus renders st as aligned, human-readable sections.
func printStatus(w io.Writer, st ctl.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer func() { _ = tw.Flush() }()
	fmt.Fprintf(tw, "agent\t%s, up %s\n", st.Version, since(st.Time, st.StartedAt))
	fmt.Fprintf(tw, "health\t%s\n", healthLine(st.Health))
	fmt.Fprintf(tw, "identity\t%s\n", identityLine(st.Identity, st.Time))
	c := st.Connection
	conn := c.State
	if c.Endpoint != "" {
		conn += " " + c.Endpoint
	}
	if !c.Since.IsZero() {
		conn += " for " + since(st.Time, c.Since)
	}
	fmt.Fprintf(tw, "connection\t%s (%d reconnects, %d published, %d acked)\n", conn, c.Reconnects, c.Published, c.Acked)
	if c.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", c.LastError)
	}
	if p := st.Profile; p != nil {
		fmt.Fprintf(tw, "profile\t%s for %s (%s)\n", p.Name, since(st.Time, p.Since), p.Reason)
		if p.TelemetryIntervalSeconds > 0 {
			fmt.Fprintf(tw, "telemetry\tevery %s\n", seconds(p.TelemetryIntervalSeconds))
		}
		bat := p.Battery
		if p.Voltage != nil {
			bat += fmt.Sprintf(" at %.2f V", *p.Voltage)
		}
		if p.BatteryReason != "" {
			bat += " (" + p.BatteryReason + ")"
		}
		if len(p.Publish) > 0 {
			bat += "; publishing only " + strings.Join(p.Publish, ", ") + ", the rest buffered"
		}
		fmt.Fprintf(tw, "battery\t%s\n", bat)
	}
	fmt.Fprintf(tw, "oldest unsent\t%s\n", seconds(st.OldestUnsentSeconds))
	if lc := st.LastCommand; lc != nil {
		line := fmt.Sprintf("%s %s %s, %s ago", lc.Name, lc.ID, lc.Status, since(st.Time, lc.At))
		if lc.Reason != "" {
			line += " (" + lc.Reason + ")"
		}
		fmt.Fprintf(tw, "last command\t%s\n", line)
	} else {
		fmt.Fprintf(tw, "last command\tnone\n")
	}
	cc := st.Commands
	fmt.Fprintf(tw, "commands\t%d succeeded, %d failed, %d rejected, %d timed out; %d bus wake-ups\n", cc.Succeeded, cc.Failed, cc.Rejected, cc.TimedOut, cc.Wakes)
	if cb := st.Config; cb != nil {
		fmt.Fprintf(tw, "config\t%s\n", configLine(cb))
	}

	fmt.Fprintf(tw, "\nQUEUE\tRECORDS\tBYTES\tOLDEST\tEVICTED\tSHED\tEXPIRED\n")
	for _, q := range st.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\n", q.Class, q.Records, q.Bytes, seconds(q.OldestUnsentSeconds), q.Evicted, q.Shed, q.Expired)
	}
	s := st.Store
	idle := ""
	switch {
	case s.Closed:
		idle = fmt.Sprintf(", closed while idle (%d reopens)", s.Reopens)
	case s.Reopens > 0:
		idle = fmt.Sprintf(", open (%d reopens after idle)", s.Reopens)
	}
	fmt.Fprintf(tw, "store\t%d leased, %d appends, %d syncs, %d corrupt, %d torn at start, %.1f MB on disk%s\n", s.Leased, s.Appends, s.Syncs, s.Corrupt, s.Torn, float64(s.DiskBytes)/1e6, idle)
	fmt.Fprintf(tw, "\nBUS\tDRIVER\tSTATE\tFRAMES/S\tFRAMES\tDECODE ERR\tKERNEL DROPS\tERRORS\tLAST ERROR\n")
	for _, b := range st.Buses {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%s\n", b.Name, dash(b.Driver), b.State,
			b.FramesPerSec, b.Frames, b.DecodeErrors, b.KernelDrops, b.Errors, dash(b.LastError))
	}
	if len(st.Health.Loops) > 0 {
		fmt.Fprintf(tw, "\nLOOP\tCRITICAL\tLAST BEAT\n")
		for _, l := range st.Health.Loops {
			fmt.Fprintf(tw, "%s\t%t\t%s ago\n", l.Name, l.Critical, seconds(l.AgeSeconds))
		}
	}
}

func healthLine(h ctl.Health) string {
	if h.OK {
		return "ok" + suffix(h.Why)
	}
	return "UNHEALTHY" + suffix(h.Why)
}

func suffix(why string) string {
	if why == "" || why == "ok" {
		return ""
	}
	return " (" + why + ")"
}

func identityLine(id ctl.Identity, now time.Time) string {
	if id.Thing == "" {
		if id.VIN != "" {
			return "not provisioned (" + dash(id.Source) + ", VIN " + id.VIN + ")"
		}
		return "not provisioned (" + dash(id.Source) + ")"
	}
	s := id.Thing + " (" + dash(id.Source)
	if !id.CertExpiry.IsZero() {
		left := id.CertExpiry.Sub(now)
		if left < 0 {
			s += ", certificate EXPIRED " + id.CertExpiry.UTC().Format(time.DateOnly)
		} else {
			s += ", certificate expires " + id.CertExpiry.UTC().Format(time.DateOnly) + ", in " + strconv.Itoa(int(left.Hours()/24)) + "d"
		}
	}
	if id.VIN != "" {
		s += ", VIN " + id.VIN
	}
	return s + ")"
}

// since formats now-t rounded to the second.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// configLine describes the active configuration bundle.
func configLine(cb *ctl.ConfigBundle) string {
	line := cb.Version
	if cb.SHA256 != "" {
		line += " sha256 " + cb.SHA256[:min(12, len(cb.SHA256))]
	}
	if cb.Trial {
		line += " (on trial)"
	}
	if j := cb.LastJob; j != nil {
		line += fmt.Sprintf("; last job %s %s", j.ID, j.Status)
		if j.Reason != "" {
			line += " (" + j.Reason + ")"
		}
	}
	return line
}

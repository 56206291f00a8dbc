package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// consoleVerbs maps console words to command names.
var consoleVerbs = map[string]string{
	"lock":       "door.lock",
	"unlock":     "door.unlock",
	"immobilize": "ignition.disable",
	"mobilize":   "ignition.enable",
}

func serve(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1883", "plain TCP listen address (empty: none)")
	tlsAddr := fs.String("tls-addr", "", "mutual-TLS listen address (empty: none)")
	caDir := fs.String("ca-dir", "", "directory of the test CA (created if absent); needed with --tls-addr")
	quiet := fs.Bool("quiet", false, "do not print telemetry batches")
	estAddr := fs.String("est-addr", "", "EST (RFC 7030) HTTPS listen address (empty: none)")
	dir := fs.String("dir", "", "dev cloud directory for jobs: fleet key, file server CA and files (default: --ca-dir, else a temporary directory removed at exit)")
	filesAddr := fs.String("files-addr", "127.0.0.1:0", "HTTPS file server listen address for job bundles (empty: none)")
	urlValidity := fs.Duration("url-validity", time.Hour, "how long a presigned bundle URL stays valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tlsAddr != "" && *caDir == "" {
		return errors.New("--tls-addr needs --ca-dir")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cloud, err := devcloud.New(devcloud.Options{Addr: *addr, TLSAddr: *tlsAddr, CADir: *caDir,
		Console: stdout, QuietTelemetry: *quiet, Logger: log})
	if err != nil {
		return err
	}
	defer func() { _ = cloud.Close() }()
	stopProv, err := startFleetProvisioning(cloud, *estAddr, log)
	if err != nil {
		return err
	}
	defer stopProv()
	jobsLine, stopJobs, err := serveJobs(ctx, cloud, *dir, *caDir, *filesAddr, *urlValidity, log)
	if err != nil {
		return err
	}
	defer stopJobs()
	if err := cloud.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tcu-devcloud listening: plain %s", cloud.Addr())
	if *tlsAddr != "" {
		fmt.Fprintf(stdout, ", mtls %s (CA %s)", cloud.TLSAddr(), *caDir)
	}
	if *estAddr != "" {
		fmt.Fprintf(stdout, ", est https://%s/.well-known/est", *estAddr)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, jobsLine)
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintln(stdout, "type: lock|unlock|immobilize|mobilize THING")
		go readConsole(ctx, cloud, stdin, stdout) // ends at EOF; the process exits with ctx
	}
	<-ctx.Done()
	return nil
}

// serveJobs prepares the dev cloud directory (fleet key, file server)
// and returns the line to print and a cleanup func.
func serveJobs(ctx context.Context, cloud *devcloud.Cloud, dir, caDir, filesAddr string, validity time.Duration, log *slog.Logger) (string, func(), error) {
	cleanup := func() {}
	if dir == "" {
		dir = caDir
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tcu-devcloud-")
		if err != nil {
			return "", nil, err
		}
		dir, cleanup = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	key, err := devcloud.LoadOrCreateFleetKey(dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	pub := devcloud.PublicKeyBase64(key)
	line := fmt.Sprintf("jobs: dir %s, fleet public key %s (%s)", dir, pub, filepath.Join(dir, devcloud.FleetPubFile))
	var files *devcloud.FileServer
	if filesAddr != "" {
		files, err = devcloud.NewFileServer(ctx, devcloud.FileServerOptions{Dir: dir, Addr: filesAddr, Validity: validity, Logger: log})
		if err != nil {
			cleanup()
			return "", nil, err
		}
		line += fmt.Sprintf(", files %s (CA %s)", files.URL(), files.CAFile())
		prev := cleanup
		cleanup = func() { _ = files.Close(); prev() }
	}
	cloud.ServeJobs(dir, files, pub)
	return line, cleanup, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readConsole reads "VERB THING" lines and sends the commands.
func readConsole(ctx context.Context, cloud *devcloud.Cloud, in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		name, ok := consoleVerbs[f[0]]
		if !ok || len(f) != 2 {
			fmt.Fprintln(out, "usage: lock|unlock|immobilize|mobilize THING")
			continue
		}
		if _, err := cloud.SendCommand(ctx, f[1], name, nil); err != nil {
			fmt.Fprintf(out, "send %s to %s: %v\n", name, f[1], err)
			continue
		}
		fmt.Fprintf(out, "sent %s to %s\n", name, f[1]) // responses are printed by the console
	}
}

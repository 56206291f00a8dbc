// Command tcu-devcloud is a local stand-in for AWS IoT Core: an MQTT
// broker with mutual TLS and a test CA, per-certificate topic
// permissions, AWS-like limits and a console (verb serve), and a command
// sender (verb send), the AWS IoT Jobs API with a file server and a job
// pusher (verb job) and a certificate minting helper (verb mint). See
// package devcloud.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a verb and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdin, stdout, stderr)
	case "send":
		err = send(ctx, args[1:], stdout, stderr)
	case "job":
		err = job(ctx, args[1:], stdout, stderr)
	case "mint":
		err = mint(args[1:], stdout, stderr)
	case "decode":
		err = decode(args[1:], stdin, stdout)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "version", "--version", "-version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "tcu-devcloud version: unexpected argument %q\n", args[1])
			return 2
		}
		fmt.Fprintln(stdout, "tcu-devcloud", version)
		return 0
	default:
		fmt.Fprintf(stderr, "tcu-devcloud: unknown verb %q\n", args[0])
		usage(stderr)
		return 2
	}
	var ec exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return int(ec)
	}
	fmt.Fprintf(stderr, "tcu-devcloud %s: %v\n", args[0], err)
	return 1
}

// parseFlags parses a verb's flags: -h/--help exits 0 (flag prints the
// usage), a bad flag or a stray argument exits 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError(0)
		}
		return exitError(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitError(2)
	}
	return nil
}

// exitError is a verb's exit code after it printed its own result.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: tcu-devcloud <verb> [flags]
       tcu-devcloud --help | --version

verbs:
  serve  run the broker and console
         --addr 127.0.0.1:1883 [--tls-addr 127.0.0.1:8883 --ca-dir DIR] [--est-addr ADDR] [--quiet]
         [--dir DIR] [--files-addr 127.0.0.1:0] [--url-validity 1h]
         serves the AWS IoT Jobs device API and an HTTPS file server (CA in DIR/files-ca.pem,
         dev fleet key in DIR/fleet-key.pem, its public key in DIR/fleet-key.pub)
         on a terminal, type: lock THING | unlock THING | immobilize THING | mobilize THING
  send   send one command and wait for its final response
         --addr 127.0.0.1:1883 --thing THING --name door.lock [--timeout 15s]
         exit 0 on SUCCEEDED, 1 otherwise
  job    queue and inspect configuration jobs on a running dev cloud
         push BUNDLE_DIR_OR_TAR --thing THING [--version V] [--key PRIVATE_KEY] [--wait 2m]
         list --thing THING | describe --thing THING [--job ID] | cancel --job ID
         each takes --addr 127.0.0.1:1883; see tcu-devcloud job push --help
  mint   issue a certificate from the test CA
         --ca-dir DIR (--thing NAME | --claim NAME) [--out DIR] [--valid 8760h]
  decode print a compact batch (docs/wire.md) as the JSON envelope
         FILE | -
`)
}

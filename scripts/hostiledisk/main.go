// Command hostiledisk is a hostile virtual disk for the buffer's power-cut
// test (docs/perf/powercut.md): an NBD server (fixed newstyle handshake,
// over a unix socket, what qemu's NBD client speaks) backed by an image
// file, with a volatile write cache that a power cut treats badly.
//
//	hostiledisk serve -socket S -image IMG [-mode M] [-seed N] [-log L] [-stats F]
//	hostiledisk replay -log L -base IMG -console STAMPED -out DIR [-cuts N [-pending P] | -points J,...] [-mode M] [-seed N]
//	hostiledisk stamp -o STAMPED     (stdin to stdout, and each line with its time to STAMPED)
//
// serve keeps every write since the last completed FLUSH (or FUA write)
// in memory, not in the image; reads see them; a FLUSH applies them in
// order and fsyncs the image. It serves one client at a time; the cut
// comes with SIGUSR1 (at the next FLUSH that has writes to make durable,
// left unanswered, or after -arm-wait), SIGTERM (at once), or when a
// client that wrote goes away without NBD_CMD_DISC (qemu killed): no
// request is answered after it, the
// pending writes persist as -mode says (nothing, prefix, subset, torn,
// mixed, none-lost; seeded by -seed, random and printed when 0), the
// image is fsynced and the server prints a "hostiledisk: cut ..." line
// and exits 0. SIGUSR2 writes -stats without cutting. -log records every
// write and flush with the host's CLOCK_MONOTONIC time for replay.
//
// replay rebuilds from such a log the disks of -cuts power cuts at
// random flush boundaries (see replay.go for why that is sound), each with
// the ACKED lines that must be on it, and prints one "CUT ..." line each.
//
// stamp copies stdin to stdout and writes each line, prefixed by its
// CLOCK_MONOTONIC time in nanoseconds, to -o.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostiledisk serve|replay|stamp [flags] (see the package doc)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = cmdServe(os.Args[2:])
	case "replay":
		err = cmdReplay(os.Args[2:])
	case "stamp":
		err = cmdStamp(os.Args[2:], os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: want serve, replay or stamp", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostiledisk: %v\n", err)
		os.Exit(1)
	}
}

// seedOrRandom returns s, or a random non-zero seed when s is 0.
func seedOrRandom(s uint64) uint64 {
	for s == 0 {
		s = rand.Uint64() //nolint:gosec // a seed for reproducible cuts, printed; not a secret
	}
	return s
}

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	socket := fs.String("socket", "", "unix socket to listen on")
	image := fs.String("image", "", "image file (its size is the disk's)")
	modeS := fs.String("mode", string(ModeNothing), "what persists of the pending writes at the cut: nothing|prefix|subset|torn|mixed|none-lost")
	seed := fs.Uint64("seed", 0, "seed of the cut (0: random, printed)")
	logPath := fs.String("log", "", "record every write and flush here (for replay)")
	armWait := fs.Duration("arm-wait", 2*time.Second, "SIGUSR1 cuts at the next FLUSH with writes pending, or after this long")
	statsPath := fs.String("stats", "", "write the counters (JSON) here at exit and on SIGUSR2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode, err := ParseMode(*modeS)
	if err != nil {
		return err
	}
	if *socket == "" || *image == "" {
		return errors.New("serve: -socket and -image are required")
	}
	*seed = seedOrRandom(*seed)
	img, err := os.OpenFile(*image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	var ol *opLog
	if *logPath != "" {
		if ol, err = createLog(*logPath); err != nil {
			return err
		}
	}
	d, err := NewDisk(img, ol)
	if err != nil {
		return err
	}
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }()
	fmt.Fprintf(os.Stderr, "hostiledisk: serving %s (%d bytes) on %s, mode=%s seed=%d\n", *image, d.Size(), *socket, mode, *seed)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	ended := make(chan error, 1)
	go func() { ended <- acceptLoop(ln, d) }()
	var cause string
	for cause == "" {
		select {
		case s := <-sig:
			if s == syscall.SIGUSR2 {
				if *statsPath != "" {
					if err := writeStats(*statsPath, d.Stats()); err != nil {
						fmt.Fprintf(os.Stderr, "hostiledisk: stats: %v\n", err)
					}
				}
				continue
			}
			cause = "signal " + s.String()
			if s == syscall.SIGUSR1 { // cut at the next flush, or after -arm-wait
				select {
				case <-d.Arm(mode, *seed):
				case err := <-ended:
					if err != nil {
						fmt.Fprintf(os.Stderr, "hostiledisk: serving ended while armed: %v\n", err)
					}
				case <-time.After(*armWait):
				}
			}
		case err := <-ended:
			cause = fmt.Sprintf("client gone (%v)", err)
		}
	}
	p, err := d.Cut(mode, *seed)
	st := d.Stats()
	fmt.Fprintf(os.Stderr, "hostiledisk: cut by %s: %s; disk: %d writes %d bytes, %d zeroes %d bytes, %d flushes, %d FUA\n",
		cause, p, st.Writes, st.BytesWritten, st.Zeroes, st.BytesZeroed, st.Flushes, st.FUA)
	if *statsPath != "" {
		if serr := writeStats(*statsPath, st); err == nil {
			err = serr
		}
	}
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	return err
}

// acceptLoop serves clients one after the other; it returns when one that
// wrote goes away without NBD_CMD_DISC (or the listener fails). One that
// never wrote (a guest that hung in its boot and was booted again) is no
// cut.
func acceptLoop(ln net.Listener, d *Disk) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		err = serveConn(c, d)
		_ = c.Close()
		if st := d.Stats(); err != nil && !errors.Is(err, errAbort) && st.Writes+st.Zeroes > 0 {
			return err
		}
	}
}

func cmdReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var c replayConfig
	fs.StringVar(&c.Log, "log", "", "write log of the run (serve -log)")
	fs.StringVar(&c.Base, "base", "", "the image as it was before the run")
	fs.StringVar(&c.Console, "console", "", "the run's console, stamped (hostiledisk stamp)")
	fs.StringVar(&c.Out, "out", "", "directory for cut-J.img and cut-J.acked")
	fs.IntVar(&c.Cuts, "cuts", 16, "number of cut points (distinct flush boundaries)")
	modeS := fs.String("mode", string(ModeMixed), "what persists of the pending writes at each cut")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed (0: random, printed)")
	fs.IntVar(&c.Pending, "pending", 0, "only cut points with exactly this many writes pending (0: any, two or more first)")
	points := fs.String("points", "", "comma-separated cut points (J of cut-J) instead of random ones")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.FieldsFunc(*points, func(r rune) bool { return r == ',' }) {
		j, err := strconv.Atoi(f)
		if err != nil || j < 0 {
			return fmt.Errorf("replay: -points %q: %q is not a cut point", *points, f)
		}
		c.Points = append(c.Points, j)
	}
	var err error
	if c.Mode, err = ParseMode(*modeS); err != nil {
		return err
	}
	if c.Log == "" || c.Base == "" || c.Console == "" || c.Out == "" {
		return errors.New("replay: -log, -base, -console and -out are required")
	}
	c.Seed = seedOrRandom(c.Seed)
	fmt.Fprintf(os.Stderr, "hostiledisk: replay mode=%s seed=%d\n", c.Mode, c.Seed)
	c.Manifest = os.Stdout
	return replay(c)
}

func cmdStamp(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("stamp", flag.ContinueOnError)
	path := fs.String("o", "", "stamped copy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Create(*path)
	if err != nil {
		return err
	}
	err = stamp(in, out, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// stamp copies lines of in to out as they come and to st with their
// CLOCK_MONOTONIC time of arrival, "NANOS LINE"; carriage returns are
// dropped.
func stamp(in io.Reader, out, st io.Writer) error {
	br := bufio.NewReaderSize(in, 1<<16)
	bs := bufio.NewWriterSize(st, 1<<16)
	for {
		line, err := br.ReadString('\n')
		if clean := strings.ReplaceAll(line, "\r", ""); clean != "" {
			t := monoNow()
			if _, werr := io.WriteString(out, clean); werr != nil {
				return werr
			}
			if !strings.HasSuffix(clean, "\n") {
				clean += "\n"
			}
			fmt.Fprintf(bs, "%d %s", t, clean)
		}
		if err == io.EOF {
			return bs.Flush()
		}
		if err != nil {
			return err
		}
	}
}

//go:build powercut && linux

package buffer_test

// The power-cut test (docs/perf/powercut.md). scripts/powercut.sh runs this
// binary inside a qemu VM twice per round, on the same virtio disk:
//
//	VMTEST_POWERCUT=write   appends until the host SIGKILLs the VM, printing
//	                        "ACKED <class> <seq> <index> <n> end" after each
//	                        Append/AppendBatch returned (n records, seqs
//	                        seq..seq+n-1, class-local indexes index..index+n-1)
//	VMTEST_POWERCUT=verify  reopens the store after the "reboot" and checks it
//	                        against the ACKED lines the host saw
//
// Only the public API of package buffer is used.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// Environment of the guest (vmexec passes VMTEST_* through).
const (
	pcModeEnv  = "VMTEST_POWERCUT"       // write | verify
	pcSyncEnv  = "VMTEST_POWERCUT_SYNC"  // always | group | none
	pcRunEnv   = "VMTEST_POWERCUT_RUN"   // run id written into every payload
	pcAckedEnv = "VMTEST_POWERCUT_ACKED" // verify: file of the ACKED lines the host saw
	pcMaxEnv   = "VMTEST_POWERCUT_MAX"   // write: stop after this many records (default 300000)
	pcDevEnv   = "VMTEST_POWERCUT_DEV"   // block device (default /dev/vda)
	pcOptsEnv  = "VMTEST_POWERCUT_MOUNT" // writer's mount options (e.g. nobarrier, to prove the test catches it)
	pcCutsEnv  = "VMTEST_POWERCUT_CUTS"  // verify: file of "DEV ACKEDFILE LABEL" lines, one store per disk (offline cuts)
	pcFSEnv    = "VMTEST_POWERCUT_FS"    // file system type to mount: ext4 (default) or f2fs
	pcIdleEnv  = "VMTEST_POWERCUT_IDLE"  // write: Options.IdleClose (a Go duration); the writers pause 0..3x it
)

const (
	pcModDir = "/diskmods" // scripts/vmtest/diskmods.sh
	pcMount  = "/mnt/powercut"
)

var pcCRC = crc32.MakeTable(crc32.Castagnoli)

// TestPowerCut is the guest side of scripts/powercut.sh; it skips unless
// VMTEST_POWERCUT is set.
func TestPowerCut(t *testing.T) {
	mode := os.Getenv(pcModeEnv)
	if mode == "" {
		t.Skip("power-cut guest mode: run by scripts/powercut.sh inside qemu")
	}
	// The host retries a boot that printed nothing: say we are here.
	fmt.Printf("GUEST %s\n", mode)
	run, err := strconv.ParseUint(os.Getenv(pcRunEnv), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", pcRunEnv, err)
	}
	pcLoadModules(t)
	dev := os.Getenv(pcDevEnv)
	if dev == "" {
		dev = "/dev/vda"
	}
	switch {
	case mode == "write":
		if err := pcMountDisk(t, dev, pcMount, os.Getenv(pcOptsEnv), ""); err != nil {
			t.Fatal(err)
		}
		pcWrite(t, pcOptions(pcMount), run, pcIdle(t))
	case mode == "verify" && os.Getenv(pcCutsEnv) != "":
		pcVerifyCuts(t, run)
	case mode == "verify":
		// Live cuts: the MOUNTFAIL line tells the host to repair the
		// disk (e2fsck -fy / fsck.f2fs -f -y) and boot this again
		// (docs/perf/powercut.md); this boot fails.
		if err := pcMountDisk(t, dev, pcMount, "", ""); err != nil {
			fmt.Println(pcMountFailLine("", dev, err))
			t.Fatal(err)
		}
		pcVerify(t, pcOptions(pcMount), run, os.Getenv(pcAckedEnv), pcMount, "")
	default:
		t.Fatalf("%s=%q: want write or verify", pcModeEnv, mode)
	}
}

// pcOptions are the queue's options with its store under mnt.
func pcOptions(mnt string) buffer.Options {
	o := buffer.DefaultOptions(filepath.Join(mnt, "queue"))
	o.Sync = buffer.SyncPolicy(os.Getenv(pcSyncEnv))
	o.LiveWindow = -1 // pure oldest-first within a class: the verifier checks that order
	o.MaxBytes = 1 << 30
	o.GCInterval = 500 * time.Millisecond // range drops and value-log GC run between cuts
	return o
}

// pcIdle is the writer's idle mode (VMTEST_POWERCUT_IDLE): the queue's
// IdleClose, and the scale of the pauses between appends; 0 = off.
func pcIdle(t *testing.T) time.Duration {
	s := os.Getenv(pcIdleEnv)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration (%v)", pcIdleEnv, s, err)
	}
	return d
}

// pcPause sleeps a random 0..3x idle (idle mode: so that the store is
// left unused for IdleClose now and then, closes and reopens).
func pcPause(r *rand.Rand, idle time.Duration) {
	if idle > 0 {
		time.Sleep(time.Duration(r.Int64N(int64(3 * idle))))
	}
}

// pcIdleHandler is the writer's logger in idle mode. It prints an IDLE
// line for each step of an idle close and of a reopen, so that the host
// can tell (from the lines' arrival times, docs/perf/powercut.md) which
// cuts landed in one:
//
//	IDLE close-begin     Badger's Close started (memtable flush, MANIFEST, WAL removal)
//	IDLE closed took=D   the queue's idle close returned
//	IDLE open-tables     a (re)open has opened the MANIFEST, the WAL and the tables
//	IDLE open-done       ... and set its read timestamp (the value log opens next)
//
// and the queue's warnings and errors as LOG lines. Lines are printed
// under mu, as the writers' ACKED lines, to w (nil: stdout).
type pcIdleHandler struct {
	mu *sync.Mutex
	w  io.Writer
}

func (pcIdleHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h pcIdleHandler) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h pcIdleHandler) WithGroup(string) slog.Handler          { return h }

func (h pcIdleHandler) Handle(_ context.Context, r slog.Record) error {
	var line string
	attrs := func() string {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
			return true
		})
		return b.String()
	}
	switch {
	case r.Message == "badger log":
		var msg string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "badger" {
				msg = a.Value.String()
			}
			return true
		})
		switch {
		case strings.HasPrefix(msg, "Closing database"):
			line = "IDLE close-begin"
		case strings.HasPrefix(msg, "All ") && strings.Contains(msg, "tables opened"):
			line = "IDLE open-tables"
		case strings.HasPrefix(msg, "Set nextTxnTs"):
			line = "IDLE open-done"
		case r.Level >= slog.LevelWarn:
			line = "LOG " + r.Level.String() + " badger: " + strings.TrimSpace(msg)
		}
	case r.Message == "queue store closed while idle":
		line = "IDLE closed" + attrs()
	case r.Level >= slog.LevelWarn:
		line = "LOG " + r.Level.String() + " " + r.Message + attrs()
	}
	if line == "" {
		return nil
	}
	w := h.w
	if w == nil {
		w = os.Stdout
	}
	h.mu.Lock()
	_, err := io.WriteString(w, strings.ReplaceAll(line, "\n", " ")+"\n")
	h.mu.Unlock()
	return err
}

// TestPcIdleHandler runs a real queue through an idle close and a reopen
// and checks the IDLE lines the host classifies cuts by (Badger's and the
// queue's log messages they hang on could change under them).
func TestPcIdleHandler(t *testing.T) {
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	o := buffer.DefaultOptions(t.TempDir())
	o.IdleClose = 5 * time.Millisecond
	o.Logger = slog.New(pcIdleHandler{&mu, &out})
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := q.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()
	if _, err := q.Append(ctx, buffer.ClassTelemetry, []byte("a")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !q.Stats().StoreClosed; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the store did not close while idle")
		}
	}
	if _, err := q.Append(ctx, buffer.ClassTelemetry, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if n := q.Stats().StoreOpens; n < 1 {
		t.Fatalf("StoreOpens = %d after the reopen", n)
	}
	mu.Lock()
	var got []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "IDLE" {
			got = append(got, f[1])
		}
	}
	mu.Unlock()
	want := []string{"open-tables", "open-done", "close-begin", "closed", "open-tables", "open-done"}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("IDLE lines %q, want %q first", got, want)
	}
}

// pcVerifyCuts verifies one store per disk (scripts/powercut.sh with
// POWERCUT_DISK=replay: each disk is an offline cut of one writer run),
// each in a subtest, so that one failure does not hide the others.
func pcVerifyCuts(t *testing.T, run uint64) {
	b, err := os.ReadFile(os.Getenv(pcCutsEnv))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("%s: line %q: want DEV ACKEDFILE LABEL", pcCutsEnv, line)
		}
		t.Run(f[2], func(t *testing.T) {
			mnt := fmt.Sprintf("%s-%d", pcMount, i)
			if err := pcMountDisk(t, f[0], mnt, "", f[2]); err != nil {
				// Not this test's verdict: the host runs e2fsck on a
				// copy of the image and verifies that in another boot
				// (scripts/powercut.sh); it fails the cut if no
				// verdict follows.
				fmt.Println(pcMountFailLine(f[2], f[0], err))
				return
			}
			pcVerify(t, pcOptions(mnt), run, f[1], mnt, f[2])
		})
	}
}

// pcLoadModules loads the virtio and file-system modules.
func pcLoadModules(t *testing.T) {
	order, err := os.ReadFile(filepath.Join(pcModDir, "order"))
	if err != nil {
		t.Fatalf("disk modules (scripts/vmtest/diskmods.sh): %v", err)
	}
	for _, m := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(pcModDir, m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("load module %s: %v", m, err)
		}
	}
}

// pcFSType is the type of the file system on the disks: VMTEST_POWERCUT_FS,
// ext4 by default.
func pcFSType() string {
	if fs := os.Getenv(pcFSEnv); fs != "" {
		return fs
	}
	return "ext4"
}

// pcMountDisk waits for dev and mounts its file system (pcFSType) on mnt
// with opts (the image's default mount options apply too: ext4's
// data=journal is set there by tune2fs). A failed mount prints the
// kernel's log (KERNEL lines, tagged cut=LABEL with offline cuts) and
// returns the error.
func pcMountDisk(t *testing.T, dev, mnt, opts, label string) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(dev); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no disk: %v", err)
		}
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, mnt, pcFSType(), 0, opts); err != nil {
		pcPrintKernelLog(label)
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	return nil
}

// pcPrintKernelLog prints the tail of the kernel's log as KERNEL lines
// (KERNEL cut=LABEL with offline cuts).
func pcPrintKernelLog(label string) {
	tag := "KERNEL "
	if label != "" {
		tag += "cut=" + label + " "
	}
	fmt.Printf("%s%s\n", tag, strings.ReplaceAll(pcKernelLog(2048), "\n", "\n"+tag))
}

// pcMountFailLine is the console line scripts/powercut.sh picks up when
// a disk does not mount: "MOUNTFAIL cut=LABEL dev=DEV errno=NAME" (NAME
// as x/sys/unix names it: EFSCORRUPTED for 117, i.e. EUCLEAN;
// "unknown" if err holds no errno), then the error's text.
func pcMountFailLine(label, dev string, err error) string {
	name := "unknown"
	var en unix.Errno
	if errors.As(err, &en) {
		if name = unix.ErrnoName(en); name == "" {
			name = fmt.Sprintf("errno%d", int(en))
		}
	}
	if label == "" {
		label = "-"
	}
	return fmt.Sprintf("MOUNTFAIL cut=%s dev=%s errno=%s %v", label, dev, name, err)
}

// pcPayload is the record data of index i of class c in run run: the
// header, filler derived from it and a CRC-32C of all that. Telemetry
// records are up to 2 KB, the others up to 463 bytes, so that a round
// writes a few memtables' worth (Badger flushes and compacts mid-round).
func pcPayload(run uint64, c buffer.Class, i uint64) []byte {
	n := 64 + int(i*37%400)
	if c == buffer.ClassTelemetry {
		n = 64 + int(i*37%1984)
	}
	b := make([]byte, 17, n+4)
	binary.BigEndian.PutUint64(b, run)
	b[8] = byte(c)
	binary.BigEndian.PutUint64(b[9:], i)
	r := rand.New(rand.NewPCG(run^uint64(c), i))
	for len(b) < n {
		b = append(b, byte(r.Uint32()))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, pcCRC))
}

// pcDecode checks a payload and returns its run, class and index.
func pcDecode(b []byte) (run uint64, c buffer.Class, i uint64, err error) {
	if len(b) < 21 {
		return 0, 0, 0, fmt.Errorf("short payload (%d bytes)", len(b))
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, pcCRC) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return 0, 0, 0, errors.New("payload checksum mismatch")
	}
	run, c, i = binary.BigEndian.Uint64(b), buffer.Class(b[8]), binary.BigEndian.Uint64(b[9:])
	if want := pcPayload(run, c, i); string(want) != string(b) {
		return 0, 0, 0, errors.New("payload differs from its regenerated content")
	}
	return run, c, i, nil
}

// pcWrite appends from one goroutine per class until killed (or until
// VMTEST_POWERCUT_MAX records, then it reports WRITER DONE and the host
// treats the round as not cut). Critical records go one Append at a
// time; the others in batches of 1..64. With idle > 0 (VMTEST_POWERCUT_IDLE)
// the store closes after idle unused (Options.IdleClose), the writers take
// turns, each pausing 0..3x idle after its append before the next writer's,
// the consumer waits max(100 ms, 0..3x idle) between leases, so that the store
// closes and reopens all the time, and the IDLE lines (pcIdleHandler) and
// the STATS lines' opens= say when and how often.
func pcWrite(t *testing.T, o buffer.Options, run uint64, idle time.Duration) {
	limit := uint64(300000)
	if s := os.Getenv(pcMaxEnv); s != "" {
		var err error
		if limit, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", pcMaxEnv, err)
		}
	}
	var mu sync.Mutex // one write(2) per line, lines not interleaved
	if idle > 0 {
		o.IdleClose = idle
		buffer.FixIdleClose(&o) // closes all the time: no stretching of the wait
		o.Logger = slog.New(pcIdleHandler{&mu, nil})
	}
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	st := q.Stats()
	fmt.Printf("WRITER sync=%s run=%d next_seq=%d records=%d degraded=%q idle_close=%v\n", o.Sync, run, st.NextSeq, st.Records, st.Degraded, o.IdleClose)
	var (
		writers sync.WaitGroup
		consume sync.WaitGroup
		stop    = make(chan struct{})
		fail    = make(chan error, buffer.NumClasses+1)
	)
	var turn *sync.Mutex // idle mode: one writer's append and pause at a time
	if idle > 0 {
		turn = new(sync.Mutex)
	}
	for c := range buffer.Class(buffer.NumClasses) {
		writers.Go(func() {
			if err := pcWriteClass(q, run, c, limit/buffer.NumClasses, idle, turn, &mu); err != nil {
				pcPrintError(&mu, "writer", err)
				fail <- err
			}
		})
	}
	consume.Go(func() {
		if err := pcConsume(q, stop, idle, &mu); err != nil {
			pcPrintError(&mu, "consumer", err)
			fail <- err
		}
	})
	consume.Go(func() { pcStats(q, stop, &mu) })
	writers.Wait()
	close(stop)
	consume.Wait()
	close(fail)
	for err := range fail {
		t.Error(err)
	}
	st = q.Stats()
	if err := q.Close(); err != nil {
		t.Error(err)
	}
	fmt.Printf("WRITER DONE (never cut) opens=%d\n", st.StoreOpens)
}

// pcWriteClass appends limit records of class c and prints ACKED lines.
// With idle > 0 it holds turn from each append to the end of the pause
// (0..3x idle) after it, so that the store sees the pauses: with the
// writers' appends interleaved, independent pauses would leave it unused
// for idle only rarely (measured: 7 closes in a 17 s run, most time
// spent in syncs).
func pcWriteClass(q *buffer.Queue, run uint64, c buffer.Class, limit uint64, idle time.Duration, turn, mu *sync.Mutex) error {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(run, uint64(c)))
	for i := uint64(0); i < limit; {
		if turn != nil {
			turn.Lock()
		}
		n := uint64(1)
		if c != buffer.ClassCritical {
			n = 1 + r.Uint64N(64)
		}
		data := make([][]byte, n)
		for k := range data {
			data[k] = pcPayload(run, c, i+uint64(k))
		}
		var seqs []uint64
		if n == 1 {
			s, err := q.Append(ctx, c, data[0])
			if err != nil {
				pcUnlock(turn)
				return fmt.Errorf("append %v %d: %w", c, i, err)
			}
			seqs = []uint64{s}
		} else {
			var err error
			if seqs, err = q.AppendBatch(ctx, c, data); err != nil {
				pcUnlock(turn)
				return fmt.Errorf("append batch %v %d+%d: %w", c, i, n, err)
			}
		}
		var b strings.Builder
		for _, r := range pcRuns(seqs) {
			fmt.Fprintf(&b, "ACKED %d %d %d %d end\n", c, seqs[r[0]], i+uint64(r[0]), r[1]-r[0])
		}
		mu.Lock()
		_, _ = os.Stdout.WriteString(b.String())
		mu.Unlock()
		i += n
		pcPause(r, idle)
		pcUnlock(turn)
	}
	return nil
}

// pcPrintError prints "WRITER ERROR <who>: <err>" at once: a run is
// normally cut before pcWrite reports its errors, and a consumer that
// stopped leaves its records leased (in idle mode the store then never
// closes again).
func pcPrintError(mu *sync.Mutex, who string, err error) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("WRITER ERROR %s: %s\n", who, strings.Join(strings.Fields(err.Error()), " "))
}

// pcUnlock unlocks turn if there is one.
func pcUnlock(turn *sync.Mutex) {
	if turn != nil {
		turn.Unlock()
	}
}

// pcRuns splits seqs into runs of consecutive seqs, as [start, end) index
// pairs.
func pcRuns(seqs []uint64) [][2]int {
	var runs [][2]int
	for k := 0; k < len(seqs); {
		j := k + 1
		for j < len(seqs) && seqs[j] == seqs[j-1]+1 {
			j++
		}
		runs = append(runs, [2]int{k, j})
		k = j
	}
	return runs
}

// pcConsume is the publisher: every 100 ms it leases up to 32 records (4
// in idle mode; the writers outpace it, so a backlog builds up) and acks
// them, or in one batch of eight releases them. Before each Ack it prints "ACKING
// <seq> <n> end" lines and drains the console (tcdrain), so the host has
// seen every seq that may be gone after the cut. With idle > 0 it waits
// max(100 ms, 0..3x idle) instead, so that a long IdleClose still finds
// the store unused now and then (a lease holds it open until the ack).
func pcConsume(q *buffer.Queue, stop <-chan struct{}, idle time.Duration, mu *sync.Mutex) error {
	const period = 100 * time.Millisecond
	tick := time.NewTimer(period)
	defer tick.Stop()
	r := rand.New(rand.NewPCG(uint64(idle), 0))
	batch := 32
	if idle > 0 {
		// The writers append far fewer records then (one at a time,
		// with pauses, and each close and reopen costs syncs): lease
		// fewer, so that a backlog still builds up for the verifier to
		// find (measured with 32: 17 of 593 acknowledged records left).
		batch = 4
	}
	for b := 0; ; b++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		wait := period
		if idle > 0 {
			wait = max(period, time.Duration(r.Int64N(int64(3*idle))))
		}
		tick.Reset(wait)
		recs, err := q.Lease(batch, 0)
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		seqs := make([]uint64, len(recs))
		for k, r := range recs {
			seqs[k] = r.Seq
		}
		slices.Sort(seqs)
		if len(seqs) == 0 {
			continue
		}
		if b%8 == 7 {
			q.Release(seqs...)
			continue
		}
		var sb strings.Builder
		for _, r := range pcRuns(seqs) {
			fmt.Fprintf(&sb, "ACKING %d %d end\n", seqs[r[0]], r[1]-r[0])
		}
		mu.Lock()
		_, err = os.Stdout.WriteString(sb.String())
		if err == nil {
			err = unix.IoctlSetInt(int(os.Stdout.Fd()), unix.TCSBRK, 1) // tcdrain(3)
		}
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("print acking: %w", err)
		}
		if err := q.Ack(seqs...); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}

// pcStats prints a STATS line every second (the host shows the last one
// before the cut).
func pcStats(q *buffer.Queue, stop <-chan struct{}, mu *sync.Mutex) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st := q.Stats()
		line := fmt.Sprintf("STATS records=%d bytes=%d appends=%d syncs=%d disk_bytes=%d opens=%d closed=%v\n", st.Records, st.Bytes, st.Appends, st.Syncs, st.DiskBytes, st.StoreOpens, st.StoreClosed)
		mu.Lock()
		_, _ = os.Stdout.WriteString(line)
		mu.Unlock()
	}
}

// pcKernelLog returns the last n bytes of the kernel's log (why a mount
// failed: the console is quiet).
func pcKernelLog(n int) string {
	buf := make([]byte, 1<<17)
	k, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return fmt.Sprintf("(kernel log: %v)", err)
	}
	return strings.TrimSpace(string(buf[max(0, k-n):k]))
}

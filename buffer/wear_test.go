//go:build wear && linux

package buffer_test

// The wear benchmark's guest side (docs/perf/buffer.md "Flash wear at the
// block device"). scripts/wear.sh runs this binary inside the qemu VM of
// docs/vmtest.md with an ext4 file system on a virtio disk and reads the
// "WEAR" lines it prints: one per cell (sync policy x rate x online /
// offline), with the bytes and requests that reached the block device
// (/sys/block/<dev>/stat: sectors written x 512, write and flush requests)
// while the cell ran. Everything the cell caused is counted: Badger's
// files, the ext4 journal and metadata, at the file system's 4 KiB block
// granularity. The queue is the real one (real Badger, the public API).
//
// A cell: one producer, shaped like the agent's telemetry pipeline
// (agent/telemetry: records arrive at a fixed rate, and every AppendBatch
// carries all the records that arrived while the previous one was
// blocked), appends 200-byte telemetry records for VMTEST_WEAR_SECONDS.
// Online, a consumer leases and acknowledges like the uplink; offline,
// nothing is acknowledged. Then the dirty pages are written back (sync(2),
// so that `none` is charged for what the kernel would write back later),
// and online cells run one GC pass (flush, compaction, value-log GC) as
// the queue does every GCInterval (1 min). The counters are read before
// and after that, after a sync(2) that settles the previous cell.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	wearEnv         = "VMTEST_WEAR"          // "1": run
	wearPoliciesEnv = "VMTEST_WEAR_POLICIES" // default "always group none"
	wearRatesEnv    = "VMTEST_WEAR_RATES"    // records/s, default "20 200 2000"
	wearModesEnv    = "VMTEST_WEAR_MODES"    // default "online offline"
	wearSecondsEnv  = "VMTEST_WEAR_SECONDS"  // per cell, default 60
	wearSizeEnv     = "VMTEST_WEAR_SIZE"     // record bytes, default 200
	wearWindowEnv   = "VMTEST_WEAR_WINDOW"   // GroupWindow, default: the package default
	wearMaxWinEnv   = "VMTEST_WEAR_MAX_WINDOW"
	wearFillEnv     = "VMTEST_WEAR_FILL"
	wearThreshEnv   = "VMTEST_WEAR_THRESHOLD" // value-log threshold, default: the package's
	wearDevEnv      = "VMTEST_WEAR_DEV"       // default /dev/vda
)

const (
	wearModDir = "/diskmods" // scripts/vmtest/diskmods.sh
	wearMount  = "/mnt/wear"
)

// TestWear is the guest side of scripts/wear.sh; it skips unless
// VMTEST_WEAR is set.
func TestWear(t *testing.T) {
	if os.Getenv(wearEnv) == "" {
		t.Skip("wear benchmark guest: run by scripts/wear.sh inside qemu")
	}
	dev := cmpOr(os.Getenv(wearDevEnv), "/dev/vda")
	wearMountDisk(t, dev)
	blk := filepath.Base(dev)
	secs := wearInt(t, wearSecondsEnv, 60)
	size := wearInt(t, wearSizeEnv, 200)
	// vmexec's boot watchdog looks for VMEXEC_BEGIN in its console log,
	// which it writes through a block-buffered `tr`: a payload that prints
	// little is taken for a hung boot after 300 s. Fill the buffer.
	fmt.Printf("WEARPAD %s\n", strings.Repeat(".", 8<<10))
	fmt.Printf("WEARINFO dev=%s seconds=%d size=%d window=%s max_window=%s fill=%s threshold=%s\n", dev, secs, size,
		cmpOr(os.Getenv(wearWindowEnv), "default"), cmpOr(os.Getenv(wearMaxWinEnv), "default"),
		cmpOr(os.Getenv(wearFillEnv), "default"), cmpOr(os.Getenv(wearThreshEnv), "default"))
	n := 0
	for _, pol := range strings.Fields(cmpOr(os.Getenv(wearPoliciesEnv), "always group none")) {
		for _, rs := range strings.Fields(cmpOr(os.Getenv(wearRatesEnv), "20 200 2000")) {
			rate, err := strconv.Atoi(rs)
			if err != nil || rate <= 0 {
				t.Fatalf("%s: %q", wearRatesEnv, rs)
			}
			for _, mode := range strings.Fields(cmpOr(os.Getenv(wearModesEnv), "online offline")) {
				if mode != "online" && mode != "offline" {
					t.Fatalf("%s: %q", wearModesEnv, mode)
				}
				n++
				wearCell(t, blk, filepath.Join(wearMount, fmt.Sprintf("cell-%d", n)), buffer.SyncPolicy(pol), rate, mode == "online", size, time.Duration(secs)*time.Second)
			}
		}
	}
}

// wearCell runs one cell and prints its WEAR line.
func wearCell(t *testing.T, blk, dir string, pol buffer.SyncPolicy, rate int, online bool, size int, d time.Duration) {
	o := buffer.DefaultOptions(dir)
	o.Sync = pol
	if s := os.Getenv(wearWindowEnv); s != "" {
		w, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", wearWindowEnv, err)
		}
		o.GroupWindow = w
	}
	if s := os.Getenv(wearMaxWinEnv); s != "" {
		w, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", wearMaxWinEnv, err)
		}
		setMaxWindow(&o, w)
	}
	if s := os.Getenv(wearFillEnv); s != "" {
		setFill(&o, int64(wearInt(t, wearFillEnv, 0)))
	}
	if s := os.Getenv(wearThreshEnv); s != "" {
		buffer.SetValueThreshold(&o, int64(wearInt(t, wearThreshEnv, 0)))
	}
	o.MaxBytes = 256 << 20 // offline at 2,000/s must not evict
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	unix.Sync() // Open's writes and the previous cell's deletion are not this cell's
	before := wearStat(t, blk)
	jbd0 := jbd2Transactions(blk)
	syncs0 := q.Stats().Syncs

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked int64
	if online {
		wg.Go(func() { // the uplink: lease, publish, ack
			for {
				select {
				case <-q.Ready():
				case <-ctx.Done():
					return
				}
				for {
					recs, err := q.Lease(256, 120<<10)
					if err != nil || len(recs) == 0 {
						break
					}
					seqs := make([]uint64, len(recs))
					for i, r := range recs {
						seqs[i] = r.Seq
					}
					if err := q.Ack(seqs...); err == nil {
						acked += int64(len(seqs))
					}
				}
			}
		})
	}
	rec := make([]byte, size)
	for i := range rec {
		rec[i] = byte(i * 7)
	}
	start := time.Now()
	produced, appends := 0, 0
	var lat time.Duration
	for time.Since(start) < d {
		due := int(time.Since(start).Seconds()*float64(rate)) + 1 - produced
		if due <= 0 {
			next := start.Add(time.Duration(float64(produced) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(next))
			continue
		}
		batch := make([][]byte, due)
		for i := range batch {
			batch[i] = rec
		}
		t0 := time.Now()
		if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, batch); err != nil {
			t.Fatalf("append: %v", err)
		}
		lat = max(lat, time.Since(t0))
		produced += due
		appends++
	}
	elapsed := time.Since(start)
	syncs := q.Stats().Syncs - syncs0
	if online {
		// Let the consumer catch up with the last commit.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if st := q.Stats(); st.Classes[buffer.ClassTelemetry].Records == 0 {
				break
			}
		}
	}
	cancel()
	wg.Wait()
	if online {
		q.CollectGarbage()
	}
	unix.Sync()
	after := wearStat(t, blk)
	jbd := jbd2Transactions(blk) - jbd0
	left := q.Stats().Classes[buffer.ClassTelemetry].Records
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(dir + ".seq")
	mode := "offline"
	if online {
		mode = "online"
	}
	// WEAR policy rate mode seconds payload_bytes dev_write_bytes write_ios flushes queue_syncs jbd2_commits appends max_append_ms left acked
	fmt.Printf("WEAR %s %d %s %.1f %d %d %d %d %d %d %d %.1f %d %d\n", pol, rate, mode, elapsed.Seconds(),
		produced*size, (after.sectors-before.sectors)*512, after.writes-before.writes,
		after.flushes-before.flushes, syncs, jbd, appends, float64(lat.Microseconds())/1000, left, acked)
}

type blkStat struct{ writes, sectors, flushes int64 }

// wearStat reads /sys/block/<blk>/stat (Documentation/block/stat.rst:
// field 5 write I/Os, 7 sectors written, 16 flush I/Os).
func wearStat(t *testing.T, blk string) blkStat {
	b, err := os.ReadFile(filepath.Join("/sys/block", blk, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 16 {
		t.Fatalf("/sys/block/%s/stat: %d fields, want >= 16 (kernel >= 5.5)", blk, len(f))
	}
	v := func(i int) int64 {
		n, err := strconv.ParseInt(f[i-1], 10, 64)
		if err != nil {
			t.Fatalf("/sys/block/%s/stat field %d: %v", blk, i, err)
		}
		return n
	}
	return blkStat{writes: v(5), sectors: v(7), flushes: v(16)}
}

// jbd2Transactions returns the ext4 journal's commit count from
// /proc/fs/jbd2/<blk>-8/info ("N transactions (M requested), ..."), or 0.
func jbd2Transactions(blk string) int64 {
	b, err := os.ReadFile("/proc/fs/jbd2/" + blk + "-8/info")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "transactions" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n
		}
	}
	return 0
}

// wearMountDisk loads the virtio and ext4 modules and mounts dev.
func wearMountDisk(t *testing.T, dev string) {
	order, err := os.ReadFile(filepath.Join(wearModDir, "order"))
	if err != nil {
		t.Fatalf("disk modules (scripts/vmtest/diskmods.sh): %v", err)
	}
	for _, m := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(wearModDir, m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("load module %s: %v", m, err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(dev); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no disk: %v", err)
		}
	}
	if err := os.MkdirAll(wearMount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, wearMount, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
}

func wearInt(t *testing.T, env string, def int) int {
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", env, s)
	}
	return n
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func setMaxWindow(o *buffer.Options, d time.Duration) { o.GroupMaxWindow = d }

func setFill(o *buffer.Options, n int64) { o.GroupFill = n }

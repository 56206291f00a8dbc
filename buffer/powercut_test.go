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
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
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
	pcModeEnv  = "VMTEST_POWERCUT"       // write | verify
	pcSyncEnv  = "VMTEST_POWERCUT_SYNC"  // always | group | none
	pcRunEnv   = "VMTEST_POWERCUT_RUN"   // run id written into every payload
	pcAckedEnv = "VMTEST_POWERCUT_ACKED" // verify: file of the ACKED lines the host saw
	pcMaxEnv   = "VMTEST_POWERCUT_MAX"   // write: stop after this many records (default 300000)
	pcDevEnv   = "VMTEST_POWERCUT_DEV"   // block device (default /dev/vda)
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
	run, err := strconv.ParseUint(os.Getenv(pcRunEnv), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", pcRunEnv, err)
	}
	pcMountDisk(t)
	o := buffer.DefaultOptions(filepath.Join(pcMount, "queue"))
	o.Sync = buffer.SyncPolicy(os.Getenv(pcSyncEnv))
	o.LiveWindow = -1 // pure oldest-first within a class: the verifier checks that order
	o.MaxBytes = 1 << 30
	switch mode {
	case "write":
		pcWrite(t, o, run)
	case "verify":
		pcVerify(t, o, run)
	default:
		t.Fatalf("%s=%q: want write or verify", pcModeEnv, mode)
	}
}

// pcMountDisk loads the virtio and ext4 modules and mounts the disk.
func pcMountDisk(t *testing.T) {
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
	dev := os.Getenv(pcDevEnv)
	if dev == "" {
		dev = "/dev/vda"
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(dev); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no disk: %v", err)
		}
	}
	if err := os.MkdirAll(pcMount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, pcMount, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
}

// pcPayload is the record data of index i of class c in run run: the
// header, filler derived from it and a CRC-32C of all that.
func pcPayload(run uint64, c buffer.Class, i uint64) []byte {
	n := 64 + int(i*37%400)
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
// time; the others in batches of 1..64.
func pcWrite(t *testing.T, o buffer.Options, run uint64) {
	limit := uint64(300000)
	if s := os.Getenv(pcMaxEnv); s != "" {
		var err error
		if limit, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", pcMaxEnv, err)
		}
	}
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	st := q.Stats()
	fmt.Printf("WRITER sync=%s run=%d next_seq=%d records=%d degraded=%q\n", o.Sync, run, st.NextSeq, st.Records, st.Degraded)
	var (
		mu    sync.Mutex // one write(2) per line, lines not interleaved
		total sync.WaitGroup
		fail  = make(chan error, buffer.NumClasses)
	)
	for c := range buffer.Class(buffer.NumClasses) {
		total.Go(func() {
			if err := pcWriteClass(q, run, c, limit/buffer.NumClasses, &mu); err != nil {
				fail <- err
			}
		})
	}
	total.Wait()
	close(fail)
	for err := range fail {
		t.Error(err)
	}
	if err := q.Close(); err != nil {
		t.Error(err)
	}
	fmt.Println("WRITER DONE (never cut)")
}

// pcWriteClass appends limit records of class c and prints ACKED lines.
func pcWriteClass(q *buffer.Queue, run uint64, c buffer.Class, limit uint64, mu *sync.Mutex) error {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(run, uint64(c)))
	for i := uint64(0); i < limit; {
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
				return fmt.Errorf("append %v %d: %w", c, i, err)
			}
			seqs = []uint64{s}
		} else {
			var err error
			if seqs, err = q.AppendBatch(ctx, c, data); err != nil {
				return fmt.Errorf("append batch %v %d+%d: %w", c, i, n, err)
			}
		}
		var b strings.Builder
		for k := 0; k < len(seqs); {
			j := k + 1 // seqs[k:j] is a run of consecutive seqs
			for j < len(seqs) && seqs[j] == seqs[j-1]+1 {
				j++
			}
			fmt.Fprintf(&b, "ACKED %d %d %d %d end\n", c, seqs[k], i+uint64(k), j-k)
			k = j
		}
		mu.Lock()
		_, _ = os.Stdout.WriteString(b.String())
		mu.Unlock()
		i += n
	}
	return nil
}

// pcAcked is one acknowledged record as the host saw it.
type pcAcked struct {
	class buffer.Class
	index uint64
}

// pcReadAcked parses the ACKED lines; lines torn by the kill (a wrong
// field count or no "end") are skipped.
func pcReadAcked(path string) (map[uint64]pcAcked, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[uint64]pcAcked{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 6 || fl[0] != "ACKED" || fl[5] != "end" {
			continue
		}
		var v [4]uint64
		for k := range v {
			if v[k], err = strconv.ParseUint(fl[k+1], 10, 64); err != nil {
				return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
			}
		}
		for k := range v[3] {
			if _, dup := want[v[1]+k]; dup {
				return nil, fmt.Errorf("seq %d acknowledged twice", v[1]+k)
			}
			want[v[1]+k] = pcAcked{buffer.Class(v[0]), v[2] + k}
		}
	}
	return want, sc.Err()
}

// pcReport counts what the verifier found.
type pcReport struct {
	acked, present, lost, extra, stale int // stale: payload of an earlier run
	dup, corrupt, order, wrong, badNew int
	maxAcked, maxSeq                   uint64
}

func (r pcReport) String() string {
	return fmt.Sprintf("acked=%d present=%d lost=%d extra=%d stale=%d dup=%d corrupt=%d order=%d wrong=%d bad_new_seq=%d max_acked=%d max_seq=%d",
		r.acked, r.present, r.lost, r.extra, r.stale, r.dup, r.corrupt, r.order, r.wrong, r.badNew, r.maxAcked, r.maxSeq)
}

// pcVerify reopens the store after the cut and checks it: every acked
// record is there exactly once with its payload, seqs increase within a
// class in drain order, and new appends get seqs above all earlier ones.
// With Sync=none, lost records are reported, not failed.
func pcVerify(t *testing.T, o buffer.Options, run uint64) {
	want, err := pcReadAcked(os.Getenv(pcAckedEnv))
	if err != nil {
		t.Fatalf("acked lines: %v", err)
	}
	t0 := time.Now()
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("reopen after the cut: %v", err)
	}
	st := q.Stats()
	fmt.Printf("VERIFY sync=%s run=%d open=%v records=%d next_seq=%d degraded=%q\n", o.Sync, run, time.Since(t0).Round(time.Millisecond), st.Records, st.NextSeq, st.Degraded)
	recs := pcLeaseAll(t, q)
	rep := pcCheck(recs, want, run)
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	if err := q.Ack(seqs...); err != nil {
		t.Errorf("ack the backlog: %v", err)
	}
	pcAppendAfter(t, q, run, &rep)
	if err := q.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := unix.Unmount(pcMount, 0); err != nil {
		t.Errorf("unmount: %v", err)
	}
	hard := rep.dup + rep.corrupt + rep.order + rep.wrong + rep.badNew
	soft := rep.lost
	if st.Degraded != "" {
		soft++
	}
	switch {
	case hard > 0 || t.Failed():
		fmt.Printf("POWERCUT FAIL %s\n", rep)
		t.Fail()
	case soft > 0 && o.Sync == buffer.SyncNone:
		fmt.Printf("POWERCUT LOSS (sync=none may lose) %s\n", rep)
	case soft > 0:
		fmt.Printf("POWERCUT FAIL %s degraded=%q\n", rep, st.Degraded)
		t.Fail()
	default:
		fmt.Printf("POWERCUT PASS %s\n", rep)
	}
}

// pcCheck compares the leased backlog with the acked records.
func pcCheck(recs []buffer.Record, want map[uint64]pcAcked, run uint64) pcReport {
	rep := pcReport{acked: len(want)}
	seen := map[uint64]bool{}
	var lastSeq, lastIdx [buffer.NumClasses]uint64
	var anyIdx [buffer.NumClasses]bool
	for _, r := range recs {
		rep.maxSeq = max(rep.maxSeq, r.Seq)
		if seen[r.Seq] {
			rep.dup++
			continue
		}
		seen[r.Seq] = true
		if r.Seq <= lastSeq[r.Class] {
			rep.order++
		}
		lastSeq[r.Class] = r.Seq
		rrun, c, idx, err := pcDecode(r.Data)
		switch {
		case err != nil || c != r.Class:
			rep.corrupt++
			fmt.Printf("corrupt seq %d class %v: %v\n", r.Seq, r.Class, err)
			continue
		case rrun != run:
			rep.stale++
			continue
		}
		if anyIdx[c] && idx <= lastIdx[c] {
			rep.order++ // appended later but drained earlier
		}
		lastIdx[c], anyIdx[c] = idx, true
		w, ok := want[r.Seq]
		switch {
		case !ok:
			rep.extra++ // stored, but the host never saw its ACKED line
		case w.class != c || w.index != idx:
			rep.wrong++
			fmt.Printf("seq %d holds %v #%d, acked as %v #%d\n", r.Seq, c, idx, w.class, w.index)
		default:
			rep.present++
		}
	}
	for s, w := range want {
		rep.maxAcked = max(rep.maxAcked, s)
		if !seen[s] {
			rep.lost++
			if rep.lost <= 5 {
				fmt.Printf("lost seq %d (%v #%d)\n", s, w.class, w.index)
			}
		}
	}
	return rep
}

// pcAppendAfter appends a few records per class after the reopen: their
// seqs must exceed every seq acked or stored before the cut.
func pcAppendAfter(t *testing.T, q *buffer.Queue, run uint64, rep *pcReport) {
	floor := max(rep.maxAcked, rep.maxSeq)
	var seqs []uint64
	for c := range buffer.Class(buffer.NumClasses) {
		for k := range uint64(3) {
			s, err := q.Append(context.Background(), c, pcPayload(run, c, 1<<62+k))
			if err != nil {
				t.Errorf("append after reopen: %v", err)
				return
			}
			if s <= floor {
				rep.badNew++
				fmt.Printf("new seq %d not above %d\n", s, floor)
			}
			rep.maxSeq = max(rep.maxSeq, s)
			seqs = append(seqs, s)
		}
	}
	got := pcLeaseAll(t, q)
	if len(got) != len(seqs) {
		t.Errorf("leased %d records after the new appends, want %d", len(got), len(seqs))
	}
	if err := q.Ack(seqs...); err != nil {
		t.Errorf("ack new: %v", err)
	}
}

// pcLeaseAll leases everything.
func pcLeaseAll(t *testing.T, q *buffer.Queue) []buffer.Record {
	var all []buffer.Record
	for {
		recs, err := q.Lease(1000, 0)
		if err != nil {
			t.Fatalf("lease: %v", err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

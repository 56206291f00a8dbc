//go:build powercut && linux

package buffer_test

// The verifier of the power-cut test (powercut_test.go).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// pcAcked is one acknowledged record as the host saw it.
type pcAcked struct {
	class buffer.Class
	index uint64
}

// pcReadAcked parses the lines the host saw: want holds the records whose
// Append returned (ACKED), gone the seqs the consumer was about to Ack
// (ACKING), which may or may not be there after the cut. Lines torn by
// the cut (a wrong field count or no "end") are skipped.
func pcReadAcked(path string) (want map[uint64]pcAcked, gone map[uint64]bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	want, gone = map[uint64]pcAcked{}, map[uint64]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 4 || fl[len(fl)-1] != "end" || !(fl[0] == "ACKED" && len(fl) == 6 || fl[0] == "ACKING" && len(fl) == 4) {
			continue
		}
		v := make([]uint64, len(fl)-2)
		for k := range v {
			if v[k], err = strconv.ParseUint(fl[k+1], 10, 64); err != nil {
				return nil, nil, fmt.Errorf("line %q: %w", sc.Text(), err)
			}
		}
		if fl[0] == "ACKING" {
			for k := range v[1] {
				gone[v[0]+k] = true
			}
			continue
		}
		for k := range v[3] {
			if _, dup := want[v[1]+k]; dup {
				return nil, nil, fmt.Errorf("seq %d acknowledged twice", v[1]+k)
			}
			want[v[1]+k] = pcAcked{buffer.Class(v[0]), v[2] + k}
		}
	}
	return want, gone, sc.Err()
}

// pcReport counts what the verifier found.
type pcReport struct {
	acked, present, lost, extra, stale int // stale: payload of an earlier run
	acking, consumed, redelivered      int // consumer acks: gone, or there again (allowed)
	dup, corrupt, order, wrong, badNew int
	accounting                         int    // classes whose Stats count differs from what Lease returned
	dropped                            uint64 // Stats.Corrupt after the lease pass
	degradedAfter                      string // Stats.Degraded after the lease pass
	maxAcked, maxSeq                   uint64
	files                              string // pcStoreFiles before the reopen
}

func (r pcReport) String() string {
	return fmt.Sprintf("acked=%d present=%d lost=%d consumer_acked=%d gone=%d redelivered=%d extra=%d stale=%d dup=%d corrupt=%d order=%d wrong=%d bad_new_seq=%d accounting=%d corrupt_dropped=%d degraded_after_lease=%q max_acked=%d max_seq=%d files=%s",
		r.acked, r.present, r.lost, r.acking, r.consumed, r.redelivered, r.extra, r.stale, r.dup, r.corrupt, r.order, r.wrong, r.badNew, r.accounting, r.dropped, r.degradedAfter, r.maxAcked, r.maxSeq, r.files)
}

// pcStoreFiles counts the store's files as the cut left them, before the
// reopen: "mem:N,sst:N,vlog:N" (Badger's WAL, tables, value logs). A store
// cut while closed for idleness has no .mem file (its close removed the
// WAL, the reopen had not created one yet); "none" if there is no store
// directory yet.
func pcStoreFiles(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "none"
	}
	var mem, sst, vlog int
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".mem":
			mem++
		case ".sst":
			sst++
		case ".vlog":
			vlog++
		}
	}
	return fmt.Sprintf("mem:%d,sst:%d,vlog:%d", mem, sst, vlog)
}

// pcVerify reopens the store after the cut and checks it: every acked
// record is there exactly once with its payload, seqs increase within a
// class in drain order, and new appends get seqs above all earlier ones.
// With Sync=none, lost records are reported, not failed.
// label (offline cuts: the cut's name) is printed in the verdict line.
func pcVerify(t *testing.T, o buffer.Options, run uint64, ackedPath, mnt, label string) {
	want, gone, err := pcReadAcked(ackedPath)
	if err != nil {
		t.Fatalf("acked lines: %v", err)
	}
	name := label // for pcPrintKernelLog
	files := pcStoreFiles(o.Dir)
	t0 := time.Now()
	q, err := buffer.Open(o)
	if err != nil {
		// The file system mounted but the store does not open (e.g. an
		// I/O error from the file system): its kernel log says why.
		pcPrintKernelLog(label)
		fmt.Println(pcReopenFailLine(label, err))
		t.Fatalf("reopen after the cut: %v", err)
	}
	st := q.Stats()
	if label != "" {
		label = "cut=" + label + " "
	}
	fmt.Printf("VERIFY %ssync=%s run=%d open=%v records=%d next_seq=%d torn=%d degraded=%q files=%s\n", label, o.Sync, run, time.Since(t0).Round(time.Millisecond), st.Records, st.NextSeq, st.Torn, st.Degraded, files)
	recs := leaseAll(t, q)
	rep := pcCheck(recs, want, gone, run)
	rep.files = files
	// After the lease pass: Lease drops records it cannot decode (a store
	// may keep a torn, never acknowledged record through a cut) and
	// counts them in Stats.Corrupt; acknowledged ones show up as lost.
	after := q.Stats()
	rep.dropped, rep.degradedAfter = after.Corrupt, after.Degraded
	rep.accounting = pcAccounting(after, recs)
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
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Errorf("unmount: %v", err)
	}
	hard := rep.dup + rep.corrupt + rep.order + rep.wrong + rep.badNew + rep.accounting
	soft := rep.lost
	if st.Degraded != "" {
		soft++
	}
	switch {
	case hard > 0 || t.Failed():
		pcPrintKernelLog(name) // e.g. f2fs's roll-forward recovery
		fmt.Printf("POWERCUT FAIL %s%s\n", label, rep)
		t.Fail()
	case soft > 0 && o.Sync == buffer.SyncNone:
		fmt.Printf("POWERCUT LOSS (sync=none may lose) %s%s\n", label, rep)
	case soft > 0:
		pcPrintKernelLog(name)
		fmt.Printf("POWERCUT FAIL %s%s degraded=%q\n", label, rep, st.Degraded)
		t.Fail()
	default:
		fmt.Printf("POWERCUT PASS %s%s\n", label, rep)
	}
}

// pcCheck compares the leased backlog with the acked records.
func pcCheck(recs []buffer.Record, want map[uint64]pcAcked, gone map[uint64]bool, run uint64) pcReport {
	rep := pcReport{acked: len(want), acking: len(gone)}
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
		switch {
		case gone[s] && seen[s]:
			rep.redelivered++
		case gone[s]:
			rep.consumed++
		case !seen[s]:
			rep.lost++
			if rep.lost <= 5 {
				fmt.Printf("lost seq %d (%v #%d)\n", s, w.class, w.index)
			}
		}
	}
	return rep
}

// pcAccounting compares the per-class record counts of Stats after the
// lease pass (leased records included) with what Lease returned: the byte
// and record caps rely on them. It returns the number of classes that
// differ.
func pcAccounting(st buffer.Stats, recs []buffer.Record) int {
	var got [buffer.NumClasses]int64
	for _, r := range recs {
		got[r.Class]++
	}
	bad := 0
	for c, cs := range st.Classes {
		if cs.Records != got[c] {
			bad++
			fmt.Printf("class %v: Stats says %d records, Lease returned %d\n", buffer.Class(c), cs.Records, got[c])
		}
	}
	return bad
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
	got := leaseAll(t, q)
	if len(got) != len(seqs) {
		t.Errorf("leased %d records after the new appends, want %d", len(got), len(seqs))
	}
	if err := q.Ack(seqs...); err != nil {
		t.Errorf("ack new: %v", err)
	}
}

// pcReopenFailLine is the verdict line of a store that does not open
// after the cut: "POWERCUT FAIL cut=LABEL reopen: ERROR" (no cut= for a
// live cut), the error on one line.
func pcReopenFailLine(label string, err error) string {
	if label != "" {
		label = "cut=" + label + " "
	}
	return "POWERCUT FAIL " + label + "reopen: " + strings.Join(strings.Fields(err.Error()), " ")
}

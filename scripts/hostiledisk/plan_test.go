package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mem is an in-memory image.
type mem []byte

func (m mem) WriteAt(b []byte, off int64) (int, error) { return copy(m[off:], b), nil }

// testOps: writes 1..n, each a whole page or two, op k filled with byte
// k+1; ops 0 and 1 both cover page 0 (the later overwrites the earlier).
func testOps(n int) []op {
	ops := make([]op, n)
	for k := range ops {
		off := int64(k) * pageSize
		size := pageSize
		if k == 1 {
			off = 0
		}
		if k%3 == 2 {
			size = 2 * pageSize
			off = int64(8+k) * pageSize
		}
		ops[k] = op{off: off, data: bytes.Repeat([]byte{byte(k + 1)}, size), n: int64(size)}
	}
	return ops
}

func applyAll(ops []op, idx []int) mem {
	m := make(mem, 64*pageSize)
	for _, i := range idx {
		_ = ops[i].writeTo(m, -1, 0)
	}
	return m
}

func TestPlanModes(t *testing.T) {
	ops := testOps(12)
	all := make([]int, len(ops))
	for i := range all {
		all[i] = i
	}
	seen := map[string]bool{}
	for seed := uint64(1); seed <= 400; seed++ {
		for _, mode := range []Mode{ModeNothing, ModePrefix, ModeSubset, ModeTorn, ModeMixed, ModeNoneLost} {
			p := planCut(ops, mode, seed)
			if q := planCut(ops, mode, seed); p.String() != q.String() {
				t.Fatalf("%s seed %d: not reproducible: %s vs %s", mode, seed, p, q)
			}
			if mode != ModeMixed && p.Mode != mode || mode == ModeMixed && (p.Mode == ModeMixed || p.Mode == ModeNoneLost) {
				t.Fatalf("mode %s applied as %s", mode, p.Mode)
			}
			seen[string(mode)+">"+string(p.Mode)] = true
			got := make(mem, 64*pageSize)
			if err := p.apply(got, ops); err != nil {
				t.Fatal(err)
			}
			sorted := slices.Sorted(slices.Values(p.Order))
			if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
				t.Fatalf("%s: an op persisted twice: %v", mode, p.Order)
			}
			switch p.Mode {
			case ModeNothing:
				if len(p.Order) != 0 || p.TornOp >= 0 || !bytes.Equal(got, make(mem, len(got))) {
					t.Fatalf("nothing persisted something: %s", p)
				}
			case ModeNoneLost:
				if !slices.Equal(p.Order, all) {
					t.Fatalf("none-lost: %s", p)
				}
			case ModePrefix:
				if !slices.Equal(p.Order, all[:len(p.Order)]) || p.TornOp >= 0 {
					t.Fatalf("prefix: %v", p.Order)
				}
				if !bytes.Equal(got, applyAll(ops, p.Order)) {
					t.Fatal("prefix: image differs from the prefix applied in order")
				}
			case ModeSubset:
				if p.TornOp >= 0 {
					t.Fatal("subset tore a page")
				}
			case ModeTorn:
				checkTorn(t, ops, p, got)
			}
			// Where page 0 persisted from op 1 (later) but not op 0, or
			// op 0 after op 1: the disk went back in time for a sector.
			i0, i1 := slices.Index(p.Order, 0), slices.Index(p.Order, 1)
			switch {
			case i0 >= 0 && i1 < 0 && p.TornOp != 1:
				seen[string(p.Mode)+": earlier kept, later lost"] = true
			case i0 > i1 && i1 >= 0:
				seen[string(p.Mode)+": reordered"] = true
			}
		}
	}
	for _, want := range []string{
		"mixed>nothing", "mixed>prefix", "mixed>subset", "mixed>torn",
		"subset: earlier kept, later lost", "subset: reordered", "torn: reordered",
	} {
		if !seen[want] {
			t.Errorf("never saw %q in 400 seeds", want)
		}
	}
	if p, q := planCut(ops, ModeSubset, 1), planCut(ops, ModeSubset, 2); p.String() == q.String() {
		t.Error("seeds 1 and 2 made the same plan")
	}
}

// checkTorn checks that the torn page holds some new and some old sectors
// and that the rest of the torn op persisted.
func checkTorn(t *testing.T, ops []op, p CutPlan, got mem) {
	t.Helper()
	if p.TornOp < 0 || slices.Contains(p.Order, p.TornOp) {
		t.Fatalf("torn: %s", p)
	}
	if p.TornKeep == 0 || p.TornKeep == 0xff {
		t.Fatalf("torn keep %08b is not a tear", p.TornKeep)
	}
	o := ops[p.TornOp]
	if p.TornPage < o.off || p.TornPage+pageSize > o.end() || p.TornPage%pageSize != 0 {
		t.Fatalf("torn page %d outside op %d+%d", p.TornPage, o.off, o.n)
	}
	before := applyAll(ops, p.Order) // everything but the torn op
	var nw, old int
	for s := range int64(8) {
		at := p.TornPage + s*sectorSize
		sec := got[at : at+sectorSize]
		switch {
		case p.TornKeep&(1<<s) != 0 && bytes.Equal(sec, o.data[at-o.off:at-o.off+sectorSize]):
			nw++
		case p.TornKeep&(1<<s) == 0 && bytes.Equal(sec, before[at:at+sectorSize]):
			old++
		default:
			t.Fatalf("torn page sector %d holds neither what it should", s)
		}
	}
	if nw == 0 || old == 0 {
		t.Fatalf("torn page: %d new, %d old sectors", nw, old)
	}
	for at := o.off; at < o.end(); at += sectorSize {
		if (at < p.TornPage || at >= p.TornPage+pageSize) && !bytes.Equal(got[at:at+sectorSize], o.data[at-o.off:at-o.off+sectorSize]) {
			t.Fatalf("torn op: sector at %d outside the torn page not written", at)
		}
	}
}

func TestZeroOpWritesZeroes(t *testing.T) {
	m := mem(bytes.Repeat([]byte{0xff}, 3<<20))
	o := op{off: 512, n: 3<<20 - 1024}
	if err := o.writeTo(m, -1, 0); err != nil {
		t.Fatal(err)
	}
	if m[511] != 0xff || m[512] != 0 || m[3<<20-513] != 0 || m[3<<20-512] != 0xff {
		t.Fatal("zero op wrote the wrong range")
	}
	if !bytes.Equal(zeroChunk, make([]byte, len(zeroChunk))) {
		t.Fatal("zeroChunk was written to")
	}
}

func TestPlanTornWithoutWholePage(t *testing.T) {
	ops := []op{{off: 512, data: make([]byte, 4096), n: 4096}, {off: 0, n: 8192}} // unaligned; zeroes
	p := planCut(ops, ModeTorn, 5)
	if p.TornOp != -1 || !strings.Contains(p.String(), "torn=none") {
		t.Fatalf("tore without a whole page: %s", p)
	}
	if planCut(nil, ModeTorn, 1).Pending != 0 || len(planCut(nil, ModePrefix, 1).Order) != 0 {
		t.Fatal("empty pending")
	}
}

func TestDiskCutModes(t *testing.T) {
	for _, mode := range []Mode{ModeNothing, ModeNoneLost, ModeSubset} {
		t.Run(string(mode), func(t *testing.T) {
			d, path := newTestDisk(t, 16*pageSize, 0)
			if err := d.Write(0, bytes.Repeat([]byte{1}, pageSize), false); err != nil {
				t.Fatal(err)
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			for k := range 8 {
				if err := d.Write(int64(k+1)*pageSize, bytes.Repeat([]byte{byte(k + 2)}, pageSize), false); err != nil {
					t.Fatal(err)
				}
			}
			if b, _ := d.Read(pageSize, pageSize); b[0] != 2 {
				t.Fatal("a read does not see a pending write")
			}
			p, err := d.Cut(mode, 3)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := os.ReadFile(path)
			if img[0] != 1 {
				t.Fatal("flushed write lost")
			}
			n := 0
			for k := range 8 {
				if img[(k+1)*pageSize] != 0 {
					n++
				}
			}
			if n != len(p.Order) {
				t.Fatalf("%d pending writes in the image, plan says %d (%s)", n, len(p.Order), p)
			}
			if err := d.Write(0, make([]byte, 512), false); !errors.Is(err, errCut) {
				t.Fatalf("write after the cut: %v", err)
			}
			if q, err := d.Cut(ModeNoneLost, 4); err != nil || q.String() != p.String() {
				t.Fatalf("second cut: %v %s, want the first's plan", err, q)
			}
		})
	}
}

func TestDiskArmedCut(t *testing.T) {
	d, path := newTestDisk(t, 4*pageSize, 0)
	done := d.Arm(ModeNothing, 1)
	if err := d.Flush(); err != nil { // nothing pending: an ordinary flush
		t.Fatal(err)
	}
	_ = d.Write(0, bytes.Repeat([]byte{1}, pageSize), false)
	select {
	case <-done:
		t.Fatal("cut before a flush")
	default:
	}
	if err := d.Flush(); !errors.Is(err, errCut) {
		t.Fatalf("armed flush: %v", err)
	}
	<-done
	p, err := d.Cut(ModeNoneLost, 9)
	if err != nil || p.Pending != 1 || p.Mode != ModeNothing || p.At != "before a flush" {
		t.Fatalf("plan %s, %v", p, err)
	}
	if img, _ := os.ReadFile(path); img[0] != 0 {
		t.Fatal("the write the armed flush would have made durable persisted")
	}
}

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, make([]byte, 64*pageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	img, _ := os.OpenFile(filepath.Join(dir, "live.img"), os.O_RDWR|os.O_CREATE, 0o644)
	defer img.Close()
	_ = img.Truncate(64 * pageSize)
	ol, err := createLog(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := NewDisk(img, ol)
	var console strings.Builder
	// Flush interval k writes page k with byte k+1; the guest acknowledges
	// record k after flush k+1 completed (seq 100+k).
	for k := range 5 {
		_ = d.Write(int64(k)*pageSize, bytes.Repeat([]byte{byte(k + 1)}, pageSize), false)
		_ = d.Flush()
		fmt.Fprintf(&console, "%d ACKED 0 %d %d 1 end\n", monoNow(), 100+k, k)
	}
	_ = d.Write(5*pageSize, bytes.Repeat([]byte{6}, pageSize), false) // never flushed
	fmt.Fprintf(&console, "%d ACKING 100 1 end\n%d STATS x\n%d ACKED 0 999 9 1\n", monoNow(), monoNow(), monoNow())
	if _, err := d.Cut(ModeNoneLost, 1); err != nil {
		t.Fatal(err)
	}
	cons := filepath.Join(dir, "console")
	_ = os.WriteFile(cons, []byte(console.String()), 0o644)
	out := filepath.Join(dir, "out")
	_ = os.Mkdir(out, 0o755)
	var man strings.Builder
	if err := replay(replayConfig{Log: filepath.Join(dir, "log"), Base: base, Console: cons, Out: out, Cuts: 100, Mode: ModeNothing, Seed: 1, Manifest: &man}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(man.String(), "CUT "); n != 6 {
		t.Fatalf("%d cuts, want 6 (5 flushes, one write before each and one after the last):\n%s", n, man.String())
	}
	for j := range 6 {
		im, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("cut-%04d.img", j)))
		if err != nil {
			t.Fatal(err)
		}
		for k := range 6 {
			if got, want := im[k*pageSize], k < j; (got != 0) != want {
				t.Errorf("cut %d: page %d written=%v, want %v", j, k, got != 0, want)
			}
		}
		acked, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("cut-%04d.acked", j)))
		// Cut j is just before flush j+1 completed: records 0..j-1 acked.
		if got := strings.Count(string(acked), "ACKED"); got != j {
			t.Errorf("cut %d: %d ACKED lines, want %d:\n%s", j, got, j, acked)
		}
		if !strings.Contains(string(acked), "ACKING 100 1 end") || strings.Contains(string(acked), "999") {
			t.Errorf("cut %d: acked file:\n%s", j, acked)
		}
	}
	if got := pickCuts([]int{0, 2, 4, 6, 8, 9}, 3, 7); len(got) != 3 || !slices.IsSorted(got) || !slices.Equal(got, pickCuts([]int{0, 2, 4, 6, 8, 9}, 3, 7)) {
		t.Fatalf("pickCuts: %v", got)
	}
}

func TestStamp(t *testing.T) {
	var out, st bytes.Buffer
	if err := stamp(strings.NewReader("a\r\nb\n\r\nc"), &out, &st); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nb\n\nc" {
		t.Fatalf("out %q", out.String())
	}
	lines := strings.Split(strings.TrimSuffix(st.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], " a") || !strings.HasSuffix(lines[3], " c") {
		t.Fatalf("stamped %q", st.String())
	}
}

func FuzzReadLog(f *testing.F) {
	f.Add([]byte(logMagic + "F\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte(logMagic + "W\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := readLog(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.kind == recWrite && int64(len(r.op.data)) != r.op.n {
				t.Fatal("write record with wrong data length")
			}
		}
	})
}

func FuzzReadStamped(f *testing.F) {
	f.Add("12 ACKED 0 5 0 1 end\n13 ACKING 5 1 end\nx\n14 ACKED 1 6 0 2")
	f.Fuzz(func(t *testing.T, s string) {
		acked, acking, err := readStamped(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, a := range acked {
			if !ackLine.MatchString(a.line) || strings.HasPrefix(a.line, "ACKING") {
				t.Fatalf("kept %q as ACKED", a.line)
			}
		}
		for _, l := range acking {
			if !strings.HasPrefix(l, "ACKING ") {
				t.Fatalf("kept %q as ACKING", l)
			}
		}
	})
}

func TestChoosePoints(t *testing.T) {
	writes := []int{0, 1, 3, 1, 0, 2, 1, 5, 1}
	for _, tc := range []struct {
		name          string
		cuts, pending int
		want          []int // nil: check the pool instead
		pool          []int
	}{
		{name: "many first", cuts: 3, want: []int{2, 5, 7}},
		{name: "then one", cuts: 5, pool: []int{1, 2, 3, 5, 6, 7, 8}},
		{name: "all with writes", cuts: 100, want: []int{1, 2, 3, 5, 6, 7, 8}},
		{name: "lone writes only", cuts: 100, pending: 1, want: []int{1, 3, 6, 8}},
		{name: "lone writes, two", cuts: 2, pending: 1, pool: []int{1, 3, 6, 8}},
		{name: "exactly two", cuts: 9, pending: 2, want: []int{5}},
		{name: "none with that many", cuts: 9, pending: 4, want: []int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := choosePoints(writes, tc.cuts, tc.pending, 42)
			if !slices.IsSorted(got) || !slices.Equal(got, choosePoints(writes, tc.cuts, tc.pending, 42)) {
				t.Fatalf("%v: not sorted or not deterministic", got)
			}
			if tc.want != nil {
				if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			if len(got) != tc.cuts {
				t.Fatalf("got %v, want %d points", got, tc.cuts)
			}
			for _, j := range got {
				if !slices.Contains(tc.pool, j) {
					t.Fatalf("got %v: %d is not among %v", got, j, tc.pool)
				}
			}
		})
	}
}

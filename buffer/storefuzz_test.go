package buffer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// Corrupted-store fuzz (issue 12): damage one file of a real store (byte
// flips, 2 KiB overwrites, zeroed 4 KiB pages, truncations) and reopen it.
// Open must never panic, never quarantine an intact store, never hand out
// a seq again, and every record it still returns must be one that was
// written, unchanged; the queue must work afterwards.
//
// TCU_BUFFER_FUZZ_CASES sets the number of cases (default 500, also under
// -short: CI runs them), TCU_BUFFER_FUZZ_SEED the seed (default 1); case i
// uses the PCG stream (seed, i), so `-run 'TestCorruptStoreFuzz/case-0042'`
// repeats one case.

type tmplRec struct {
	class buffer.Class
	data  []byte
}

// storeTemplate is a store built once and copied for every case.
type storeTemplate struct {
	name    string
	dir     string             // the store directory; its seq file is dir+".seq"
	want    map[uint64]tmplRec // stored, not acknowledged
	written map[uint64]tmplRec // every record written (an acknowledged one may come back: at-least-once)
	lastSeq uint64
	files   []string // names in dir, plus the seq file as "<seq>"
}

func fuzzCases() (n int, seed uint64) {
	n, seed = 500, 1
	if v, err := strconv.Atoi(os.Getenv("TCU_BUFFER_FUZZ_CASES")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("TCU_BUFFER_FUZZ_SEED"), 10, 64); err == nil {
		seed = v
	}
	return n, seed
}

// buildTemplate writes a store with every kind of content: inline chunks
// (telemetry), value-log chunks (events), critical records, acked and
// partly acked chunks (tombstones, gone sets), flushed tables. With killed,
// the directory is copied while the store is open (what a kill -9 leaves:
// memtable WALs, the value-log head at its mapped size).
func buildTemplate(t *testing.T, root string, killed bool) *storeTemplate {
	t.Helper()
	name := "closed"
	if killed {
		name = "killed"
	}
	o := buffer.DefaultOptions(filepath.Join(root, name+"-src", "queue"))
	o.GroupMaxWindow = o.GroupWindow // a fixed window: the template appends one at a time
	o.LiveWindow = -1
	o.MinFree = -1
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	tp := &storeTemplate{name: name, want: map[uint64]tmplRec{}, written: map[uint64]tmplRec{}}
	rng := rand.New(rand.NewPCG(7, 7))
	add := func(c buffer.Class, n, size int) {
		data := make([][]byte, n)
		for i := range data {
			d := make([]byte, size/2+rng.IntN(size))
			for j := range d {
				d[j] = byte('a' + rng.IntN(26))
			}
			data[i] = d
		}
		seqs, err := q.AppendBatch(context.Background(), c, data)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seqs {
			tp.want[s] = tmplRec{c, data[i]}
			tp.written[s] = tmplRec{c, data[i]}
			tp.lastSeq = max(tp.lastSeq, s)
		}
	}
	ack := func(every int) {
		recs, err := q.Lease(400, 0)
		if err != nil {
			t.Fatal(err)
		}
		var acks []uint64
		for i, r := range recs {
			if i%every == 0 {
				acks = append(acks, r.Seq)
				delete(tp.want, r.Seq)
			}
		}
		if err := q.Ack(acks...); err != nil {
			t.Fatal(err)
		}
		q.Release(seqsOf(recs)...)
	}
	for i := range 30 {
		add(buffer.ClassTelemetry, 40, 60)
		if i%5 == 0 {
			add(buffer.ClassEvent, 16, 600)
			add(buffer.ClassCritical, 1, 100)
		}
	}
	ack(1) // whole chunks: tombstones
	ack(3) // gone sets
	q.CollectGarbage()
	for range 10 {
		add(buffer.ClassTelemetry, 40, 60)
	}
	add(buffer.ClassEvent, 8, 900)
	ack(7)
	tp.dir = filepath.Join(root, name, "queue")
	if killed {
		q.CollectGarbage() // persists the gone sets, as the GC goroutine would
		copyStore(t, o.Dir, tp.dir)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if !killed {
		copyStore(t, o.Dir, tp.dir)
	}
	ents, err := os.ReadDir(tp.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tp.files = append(tp.files, e.Name())
	}
	tp.files = append(tp.files, "<seq>")
	return tp
}

// copyStore copies a store directory and its seq file, keeping zero pages
// sparse (a killed store's value-log head is mapped at 2x its size).
func copyStore(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "LOCK" {
			continue
		}
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
	copyFile(t, src+".seq", dst+".seq")
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = out.Close() }()
	buf := make([]byte, 4096)
	zero := make([]byte, 4096)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				t.Fatal(werr)
			}
		}
		off += int64(n)
		if err != nil {
			break
		}
	}
	if err := out.Truncate(off); err != nil {
		t.Fatal(err)
	}
}

// damage is one mutation of one file.
type damage struct {
	file    string // name in the store dir, or "<seq>"
	kind    string
	off     int64
	n       int64
	control bool // leaves the data the store uses untouched
}

func (d damage) String() string {
	return fmt.Sprintf("%s/%s@%d+%d", strings.Trim(d.file, "<>"), d.kind, d.off, d.n)
}

func pickDamage(rng *rand.Rand, tp *storeTemplate, size func(string) int64) damage {
	if rng.IntN(20) == 0 {
		return damage{file: tp.files[0], kind: "none", control: true}
	}
	f := tp.files[rng.IntN(len(tp.files))]
	sz := size(f)
	if f == "DISCARD" && rng.IntN(4) == 0 {
		// The discard file is 1 MiB; only its first slots (16 bytes per
		// value-log file) are used.
		return damage{file: f, kind: "unused", off: 64<<10 + rng.Int64N(sz-128<<10), n: 4096, control: true}
	}
	if sz == 0 {
		return damage{file: f, kind: "none", control: true}
	}
	switch k := rng.IntN(5); k {
	case 0:
		return damage{file: f, kind: "flip", off: rng.Int64N(sz), n: 1 + rng.Int64N(16)}
	case 1:
		return damage{file: f, kind: "ff2k", off: rng.Int64N(sz), n: 2048}
	case 2:
		return damage{file: f, kind: "rand2k", off: rng.Int64N(sz), n: 2048}
	case 3:
		return damage{file: f, kind: "zero4k", off: rng.Int64N(sz) &^ 4095, n: 4096}
	default:
		return damage{file: f, kind: "truncate", off: rng.Int64N(sz)}
	}
}

// apply damages dir (a copy of the template). It reports false when the
// bytes were already what the damage writes (nothing changed).
func (d damage) apply(t *testing.T, rng *rand.Rand, dir string) bool {
	t.Helper()
	path := filepath.Join(dir, d.file)
	if d.file == "<seq>" {
		path = dir + ".seq"
	}
	switch d.kind {
	case "none":
		return false
	case "truncate":
		if err := os.Truncate(path, d.off); err != nil {
			t.Fatal(err)
		}
		return true
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n := min(d.n, fi.Size()-d.off)
	old := make([]byte, n)
	if _, err := f.ReadAt(old, d.off); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	switch d.kind {
	case "flip":
		copy(b, old)
		for i := range b {
			b[i] ^= byte(1 + rng.IntN(255))
		}
	case "ff2k":
		for i := range b {
			b[i] = 0xff
		}
	case "rand2k", "unused":
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
	case "zero4k":
	}
	if _, err := f.WriteAt(b, d.off); err != nil {
		t.Fatal(err)
	}
	return !bytes.Equal(b, old)
}

func TestCorruptStoreFuzz(t *testing.T) {
	n, seed := fuzzCases()
	root := fastTempDir(t)
	tps := []*storeTemplate{buildTemplate(t, root, false), buildTemplate(t, root, true)}
	sizes := make([]map[string]int64, len(tps))
	for i, tp := range tps {
		sizes[i] = map[string]int64{}
		for _, f := range tp.files {
			p := filepath.Join(tp.dir, f)
			if f == "<seq>" {
				p = tp.dir + ".seq"
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			sizes[i][f] = fi.Size()
		}
		t.Logf("template %s: %d records, files %v", tp.name, len(tp.want), sizes[i])
	}
	var mu sync.Mutex
	outcome := map[string]int{}
	byFile := map[string]int{}
	var panics atomic.Int32
	// Cases mostly wait (Open's retry pauses, syncs): 8 workers, whatever
	// -parallel says.
	t.Run("cases", func(t *testing.T) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					rng := rand.New(rand.NewPCG(seed, uint64(i)))
					ti := rng.IntN(len(tps))
					tp := tps[ti]
					d := pickDamage(rng, tp, func(f string) int64 { return sizes[ti][f] })
					t.Run(fmt.Sprintf("case-%04d-%s-%s", i, tp.name, d), func(t *testing.T) {
						res := runFuzzCase(t, root, rng, tp, d, &panics)
						mu.Lock()
						outcome[res]++
						byFile[fileKind(d.file)+": "+res]++
						mu.Unlock()
					})
				}
			})
		}
		wg.Wait()
	})
	t.Logf("%d cases (seed %d): %v; panics %d", n, seed, outcome, panics.Load())
	keys := slices.Sorted(maps.Keys(byFile))
	for _, k := range keys {
		t.Logf("  %-40s %d", k, byFile[k])
	}
}

// runFuzzCase runs one case and returns its outcome class.
func runFuzzCase(t *testing.T, root string, rng *rand.Rand, tp *storeTemplate, d damage, panics *atomic.Int32) string {
	dir, err := os.MkdirTemp(root, "case-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	o := buffer.DefaultOptions(filepath.Join(dir, "queue"))
	o.LiveWindow = -1
	o.MinFree = -1
	copyStore(t, tp.dir, o.Dir)
	changed := d.apply(t, rng, o.Dir)
	control := d.control || !changed

	var q *buffer.Queue
	func() {
		defer func() {
			if r := recover(); r != nil {
				panics.Add(1)
				t.Fatalf("Open panicked: %v\n%s", r, debug.Stack())
			}
		}()
		q, err = buffer.Open(o)
	}()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { _ = q.Close() }()
	moved, _ := filepath.Glob(o.Dir + ".corrupt-*")
	quarantined := len(moved) > 0
	if control && quarantined {
		t.Fatalf("intact store quarantined: %s", q.Stats().Degraded)
	}
	var got []buffer.Record
	for {
		recs, err := q.Lease(1000, 0)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		got = append(got, recs...)
	}
	for _, r := range got {
		w, ok := tp.written[r.Seq]
		if !ok || w.class != r.Class || !bytes.Equal(w.data, r.Data) {
			t.Fatalf("record %d (class %v, %d bytes) was not written so (known %v)", r.Seq, r.Class, len(r.Data), ok)
		}
	}
	if control && !sameSeqs(got, tp.want) {
		t.Fatalf("undamaged store returned %d records, want %d (degraded %q)", len(got), len(tp.want), q.Stats().Degraded)
	}
	s, err := q.Append(context.Background(), buffer.ClassCritical, []byte("after"))
	if err != nil {
		t.Fatalf("Append after damage: %v", err)
	}
	if s <= tp.lastSeq {
		t.Fatalf("seq %d reused (template handed out up to %d)", s, tp.lastSeq)
	}
	if control && s != tp.lastSeq+1 {
		t.Fatalf("seq jumped from %d to %d on an undamaged store", tp.lastSeq, s)
	}
	recs, err := q.Lease(10, 0)
	if err != nil || len(recs) != 1 || recs[0].Seq != s {
		t.Fatalf("Lease after Append = %v, %v; want seq %d", recs, err, s)
	}
	if err := q.Ack(s); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := q.Ack(seqsOf(got)...); err != nil {
		t.Fatalf("Ack of the survivors: %v", err)
	}
	if err := q.Close(); err != nil && !errors.Is(err, buffer.ErrClosed) {
		t.Logf("Close: %v", err)
	}
	switch {
	case quarantined:
		return "quarantined"
	case sameSeqs(got, tp.want):
		return "all records"
	default:
		return "some records dropped"
	}
}

// sameSeqs reports whether recs are exactly the records of want.
func sameSeqs(recs []buffer.Record, want map[uint64]tmplRec) bool {
	if len(recs) != len(want) {
		return false
	}
	for _, r := range recs {
		if _, ok := want[r.Seq]; !ok {
			return false
		}
	}
	return true
}

// fastTempDir returns a temp dir on /dev/shm when there is one (the cases
// fsync; on a busy disk that, not the CPU, would set the test's duration),
// else t.TempDir().
func fastTempDir(t *testing.T) string {
	if d, err := os.MkdirTemp("/dev/shm", "tcu-buffer-fuzz-"); err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}

// fileKind names a store file by its type (*.sst, *.vlog, *.mem, ...).
func fileKind(name string) string {
	if ext := filepath.Ext(name); ext != "" {
		return "*" + ext
	}
	return name
}

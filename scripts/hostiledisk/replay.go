package main

// Offline cuts: from the write log of one writer run and the console
// lines stamped on the same clock, the disk of a power cut just before
// flush j+1 completed, and the records that must be on it.
//
// Why it is sound. The server carries out requests one at a time, in the
// order it logs them, and logs a flush after its fsync, before it replies.
// Cut point j (0 <= j <= K, K flushes in the log; only those with writes
// pending are used) is the instant just
// before flush j+1 completed (j = K: the end of the run). At that instant
// the durable state is every write logged before flush j (all of them
// applied in order: "base + up to flush j"), and the writes pending are
// exactly those logged between flush j and flush j+1: the image of cut j
// is the durable state plus what the mode persists of those. A record
// the guest acknowledged (its ACKED line, printed after its sync returned)
// had its sync's flush complete, and the guest saw that flush's reply,
// before the line was printed; the host stamps the line no earlier than
// that. So a line stamped before flush j+1's completion time depends only
// on flushes 1..j, all durable in cut j's image: it must be present.
// Late stamps only move a record to a later cut (weaker, still sound).
// ACKING lines (the consumer's acks, records that may be gone) are taken
// from the whole run, whatever their stamp: an early stamp would excuse
// too little, so every ack of the run excuses its records (sound, and
// weaker only for the few records the consumer acked after the cut).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// replayConfig is the input of one replay.
type replayConfig struct {
	Log, Base, Console, Out string
	Cuts                    int   // cut points to make (all if more than there are)
	Points                  []int // these cut points instead (reproducing a cut)
	Pending                 int   // > 0: only cut points with exactly this many writes pending
	Mode                    Mode
	Seed                    uint64
	Manifest                io.Writer
}

// ackLine matches a complete ACKED or ACKING line (the cut may tear one).
var ackLine = regexp.MustCompile(`^(ACKED [0-9]+ [0-9]+ [0-9]+ [0-9]+|ACKING [0-9]+ [0-9]+) end$`)

// stamped is a console line and when the host read it.
type stamped struct {
	t    int64
	line string
}

// readStamped reads "NANOS LINE" lines (hostiledisk stamp) and keeps the
// ACKED and ACKING ones.
func readStamped(r io.Reader) (acked []stamped, acking []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		ts, line, ok := strings.Cut(sc.Text(), " ")
		if !ok || !ackLine.MatchString(line) {
			continue
		}
		t, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("stamped line %q: %w", sc.Text(), err)
		}
		if strings.HasPrefix(line, "ACKING") {
			acking = append(acking, line)
		} else {
			acked = append(acked, stamped{t, line})
		}
	}
	return acked, acking, sc.Err()
}

// cutSeed derives cut j's seed from the run's.
func cutSeed(seed uint64, j int) uint64 {
	z := seed + uint64(j+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// replay makes cfg.Cuts cut images (Out/cut-J.img, J the cut point) and
// their acked files (Out/cut-J.acked) and writes one manifest line each.
func replay(cfg replayConfig) error {
	cf, err := os.Open(cfg.Console)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	acked, acking, err := readStamped(cf)
	_ = cf.Close()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	writes, err := countIntervals(cfg.Log)
	if err != nil {
		return err
	}
	flushes := len(writes) - 1
	points := choosePoints(writes, cfg.Cuts, cfg.Pending, cfg.Seed)
	if cfg.Points != nil {
		points = slices.Sorted(slices.Values(cfg.Points))
	}
	work := filepath.Join(cfg.Out, "work.img")
	if err := copySparse(work, cfg.Base); err != nil {
		return err
	}
	defer func() { _ = os.Remove(work) }()
	wf, err := os.OpenFile(work, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer func() { _ = wf.Close() }()
	lf, err := os.Open(cfg.Log)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer func() { _ = lf.Close() }()
	lr, err := newLogReader(lf)
	if err != nil {
		return err
	}
	var pending []op
	j := 0
	cut := func(t int64) error {
		if _, ok := slices.BinarySearch(points, j); !ok {
			return nil
		}
		return makeCut(cfg, wf, work, j, flushes, t, pending, acked, acking)
	}
	for {
		rec, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if rec.kind != recFlush {
			pending = append(pending, rec.op)
			continue
		}
		if err := cut(rec.t); err != nil {
			return err
		}
		for _, o := range pending {
			if err := o.writeTo(wf, -1, 0); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
		}
		pending = pending[:0]
		j++
	}
	return cut(math.MaxInt64)
}

// makeCut writes cut point j's image and acked file.
func makeCut(cfg replayConfig, wf *os.File, work string, j, flushes int, t int64, pending []op, acked []stamped, acking []string) error {
	base := filepath.Join(cfg.Out, fmt.Sprintf("cut-%04d", j))
	if err := copySparse(base+".img", work); err != nil {
		return err
	}
	f, err := os.OpenFile(base+".img", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	p := planCut(pending, cfg.Mode, cutSeed(cfg.Seed, j))
	err = p.apply(f, pending)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("replay cut %d: %w", j, err)
	}
	var b strings.Builder
	n := 0
	for _, a := range acked {
		if a.t < t {
			b.WriteString(a.line + "\n")
			n++
		}
	}
	for _, l := range acking {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(base+".acked", []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	_, err = fmt.Fprintf(cfg.Manifest, "CUT %s flush=%d/%d acked_lines=%d/%d %s\n", filepath.Base(base), j, flushes, n, len(acked), p)
	return err
}

// countIntervals returns, for each cut point 0..K of a log with K
// flushes, the number of writes logged between flush j and flush j+1.
func countIntervals(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer func() { _ = f.Close() }()
	lr, err := newLogReader(f)
	if err != nil {
		return nil, err
	}
	n := []int{0}
	for {
		rec, err := lr.next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return nil, err
		}
		if rec.kind == recFlush {
			n = append(n, 0)
		} else {
			n[len(n)-1]++
		}
	}
}

// choosePoints picks up to cuts cut points, sorted, given the number of
// writes pending at each (writes[j]). Cut points with no write pending
// are the durable state alone (the run's every flush): only those with
// writes at stake are picked, those with two or more first (where a
// subset can reorder or drop an earlier write and keep a later one).
// pending > 0 picks only among the cut points with exactly that many
// writes pending (1: a lone write, in data=journal mostly a jbd2 commit
// block, the one whose tear the 6.1 kernel refuses to mount).
func choosePoints(writes []int, cuts, pending int, seed uint64) []int {
	var many, one, exact []int
	for j, n := range writes {
		switch {
		case pending > 0 && n == pending:
			exact = append(exact, j)
		case n > 1:
			many = append(many, j)
		case n == 1:
			one = append(one, j)
		}
	}
	if pending > 0 {
		return pickCuts(exact, cuts, seed)
	}
	points := pickCuts(many, cuts, seed)
	if len(points) < cuts {
		points = append(points, pickCuts(one, cuts-len(points), seed)...)
		slices.Sort(points)
	}
	return points
}

// pickCuts picks want distinct cut points of cands (all of them if want
// >= len(cands)), sorted, from seed.
func pickCuts(cands []int, want int, seed uint64) []int {
	all := slices.Clone(cands)
	if want < len(all) {
		r := rand.New(rand.NewPCG(seed, 0x63757473)) //nolint:gosec // "cuts": seeded on purpose, cuts must be reproducible
		r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		all = all[:max(want, 0)]
	}
	slices.Sort(all)
	return all
}

// copySparse copies src to dst keeping holes (SEEK_DATA/SEEK_HOLE).
func copySparse(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer func() { _ = in.Close() }()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	err = copyData(out, in, fi.Size())
	if err == nil {
		err = out.Truncate(fi.Size())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

func copyData(out, in *os.File, size int64) error {
	for off := int64(0); off < size; {
		data, err := in.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				return nil // only a hole is left
			}
			return err
		}
		hole, err := in.Seek(data, seekHole)
		if err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(out, io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

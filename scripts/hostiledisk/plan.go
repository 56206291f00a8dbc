package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
)

// Mode says which of the writes pending at a power cut persist.
type Mode string

// The modes of -mode.
const (
	ModeNothing  Mode = "nothing"   // none of them
	ModePrefix   Mode = "prefix"    // the first k, k random in 0..n
	ModeSubset   Mode = "subset"    // each with probability 1/2, in random order
	ModeTorn     Mode = "torn"      // a subset, and one 4 KiB page of another write torn
	ModeMixed    Mode = "mixed"     // one of the four above, chosen by the seed
	ModeNoneLost Mode = "none-lost" // all of them, in order (the control)
)

// ParseMode checks a -mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeNothing, ModePrefix, ModeSubset, ModeTorn, ModeMixed, ModeNoneLost:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want nothing, prefix, subset, torn, mixed or none-lost", s)
}

// CutPlan is what a cut persists of n pending writes: Order lists the
// indexes written, in that order; then, if TornOp >= 0, write TornOp is
// written except the sectors of its 4 KiB page at TornPage whose bit in
// TornKeep is clear (those keep their old content).
type CutPlan struct {
	At       string // when the cut came (serve), empty in replay
	Mode     Mode   // the mode applied (for mixed: the one the seed chose)
	Asked    Mode   // the mode asked for
	Seed     uint64 //
	Pending  int    // writes pending at the cut
	Order    []int  //
	TornOp   int    // -1: no torn page
	TornPage int64  // byte offset of the torn page
	TornKeep uint8  // bit i set: sector i of the page is new
}

// planCut decides, from seed alone, what persists of pending under mode.
func planCut(pending []op, mode Mode, seed uint64) CutPlan {
	r := rand.New(rand.NewPCG(seed, 0x686f7374696c65)) //nolint:gosec // "hostile": seeded on purpose, cuts must be reproducible
	p := CutPlan{Mode: mode, Asked: mode, Seed: seed, Pending: len(pending), TornOp: -1}
	if mode == ModeMixed {
		p.Mode = []Mode{ModeNothing, ModePrefix, ModeSubset, ModeTorn}[r.IntN(4)]
	}
	n := len(pending)
	switch p.Mode {
	case ModeNothing:
	case ModeNoneLost:
		for i := range n {
			p.Order = append(p.Order, i)
		}
	case ModePrefix:
		for i := range r.IntN(n + 1) {
			p.Order = append(p.Order, i)
		}
	case ModeSubset, ModeTorn:
		for i := range n {
			if r.IntN(2) == 1 {
				p.Order = append(p.Order, i)
			}
		}
		r.Shuffle(len(p.Order), func(i, j int) { p.Order[i], p.Order[j] = p.Order[j], p.Order[i] })
		if p.Mode == ModeTorn {
			p.tear(pending, r)
		}
	}
	return p
}

// tear picks a write holding a whole aligned 4 KiB page, one such page,
// and a proper non-empty subset of its eight sectors to persist; the write
// is taken out of Order and written last. Without such a write nothing is
// torn (TornOp stays -1).
func (p *CutPlan) tear(pending []op, r *rand.Rand) {
	var cands []int
	for i, o := range pending {
		if o.data != nil && firstPage(o) < o.end() {
			cands = append(cands, i)
		}
	}
	if len(cands) == 0 {
		return
	}
	i := cands[r.IntN(len(cands))]
	o := pending[i]
	lo := firstPage(o)
	pages := (o.end() - lo) / pageSize
	p.TornOp = i
	p.TornPage = lo + r.Int64N(pages)*pageSize
	p.TornKeep = uint8(1 + r.IntN(254)) // 1..254: some sectors new, some old
	for k, j := range p.Order {
		if j == i {
			p.Order = append(p.Order[:k], p.Order[k+1:]...)
			break
		}
	}
}

// firstPage is the offset of o's first whole aligned 4 KiB page (>= o's
// end when there is none).
func firstPage(o op) int64 {
	lo := (o.off + pageSize - 1) / pageSize * pageSize
	if lo+pageSize > o.end() {
		return o.end()
	}
	return lo
}

// apply writes the plan's writes of pending to w.
func (p CutPlan) apply(w io.WriterAt, pending []op) error {
	for _, i := range p.Order {
		if err := pending[i].writeTo(w, -1, 0); err != nil {
			return err
		}
	}
	if p.TornOp >= 0 {
		return pending[p.TornOp].writeTo(w, p.TornPage, p.TornKeep)
	}
	return nil
}

// String describes the plan on one line: mode, seed, counts, a hash of
// the order (reproducibility check) and the torn page.
func (p CutPlan) String() string {
	h := fnv.New64a()
	for _, i := range p.Order {
		fmt.Fprintf(h, "%d,", i)
	}
	var b strings.Builder
	if p.At != "" {
		fmt.Fprintf(&b, "at=%q ", p.At)
	}
	fmt.Fprintf(&b, "mode=%s asked=%s seed=%d pending=%d persisted=%d order_hash=%016x", p.Mode, p.Asked, p.Seed, p.Pending, len(p.Order), h.Sum64())
	if len(p.Order) > 0 {
		k := min(len(p.Order), 8)
		fmt.Fprintf(&b, " order=%v", p.Order[:k])
		if k < len(p.Order) {
			b.WriteString("...")
		}
	}
	if p.TornOp >= 0 {
		fmt.Fprintf(&b, " torn_op=%d torn_page=%d torn_keep=%08b", p.TornOp, p.TornPage, p.TornKeep)
	} else if p.Mode == ModeTorn {
		b.WriteString(" torn=none(no pending write holds a whole page)")
	}
	return b.String()
}

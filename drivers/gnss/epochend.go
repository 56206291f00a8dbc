package gnss

import (
	"strconv"
	"time"
)

// epochEnd learns which sentence ends a receiver's measurement epoch, so a
// fix can be emitted when the epoch is complete instead of when the next
// one starts (a second later at 1 Hz). A sentence is identified by talker,
// type and its occurrence in the epoch (receivers send several GSA or GSV
// per epoch). The zero value is ready; it learns from the first epoch
// boundary and stops ending epochs early for good if the stream proves the
// learned end wrong.
type epochEnd struct {
	counts   map[string]int // occurrences of each sentence in the epoch
	last     string         // key of the last sentence of the epoch so far
	ender    string         // learned key of an epoch's last sentence
	disabled bool

	closedTOD time.Duration // time of day of the epoch ended early
	hasClosed bool
}

// seen records s in the current epoch and reports whether it is the
// learned end of an epoch.
func (e *epochEnd) seen(s Sentence) bool {
	if e.counts == nil {
		e.counts = map[string]int{}
	}
	k := s.Talker + s.Type
	e.counts[k]++
	e.last = k + "#" + strconv.Itoa(e.counts[k])
	return !e.disabled && e.ender != "" && e.last == e.ender
}

// learn takes the last sentence of the epoch now ending at a boundary as
// the end of epochs to come.
func (e *epochEnd) learn() {
	if !e.disabled {
		e.ender = e.last
	}
}

// closed notes that the epoch at tod was ended early.
func (e *epochEnd) closed(tod TimeOfDay) {
	e.closedTOD, e.hasClosed = tod.D, true
}

// stale reports whether tod belongs to the epoch ended early, and if so
// disables early ends.
func (e *epochEnd) stale(tod TimeOfDay) bool {
	if !e.hasClosed {
		return false
	}
	if tod.D == e.closedTOD {
		e.disabled, e.ender, e.hasClosed = true, "", false
		return true
	}
	e.hasClosed = false
	return false
}

// reset starts counting a new epoch.
func (e *epochEnd) reset() {
	clear(e.counts)
	e.last = ""
}

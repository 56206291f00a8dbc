package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/telemetry"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
)

// uplinkQueue adapts the buffer to the interface the MQTT session consumes
// (the uplink declares its own Record and Class so that it does not depend
// on the buffer package).
type uplinkQueue struct{ q *buffer.Queue }

var classToUplink = map[buffer.Class]uplink.Class{
	buffer.ClassCritical:  uplink.ClassCritical,
	buffer.ClassEvent:     uplink.ClassEvent,
	buffer.ClassTelemetry: uplink.ClassTelemetry,
}

func (u uplinkQueue) Lease(max, maxBytes int) ([]uplink.Record, error) {
	return u.LeaseClasses(max, maxBytes, nil)
}

// LeaseClasses implements uplink.ClassLeaser (profiles that only buffer
// some classes).
func (u uplinkQueue) LeaseClasses(max, maxBytes int, allow func(uplink.Class) bool) ([]uplink.Record, error) {
	var filter func(buffer.Class) bool
	if allow != nil {
		filter = func(c buffer.Class) bool { return allow(classToUplink[c]) }
	}
	recs, err := u.q.LeaseClasses(max, maxBytes, filter)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	// The buffer picks which records go first (live before backlog, which
	// it serves newest first); within one lease, put them back in seq order
	// per class so every message lists its records in ascending seq.
	slices.SortStableFunc(recs, func(a, b buffer.Record) int {
		if a.Class != b.Class {
			return cmp.Compare(a.Class, b.Class)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	out := make([]uplink.Record, len(recs))
	for i, r := range recs {
		out[i] = uplink.Record{Seq: r.Seq, Class: classToUplink[r.Class], Time: r.Time, Data: r.Data}
	}
	return out, nil
}

func (u uplinkQueue) Ack(seqs ...uint64) error { return u.q.Ack(seqs...) }
func (u uplinkQueue) Release(seqs ...uint64)   { u.q.Release(seqs...) }
func (u uplinkQueue) Ready() <-chan struct{}   { return u.q.Ready() }

// store is the capture side's view of the buffer: it may not be open yet
// (a storage fault at start) or may refuse appends for a while (read-only,
// I/O errors, disk full). Records it cannot append are held in memory,
// bounded (oldest telemetry dropped first, counted), and appended in order
// before the next ones once the buffer takes them again. It is safe for
// concurrent use.
type store struct {
	maxHeld int
	log     *slog.Logger

	mu    sync.Mutex
	q     *buffer.Queue // guarded by mu; nil until opened
	held  [2][][]byte   // guarded by mu; by telemetry.Class
	ready chan struct{} // closed when q is set
	err   error         // guarded by mu; the last open or append fault
	drops atomic.Uint64 // held records dropped (bound or stop)
	heldN atomic.Int64  // records held now
}

func newStore(maxHeld int, log *slog.Logger) *store {
	return &store{maxHeld: max(maxHeld, 1), log: log, ready: make(chan struct{})}
}

// queue returns the open buffer, or nil.
func (s *store) queue() *buffer.Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q
}

// setQueue makes q the buffer; the held records go first on the next append.
func (s *store) setQueue(q *buffer.Queue) {
	s.mu.Lock()
	s.q, s.err = q, nil
	close(s.ready)
	s.mu.Unlock()
	if s.heldN.Load() > 0 {
		// Records held while the buffer opened (start-up events) go in
		// now, not with the next append a telemetry interval later: the
		// uplink sends them right after it connects.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.append(ctx, telemetry.ClassEvent, nil)
		cancel()
	}
}

// fault returns the last storage fault that is not resolved yet, or nil.
func (s *store) fault() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *store) setFault(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// append is the telemetry pipeline's AppendFunc. It returns nil when the
// records are stored or held; an error only when the buffer refused them
// for good (full by its bounds, too large): those it counted itself.
func (s *store) append(ctx context.Context, c telemetry.Class, data [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q == nil {
		s.holdLocked(c, data)
		return nil
	}
	// Older held records first, events before telemetry as the pipeline does.
	for _, hc := range []telemetry.Class{telemetry.ClassEvent, telemetry.ClassTelemetry} {
		if len(s.held[hc]) == 0 {
			continue
		}
		recs := s.held[hc]
		s.held[hc] = nil
		s.heldN.Add(-int64(len(recs)))
		if rest, err := s.appendLocked(ctx, hc, recs); err != nil {
			s.holdLocked(hc, rest)
			s.holdLocked(c, data)
			return nil
		}
	}
	if len(data) == 0 {
		return nil
	}
	rest, err := s.appendLocked(ctx, c, data)
	if err != nil {
		s.holdLocked(c, rest)
		return nil
	}
	if len(rest) > 0 {
		return fmt.Errorf("append: %d records refused by the buffer", len(rest))
	}
	return nil
}

// appendLocked appends recs and returns those not stored. A non-nil error
// means the fault is transient: the records returned are to be held. With
// a nil error, the records returned were refused for good (and counted by
// the buffer).
func (s *store) appendLocked(ctx context.Context, c telemetry.Class, recs [][]byte) ([][]byte, error) {
	class := buffer.ClassTelemetry
	if c == telemetry.ClassEvent {
		class = buffer.ClassEvent
	}
	seqs, err := s.q.AppendBatch(ctx, class, recs)
	if err == nil {
		if s.err != nil {
			s.log.Info("buffer takes records again", "after", s.err)
			s.err = nil
		}
		return nil, nil
	}
	var rest [][]byte
	if len(seqs) != len(recs) { // nothing known to be stored
		rest = recs
	} else {
		for i, seq := range seqs {
			if seq == 0 {
				rest = append(rest, recs[i])
			}
		}
	}
	if !transientAppendError(err) {
		return rest, nil
	}
	if s.err == nil {
		s.log.Warn("buffer refuses records, holding them in memory", "err", err, "held_max", s.maxHeld)
	}
	s.err = err
	return rest, err
}

// holdLocked keeps recs, dropping the oldest telemetry (then events) over
// the bound.
func (s *store) holdLocked(c telemetry.Class, recs [][]byte) {
	s.held[c] = append(s.held[c], recs...)
	n := int64(len(s.held[0]) + len(s.held[1]))
	for over := n - int64(s.maxHeld); over > 0; {
		k := telemetry.ClassTelemetry
		if len(s.held[k]) == 0 {
			k = telemetry.ClassEvent
		}
		d := min(over, int64(len(s.held[k])))
		s.held[k] = s.held[k][d:]
		s.drops.Add(uint64(d))
		over -= d
		n -= d
	}
	s.heldN.Store(n)
}

// close appends what is held (within ctx) and reports what was lost.
func (s *store) close(ctx context.Context) {
	s.mu.Lock()
	q := s.q
	s.mu.Unlock()
	if q != nil && s.heldN.Load() > 0 {
		_ = s.append(ctx, telemetry.ClassEvent, nil)
	}
	if n := s.heldN.Load(); n > 0 {
		s.drops.Add(uint64(n))
		s.log.Error("records held in memory lost at stop: the buffer never took them", "records", n, "err", s.fault())
	}
}

// transientAppendError says whether an append failure may clear by itself
// (storage fault, closing, cancelled) rather than a refusal by the buffer's
// bounds or of the record itself.
func transientAppendError(err error) bool {
	switch {
	case errors.Is(err, buffer.ErrTooLarge), errors.Is(err, buffer.ErrInvalid):
		return false
	case errors.Is(err, buffer.ErrFull):
		return isStorageFault(err) // disk full: retry; bounds: shed
	}
	return true
}

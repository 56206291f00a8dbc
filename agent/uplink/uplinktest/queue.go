// Package uplinktest provides an in-memory uplink.Queue with fault knobs
// for tests of the uplink session and of code that wires it.
package uplinktest

import (
	"container/heap"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
)

// Queue is an in-memory uplink.Queue. The zero value is not usable; call
// NewQueue. It is safe for concurrent use.
type Queue struct {
	ready chan struct{}

	mu       sync.Mutex
	nextSeq  uint64
	items    map[uint64]uplink.Record // guarded by mu; not yet acked
	leased   map[uint64]bool          // guarded by mu
	free     [3]seqHeap               // guarded by mu; unleased seqs per class
	acked    int                      // guarded by mu
	badAcks  int                      // guarded by mu; acks of records not leased
	failNext error                    // guarded by mu
	ackFail  error                    // guarded by mu
}

// NewQueue returns an empty queue whose first seq is 1.
func NewQueue() *Queue {
	return &Queue{ready: make(chan struct{}, 1), nextSeq: 1,
		items: make(map[uint64]uplink.Record), leased: make(map[uint64]bool)}
}

// Append stores raw data and returns its seq.
func (q *Queue) Append(class uplink.Class, t time.Time, data []byte) uint64 {
	q.mu.Lock()
	seq := q.nextSeq
	q.nextSeq++
	q.items[seq] = uplink.Record{Seq: seq, Class: class, Time: t, Data: slices.Clone(data)}
	heap.Push(&q.free[classIndex(class)], seq)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return seq
}

// AppendRecord encodes r with record.Marshal and appends it.
func (q *Queue) AppendRecord(class uplink.Class, r record.Record) (uint64, error) {
	b, err := r.Marshal()
	if err != nil {
		return 0, fmt.Errorf("append record: %w", err)
	}
	return q.Append(class, r.Time, b), nil
}

// FailLease makes the next Lease return err.
func (q *Queue) FailLease(err error) {
	q.mu.Lock()
	q.failNext = err
	q.mu.Unlock()
}

// FailAck makes every Ack return err (records stay) until called with nil.
func (q *Queue) FailAck(err error) {
	q.mu.Lock()
	q.ackFail = err
	q.mu.Unlock()
}

// Lease returns unleased records, highest class first, then by seq.
func (q *Queue) Lease(max int, maxBytes int) ([]uplink.Record, error) {
	return q.LeaseClasses(max, maxBytes, nil)
}

// LeaseClasses is Lease restricted to the classes allow accepts (nil:
// all). It implements uplink.ClassLeaser.
func (q *Queue) LeaseClasses(max int, maxBytes int, allow func(uplink.Class) bool) ([]uplink.Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.failNext; err != nil {
		q.failNext = nil
		return nil, err
	}
	var out []uplink.Record
	size := 0
	for c := len(q.free) - 1; c >= 0; c-- {
		if allow != nil && !allow(uplink.Class(c)) {
			continue
		}
		h := &q.free[c]
		for h.Len() > 0 && len(out) < max {
			seq := (*h)[0]
			r, ok := q.items[seq]
			if !ok || q.leased[seq] { // acked or leased twice: skip
				heap.Pop(h)
				continue
			}
			if len(out) > 0 && size+len(r.Data) > maxBytes {
				return out, nil
			}
			heap.Pop(h)
			size += len(r.Data)
			q.leased[seq] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// Ack deletes leased records.
func (q *Queue) Ack(seqs ...uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ackFail != nil {
		return q.ackFail
	}
	for _, s := range seqs {
		if !q.leased[s] {
			q.badAcks++
			continue
		}
		delete(q.leased, s)
		delete(q.items, s)
		q.acked++
	}
	return nil
}

// Release un-leases records.
func (q *Queue) Release(seqs ...uint64) {
	q.mu.Lock()
	for _, s := range seqs {
		if r, ok := q.items[s]; ok && q.leased[s] {
			delete(q.leased, s)
			heap.Push(&q.free[classIndex(r.Class)], s)
		}
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled after Append and Release.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Counts reports records stored (unacked), leased now, acked in total,
// and acks of records that were not leased (always a bug).
func (q *Queue) Counts() (stored, leased, acked, badAcks int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), len(q.leased), q.acked, q.badAcks
}

func classIndex(c uplink.Class) int { return min(int(c), 2) }

// seqHeap is a min-heap of seqs.
type seqHeap []uint64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seqHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

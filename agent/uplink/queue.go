package uplink

import "time"

// Class is a buffered record's priority class (mirrors buffer.Class).
type Class uint8

// Record classes, lowest priority first (mirrors the buffer package).
const (
	ClassTelemetry Class = iota
	ClassEvent
	ClassCritical
)

// Record is one leased buffer record (mirrors buffer.Record). Data is the
// agent/record encoding of the item.
type Record struct {
	Seq   uint64
	Class Class
	Time  time.Time
	Data  []byte
}

// Queue is the part of the durable buffer the session consumes. Leased
// records are not handed out again until they are released; a record is
// deleted only by Ack, which the session calls after the broker's PUBACK
// for the message that carried it.
type Queue interface {
	// Lease hands out up to max records (and about maxBytes of Data),
	// highest class first, then oldest first.
	Lease(max int, maxBytes int) ([]Record, error)
	// Ack deletes records whose message the broker acknowledged.
	Ack(seqs ...uint64) error
	// Release makes leased records available again (publish failed or the
	// connection was lost before the PUBACK).
	Release(seqs ...uint64)
	// Ready is signalled after an append.
	Ready() <-chan struct{}
}

// ClassLeaser is a Queue that can lease only some classes. The session
// uses it while SetPublishClasses excludes a class, so that the excluded
// records stay in the buffer, not leased. A Queue without it gets them
// leased and released again (the session waits for the next append
// before it leases again).
type ClassLeaser interface {
	// LeaseClasses is Lease restricted to the classes allow accepts.
	LeaseClasses(max int, maxBytes int, allow func(Class) bool) ([]Record, error)
}

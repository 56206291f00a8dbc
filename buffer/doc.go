// Package buffer is tcu-agent's durable store-and-forward queue.
//
// Producers Append opaque records in one of three priority classes; the
// publisher Leases records, publishes them and Acks them once the broker has
// acknowledged them (or Releases them when publishing failed). A record is
// durable, per the configured SyncPolicy, before Append returns, and it is
// removed only by Ack, by eviction when the queue is over its bounds, or by
// its class TTL. Leases live in memory only: after a crash every unacked
// record is leased again (at-least-once, never skipped).
//
// The store is Badger (github.com/dgraph-io/badger/v4) tuned for a ~32 MB
// resident budget. The on-disk layout is documented in keys.go and
// docs/buffer.md. The package knows nothing about MQTT or record contents.
package buffer

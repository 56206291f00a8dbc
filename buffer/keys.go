package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key registry. Every key the queue writes is listed here with its format
// and the schema version that introduced it (mender datastore/dbkeys.go
// style). A change of any format bumps schemaVersion; a store with another
// schema is never reinterpreted (Open moves it aside, see open.go).
//
// All integers are big-endian so that Badger's byte order is numeric order.
//
// Records are packed into chunks: the records of one class committed
// together (up to maxChunkRecords / maxChunkData) share one Badger entry
// whose value lives in Badger's value log. The LSM tree holds only the
// chunk keys, value pointers and a few meta keys, so a record is written to
// flash about once (value log) instead of three times (WAL, L0, base
// level) with values inline; see docs/buffer.md.
const (
	// schemaVersion is the layout written by this code.
	// Schema 1 (one Badger entry per record, values inline) was replaced
	// by schema 2 (chunks in the value log).
	schemaVersion uint32 = 2

	// keySchema = "z/schema" -> uint32 schema version.
	// Introduced in schema 1. Written once when a store is created.
	keySchema = "z/schema"

	// keySeq = "z/seq" -> uint64 last seq handed out. Written in the same
	// Badger transaction as every batch of appended records, so a store
	// always knows the highest seq it holds or held.
	// Introduced in schema 1.
	keySeq = "z/seq"

	// keyEpoch = "z/epoch" -> uint64 open counter. Written (and synced) on
	// every Open together with the seq file next to the store (seqfile.go);
	// a mismatch means the directory is an older copy.
	// Introduced in schema 1.
	keyEpoch = "z/epoch"

	// keySynced = "z/synced" -> uint64: every seq at or below it was
	// synced before the transaction that wrote this value. Written with
	// each commit under always/group (the previous commit's last seq) and
	// at Open. Chunks above it may be torn by a power cut (open.go).
	// Introduced in schema 2.
	keySynced = "z/synced"

	// keyLoPrefix = "z/lo/" + class byte -> uint64 low-water seq of that
	// class: no chunk of the class starts below it, so every scan seeks
	// there instead of walking the tombstones of deleted chunks.
	// Introduced in schema 1.
	keyLoPrefix = "z/lo/"

	// chunkPrefix = 'c'. Chunk key (16 bytes):
	//
	//	'c' | bucket = first>>16 (6) | class (1) | first & 0xffff (2) |
	//	record count (2) | data bytes (4)
	//
	// The chunk holds the records first .. first+count-1 of the class
	// (seqs are consecutive inside a chunk). Count and data bytes are in
	// the key so that counting the queue at Open and finding the chunk of
	// a seq read keys only. Keys are bucket-major: the chunks of every
	// class appended now sort at the end of the key space, so an L0
	// compaction only overlaps the tail of the tree, never the backlog
	// (with class-major keys a 50 MB backlog of small inline chunks was
	// rewritten by every compaction: 6.6 disk bytes per payload byte in
	// BenchmarkOfflineBacklog, 4.2 bucket-major). Inside a bucket (65,536
	// seqs) a class's chunks are contiguous and in seq order; chunkIter
	// visits one class with one seek per bucket. Value: see chunk.go.
	// Introduced in schema 2.
	chunkPrefix byte = 'c'

	// gonePrefix = 'g'. Gone key: 'g' | class (1) | first seq (8) -> which
	// records of a partially acknowledged/evicted/expired chunk are gone
	// (see encodeGone). Deleted together with its chunk once every record
	// of the chunk is gone.
	// Introduced in schema 2.
	gonePrefix byte = 'g'

	// flushKey is written and immediately dropped with DropPrefix to make
	// Badger flush its memtable and compact L0 (gc.go). Never read.
	// Introduced in schema 2.
	flushKey = "y/flush"

	chunkKeyLen = 16
	goneKeyLen  = 10
)

// Chunk limits. A chunk holds at most maxChunkRecords records and, unless
// it holds a single record, at most maxChunkData data bytes: small enough
// that a lease of a few records does not read much, large enough that the
// per-chunk cost (key, value pointer, checksum) vanishes per record.
const (
	maxChunkRecords = 1024
	maxChunkData    = 64 << 10
)

// RecordOverhead is the number of bytes accounted for each record on top
// of its data (Stats bytes, MaxBytes): its length prefix plus its share of
// the chunk key, header and value pointer.
const RecordOverhead = 16

// errBadKey and errBadValue classify undecodable store contents.
var (
	errBadKey   = errors.New("bad chunk key")
	errBadValue = errors.New("bad chunk value")
)

// chunkRef names a stored chunk: everything its key holds but the class.
type chunkRef struct {
	first uint64
	n     uint16 // records
	data  uint32 // data bytes of all records
}

// end returns the seq after the chunk's last record.
func (r chunkRef) end() uint64 { return r.first + uint64(r.n) }

// holds reports whether seq is in the chunk.
func (r chunkRef) holds(seq uint64) bool { return seq >= r.first && seq < r.end() }

// accounted returns the accounted bytes of all the chunk's records.
func (r chunkRef) accounted() int64 { return int64(r.data) + int64(r.n)*RecordOverhead }

// chunkKey returns the key of chunk r of class c.
func chunkKey(c Class, r chunkRef) []byte {
	k := chunkSeek(c, r.first)
	k = binary.BigEndian.AppendUint16(k, r.n)
	return binary.BigEndian.AppendUint32(k, r.data)
}

// chunkSeek returns the smallest possible key of a chunk of class c
// starting at first: seeking there finds the first chunk of the class (in
// first's bucket) with a first seq >= first.
func chunkSeek(c Class, first uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], first>>bucketBits) // a bucket number fits 6 bytes
	k := make([]byte, 10, chunkKeyLen)
	k[0] = chunkPrefix
	copy(k[1:7], b[2:])
	k[7] = byte(c)
	binary.BigEndian.PutUint16(k[8:10], uint16(first)) //nolint:gosec // low 16 bits by design
	return k
}

// bucketBits: a bucket holds 1<<bucketBits consecutive seqs.
const bucketBits = 16

// bucketClassPrefix returns the prefix of the chunk keys of class c in
// bucket b.
func bucketClassPrefix(b uint64, c Class) []byte { return chunkSeek(c, b<<bucketBits)[:8] }

// decodeChunkKey parses a chunk key.
func decodeChunkKey(k []byte) (Class, chunkRef, error) {
	if len(k) != chunkKeyLen || k[0] != chunkPrefix {
		return 0, chunkRef{}, fmt.Errorf("%w: %x", errBadKey, k)
	}
	c := Class(k[7])
	bucket := binary.BigEndian.Uint64(append([]byte{0, 0}, k[1:7]...))
	r := chunkRef{
		first: bucket<<bucketBits | uint64(binary.BigEndian.Uint16(k[8:10])),
		n:     binary.BigEndian.Uint16(k[10:12]),
		data:  binary.BigEndian.Uint32(k[12:16]),
	}
	if !c.valid() || r.n == 0 || r.first == 0 || r.end() < r.first {
		return 0, chunkRef{}, fmt.Errorf("%w: %x", errBadKey, k)
	}
	return c, r, nil
}

// goneKey returns the gone-set key of chunk first of class c.
func goneKey(c Class, first uint64) []byte {
	k := make([]byte, goneKeyLen)
	k[0] = gonePrefix
	k[1] = byte(c)
	binary.BigEndian.PutUint64(k[2:], first)
	return k
}

// decodeGoneKey parses a gone-set key.
func decodeGoneKey(k []byte) (Class, uint64, error) {
	if len(k) != goneKeyLen || k[0] != gonePrefix || !Class(k[1]).valid() {
		return 0, 0, fmt.Errorf("%w: %x", errBadKey, k)
	}
	return Class(k[1]), binary.BigEndian.Uint64(k[2:]), nil
}

// loKey returns the low-water key of class c.
func loKey(c Class) []byte { return append([]byte(keyLoPrefix), byte(c)) }

func u64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d-byte counter", errBadValue, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func putU64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

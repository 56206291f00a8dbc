package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Key registry. Every key the queue writes is listed here with its format
// and the schema version that introduced it (mender datastore/dbkeys.go
// style). A change of any format bumps schemaVersion and adds a migration;
// a store with a newer schema is never reinterpreted (Open quarantines it).
//
// All integers are big-endian so that Badger's byte order is numeric order.
//
// Layout rule: new keys must always sort at the END of the key space.
// Badger compacts L0 into the base level by the key RANGE of the L0
// tables; a memtable holding keys from both ends of the key space makes
// every compaction rewrite everything in between (measured: 6.8 bytes
// written per payload byte). Hence meta keys start with 'z' (after the
// records) and record keys are bucket-major: records of all classes
// appended now share the newest bucket.
const (
	// schemaVersion is the layout written by this code.
	// Introduced in schema 1.
	schemaVersion uint32 = 1

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

	// keyLoPrefix = "z/lo/" + class byte -> uint64 low-water seq of that
	// class: every record of the class with a smaller seq is acknowledged,
	// evicted or expired (its key may still exist until its segment is
	// dropped). Written with every Ack/eviction that advances it.
	// Introduced in schema 1.
	keyLoPrefix = "z/lo/"

	// recPrefix = 'r'. Record key (10 bytes):
	//
	//	'r' | bucket = seq>>16 (6 bytes) | class (1 byte) | seq & 0xffff (2 bytes)
	//
	// A bucket holds 65536 consecutive seqs; inside it the records of a
	// class are contiguous and in seq order. The first 8 bytes name a
	// segment (bucket, class): fully acknowledged segments are removed
	// with one DropPrefix. Value: see encodeValue.
	// Introduced in schema 1.
	recPrefix byte = 'r'

	recKeyLen  = 10
	segmentLen = 8 // bytes of a record key that name its segment
	segBits    = 16

	// valueVersion is the first byte of every record value.
	// Introduced in schema 1.
	valueVersion byte = 1
	// valueHeaderLen: version (1) | append time, Unix ns (8) | CRC-32C of
	// data (4), followed by the data.
	valueHeaderLen = 13
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadKey and errBadValue classify undecodable store contents.
var (
	errBadKey   = errors.New("bad record key")
	errBadValue = errors.New("bad record value")
)

// recKey returns the key of record seq in class c.
func recKey(c Class, seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq>>segBits) // a bucket fits 6 bytes
	k := make([]byte, recKeyLen)
	k[0] = recPrefix
	copy(k[1:7], b[2:])
	k[7] = byte(c)
	binary.BigEndian.PutUint16(k[8:], uint16(seq)) //nolint:gosec // low 16 bits by design
	return k
}

// recordsPrefix is the prefix of every record key.
var recordsPrefix = []byte{recPrefix}

// segmentPrefix returns the DropPrefix prefix of the segment of class c
// holding seq.
func segmentPrefix(c Class, seq uint64) []byte { return recKey(c, seq)[:segmentLen] }

// segmentOf returns the bucket number of seq.
func segmentOf(seq uint64) uint64 { return seq >> segBits }

// decodeKey parses a record key.
func decodeKey(k []byte) (Class, uint64, error) {
	if len(k) != recKeyLen || k[0] != recPrefix {
		return 0, 0, fmt.Errorf("%w: %x", errBadKey, k)
	}
	c := Class(k[7])
	if !c.valid() {
		return 0, 0, fmt.Errorf("%w: class %d", errBadKey, c)
	}
	bucket := binary.BigEndian.Uint64(append([]byte{0, 0}, k[1:7]...))
	return c, bucket<<segBits | uint64(binary.BigEndian.Uint16(k[8:])), nil
}

// loKey returns the low-water key of class c.
func loKey(c Class) []byte { return append([]byte(keyLoPrefix), byte(c)) }

// encodeValue returns the stored form of a record appended at t.
func encodeValue(t time.Time, data []byte) []byte {
	v := make([]byte, valueHeaderLen+len(data))
	v[0] = valueVersion
	binary.BigEndian.PutUint64(v[1:9], uint64(t.UnixNano()))
	binary.BigEndian.PutUint32(v[9:13], crc32.Checksum(data, crcTable))
	copy(v[valueHeaderLen:], data)
	return v
}

// decodeValue parses a stored record value. The returned data aliases v.
func decodeValue(v []byte) (time.Time, []byte, error) {
	if len(v) < valueHeaderLen {
		return time.Time{}, nil, fmt.Errorf("%w: %d bytes", errBadValue, len(v))
	}
	if v[0] != valueVersion {
		return time.Time{}, nil, fmt.Errorf("%w: version %d", errBadValue, v[0])
	}
	data := v[valueHeaderLen:]
	if crc32.Checksum(data, crcTable) != binary.BigEndian.Uint32(v[9:13]) {
		return time.Time{}, nil, fmt.Errorf("%w: checksum mismatch", errBadValue)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), data, nil
}

// recordBytes is the accounted size of a record holding n data bytes: key
// plus value. Stats and MaxBytes use it.
func recordBytes(n int) int64 { return int64(recKeyLen + valueHeaderLen + n) }

func u64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d-byte counter", errBadValue, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func putU64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

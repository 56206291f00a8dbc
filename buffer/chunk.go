package buffer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"time"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// chunkVersion is the first byte of every chunk value.
// Introduced in schema 2.
const chunkVersion byte = 2

// Chunk value (schema 2):
//
//	version (1) | append time, Unix ns (8) | count (uvarint) |
//	count x data length (uvarint) | data of every record | CRC-32C (4)
//
// The CRC covers every byte before it. All records of a chunk share the
// append time (they were committed together).
const chunkFixed = 1 + 8 + 4

// chunk is a decoded chunk value. Record i is data[off[i]:off[i+1]]; data
// aliases the value it was decoded from.
type chunk struct {
	t    time.Time
	off  []int
	data []byte
}

func (ch *chunk) len() int            { return len(ch.off) - 1 }
func (ch *chunk) record(i int) []byte { return ch.data[ch.off[i]:ch.off[i+1]] }
func (ch *chunk) recordLen(i int) int { return ch.off[i+1] - ch.off[i] }
func (ch *chunk) matches(r chunkRef) bool {
	return ch.len() == int(r.n) && len(ch.data) == int(r.data)
}

// chunkBuilder packs records of one class into a chunk value. It keeps
// references to the records' data until encode copies them once.
type chunkBuilder struct {
	recs [][]byte
	data int
}

func (b *chunkBuilder) reset() {
	clear(b.recs)
	b.recs, b.data = b.recs[:0], 0
}

// fits reports whether a record of n bytes may join the chunk.
func (b *chunkBuilder) fits(n int) bool {
	return len(b.recs) == 0 || len(b.recs) < maxChunkRecords && b.data+n <= maxChunkData
}

func (b *chunkBuilder) add(d []byte) {
	b.recs = append(b.recs, d)
	b.data += len(d)
}

// encode returns the chunk value for append time t.
func (b *chunkBuilder) encode(t time.Time) []byte {
	v := make([]byte, 0, chunkFixed+binary.MaxVarintLen32*(len(b.recs)+1)+b.data)
	v = append(v, chunkVersion)
	v = binary.BigEndian.AppendUint64(v, uint64(t.UnixNano()))
	v = binary.AppendUvarint(v, uint64(len(b.recs)))
	for _, d := range b.recs {
		v = binary.AppendUvarint(v, uint64(len(d)))
	}
	for _, d := range b.recs {
		v = append(v, d...)
	}
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, crcTable))
}

// decodeChunk parses and checks a chunk value. The returned chunk aliases v.
func decodeChunk(v []byte) (chunk, error) {
	if len(v) < chunkFixed+1 {
		return chunk{}, fmt.Errorf("%w: %d bytes", errBadValue, len(v))
	}
	if v[0] != chunkVersion {
		return chunk{}, fmt.Errorf("%w: version %d", errBadValue, v[0])
	}
	body := v[:len(v)-4]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(v[len(v)-4:]) {
		return chunk{}, fmt.Errorf("%w: checksum mismatch", errBadValue)
	}
	ch := chunk{t: time.Unix(0, int64(binary.BigEndian.Uint64(body[1:9])))}
	p := body[9:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count == 0 || count > maxChunkRecords || count > uint64(len(p)) {
		return chunk{}, fmt.Errorf("%w: record count", errBadValue)
	}
	p = p[n:]
	ch.off = make([]int, 1, count+1)
	total := 0
	for range count {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > MaxRecordBytes {
			return chunk{}, fmt.Errorf("%w: record length", errBadValue)
		}
		p = p[n:]
		total += int(l)
		ch.off = append(ch.off, total)
	}
	if total != len(p) {
		return chunk{}, fmt.Errorf("%w: %d data bytes, lengths say %d", errBadValue, len(p), total)
	}
	ch.data = p
	return ch, nil
}

// goneVersion is the first byte of every gone-set value.
// Introduced in schema 2.
const goneVersion byte = 1

// goneSet says which records of a chunk are gone (acknowledged, evicted,
// expired or corrupt).
//
// Value (schema 2): version (1) | data bytes of the gone records (uvarint)
// | bitmap, bit i%8 of byte i/8 = record first+i, ceil(count/8) bytes.
type goneSet struct {
	bits     []byte
	n        int   // records gone
	data     int64 // data bytes of the gone records
	stored   bool  // a gone key exists in the store
	deleting bool  // every record is gone; the chunk is deleted on flush
}

func newGoneSet(count int) *goneSet { return &goneSet{bits: make([]byte, (count+7)/8)} }

func (g *goneSet) has(i int) bool { return g != nil && g.bits[i/8]&(1<<(i%8)) != 0 }

func (g *goneSet) set(i int, dataLen int) bool {
	if g.has(i) {
		return false
	}
	g.bits[i/8] |= 1 << (i % 8)
	g.n++
	g.data += int64(dataLen)
	return true
}

func (g *goneSet) encode() []byte {
	v := append([]byte{goneVersion}, binary.AppendUvarint(nil, uint64(g.data))...)
	return append(v, g.bits...)
}

// decodeGone parses the gone set of a chunk of count records.
func decodeGone(v []byte, count int) (*goneSet, error) {
	if len(v) < 2 || v[0] != goneVersion {
		return nil, fmt.Errorf("%w: gone set header", errBadValue)
	}
	data, n := binary.Uvarint(v[1:])
	if n <= 0 || data > uint64(count)*MaxRecordBytes {
		return nil, fmt.Errorf("%w: gone set bytes", errBadValue)
	}
	bm := v[1+n:]
	if len(bm) != (count+7)/8 {
		return nil, fmt.Errorf("%w: gone set of %d bytes for %d records", errBadValue, len(bm), count)
	}
	g := &goneSet{bits: append([]byte(nil), bm...), data: int64(data), stored: true}
	for i, b := range g.bits {
		if i == len(g.bits)-1 && count%8 != 0 && b>>(count%8) != 0 {
			return nil, fmt.Errorf("%w: gone set bits past the chunk", errBadValue)
		}
		g.n += bits.OnesCount8(b)
	}
	return g, nil
}

// recordBytes is the accounted size of a record holding n data bytes.
// Stats and MaxBytes use it.
func recordBytes(n int) int64 { return int64(n) + RecordOverhead }

package buffer

import (
	"bytes"
	"testing"
	"time"
)

// FuzzRecordDecode feeds arbitrary bytes to every decoder of on-disk data:
// chunk keys, chunk values, gone keys and sets, and the seq file. None may
// panic; whatever decodes must re-encode to the same bytes.
func FuzzRecordDecode(f *testing.F) {
	var b chunkBuilder
	b.add([]byte(`{"a":1}`))
	b.add(nil)
	b.add([]byte("xyz"))
	ch := b.encode(time.Unix(1700000000, 5))
	g := newGoneSet(3)
	g.set(1, 0)
	f.Add(chunkKey(ClassEvent, chunkRef{first: 42, n: 3, data: 10}), ch)
	f.Add(goneKey(ClassTelemetry, 7), g.encode())
	f.Add([]byte("z/seq"), encodeSeqFile(seqState{Epoch: 3, HW: 1 << 40}))
	f.Add([]byte{}, []byte{2})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		if c, r, err := decodeChunkKey(key); err == nil && !bytes.Equal(chunkKey(c, r), key) {
			t.Fatalf("chunk key %x decodes to %v/%+v which encodes differently", key, c, r)
		}
		if c, first, err := decodeGoneKey(key); err == nil && !bytes.Equal(goneKey(c, first), key) {
			t.Fatalf("gone key %x does not round-trip", key)
		}
		if ch, err := decodeChunk(val); err == nil {
			var b chunkBuilder
			for i := range ch.len() {
				b.add(ch.record(i))
			}
			if !bytes.Equal(b.encode(ch.t), val) {
				t.Fatalf("chunk %x does not round-trip", val)
			}
		}
		for _, n := range []int{1, 3, 8, 9, maxChunkRecords} {
			if g, err := decodeGone(val, n); err == nil {
				if e := g.encode(); !bytes.Equal(e, val) && len(val) > 1 && val[1]&0x80 == 0 {
					t.Fatalf("gone set %x (n=%d) re-encodes as %x", val, n, e)
				}
			}
		}
		if s, err := decodeSeqFile(val); err == nil && !bytes.Equal(encodeSeqFile(s), val) {
			t.Fatalf("seq file %x does not round-trip", val)
		}
	})
}

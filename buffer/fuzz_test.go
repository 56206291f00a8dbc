package buffer

import (
	"bytes"
	"testing"
	"time"
)

// FuzzRecordDecode feeds arbitrary bytes to every decoder of on-disk data:
// record keys, record values and the seq file. None may panic; whatever
// decodes must re-encode to the same bytes.
func FuzzRecordDecode(f *testing.F) {
	f.Add(recKey(ClassEvent, 42), encodeValue(time.Unix(1700000000, 5), []byte(`{"a":1}`)))
	f.Add([]byte{'r', 9, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("z/seq"), encodeSeqFile(seqState{Epoch: 3, HW: 1 << 40}))
	f.Add([]byte{}, []byte{2})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		if c, seq, err := decodeKey(key); err == nil && !bytes.Equal(recKey(c, seq), key) {
			t.Fatalf("key %x decodes to %v/%d which encodes differently", key, c, seq)
		}
		if ts, data, err := decodeValue(val); err == nil && !bytes.Equal(encodeValue(ts, data), val) {
			t.Fatalf("value %x does not round-trip", val)
		}
		if s, err := decodeSeqFile(val); err == nil && !bytes.Equal(encodeSeqFile(s), val) {
			t.Fatalf("seq file %x does not round-trip", val)
		}
	})
}

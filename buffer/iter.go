package buffer

import "github.com/dgraph-io/badger/v4"

// scanChunks calls fn for the chunks of class c whose first seq is >= from,
// in seq order, until fn returns false. Keys that do not decode are
// skipped. Values are not prefetched: fn reads the ones it needs (from the
// value log's mmap, without copying). A scan from the class's low-water
// mark moves the mark up to the oldest chunk found, so the tombstones of
// deleted chunks below it are not walked again. Call with q.mu held.
func (q *Queue) scanChunks(txn *badger.Txn, c Class, from uint64, fn func(r chunkRef, it *badger.Item) (bool, error)) error {
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = false
	io.Prefix = classPrefix(c)
	it := txn.NewIterator(io)
	defer it.Close()
	first := true
	for it.Seek(chunkSeek(c, from)); it.Valid(); it.Next() {
		_, r, err := decodeChunkKey(it.Item().Key())
		if err != nil {
			continue
		}
		if cs := &q.cls[c]; first && from <= cs.lo && r.first > cs.lo {
			cs.lo = r.first
		}
		first = false
		more, err := fn(r, it.Item())
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// findChunk returns the chunk of class c holding seq, reading keys only.
func findChunk(txn *badger.Txn, c Class, seq uint64) (chunkRef, bool) {
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = false
	io.Reverse = true
	io.Prefix = classPrefix(c)
	it := txn.NewIterator(io)
	defer it.Close()
	// In reverse, Seek finds the largest key <= the one given: the last
	// chunk starting at or before seq.
	k := append(chunkSeek(c, seq), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	for it.Seek(k); it.Valid(); it.Next() {
		if _, r, err := decodeChunkKey(it.Item().Key()); err == nil {
			return r, r.holds(seq)
		}
	}
	return chunkRef{}, false
}

// readChunk decodes the value of it and checks it against its key; fn runs
// while the value is valid (it aliases Badger's memory).
func readChunk(it *badger.Item, r chunkRef, fn func(ch *chunk) error) (bad bool, err error) {
	err = it.Value(func(v []byte) error {
		ch, derr := decodeChunk(v)
		if derr != nil || !ch.matches(r) {
			bad = true
			return nil
		}
		return fn(&ch)
	})
	return bad, err
}

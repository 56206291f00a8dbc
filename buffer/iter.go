package buffer

import "github.com/dgraph-io/badger/v4"

// chunkIter iterates the chunks of one class in seq order. Chunk keys are
// bucket-major (keys.go), so a class's chunks form one run per bucket; the
// iterator seeks over the other classes' runs, one seek per bucket
// boundary. Values are not prefetched: callers read the ones they need
// (from the value log's mmap, without copying).
type chunkIter struct {
	it *badger.Iterator
	c  Class
	r  chunkRef
}

func newChunkIter(txn *badger.Txn, c Class) *chunkIter {
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = false
	io.Prefix = []byte{chunkPrefix}
	return &chunkIter{it: txn.NewIterator(io), c: c}
}

// seek positions the iterator at the class's first chunk starting at or
// after seq from.
func (ci *chunkIter) seek(from uint64) {
	ci.it.Seek(chunkSeek(ci.c, from))
	ci.settle()
}

func (ci *chunkIter) next() {
	ci.it.Next()
	ci.settle()
}

// settle skips undecodable keys and other classes' runs.
func (ci *chunkIter) settle() {
	for ci.it.Valid() {
		c, r, err := decodeChunkKey(ci.it.Item().Key())
		switch {
		case err != nil:
			ci.it.Next()
		case c == ci.c:
			ci.r = r
			return
		default:
			b := r.first >> bucketBits
			if c > ci.c {
				b++ // this bucket's run of our class is behind us
			}
			if b >= 1<<48 {
				ci.it.Seek([]byte{chunkPrefix + 1}) // past every chunk: invalid
				continue
			}
			ci.it.Seek(chunkSeek(ci.c, b<<bucketBits))
		}
	}
}

func (ci *chunkIter) valid() bool        { return ci.it.Valid() }
func (ci *chunkIter) item() *badger.Item { return ci.it.Item() }
func (ci *chunkIter) close()             { ci.it.Close() }

// scanChunks calls fn for the chunks of class c whose first seq is >= from,
// in seq order, until fn returns false. A scan from the class's low-water
// mark moves the mark up to the oldest chunk found, so the tombstones of
// deleted chunks below it are not walked again. Call with q.mu held.
func (q *Queue) scanChunks(txn *badger.Txn, c Class, from uint64, fn func(r chunkRef, it *badger.Item) (bool, error)) error {
	q.hook("scan")
	ci := newChunkIter(txn, c)
	defer ci.close()
	first := true
	for ci.seek(from); ci.valid(); ci.next() {
		if cs := &q.cls[c]; first && from <= cs.lo && ci.r.first > cs.lo {
			cs.lo = ci.r.first
		}
		first = false
		more, err := fn(ci.r, ci.item())
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// findChunk returns the chunk of class c holding seq, reading keys only.
// A chunk holds at most maxChunkRecords seqs, so it starts in seq's bucket
// or the one before.
func findChunk(txn *badger.Txn, c Class, seq uint64) (chunkRef, bool) {
	b := seq >> bucketBits
	for _, bucket := range []uint64{b, b - 1} {
		if bucket > b {
			break // b was 0
		}
		io := badger.DefaultIteratorOptions
		io.PrefetchValues = false
		io.Reverse = true
		io.Prefix = bucketClassPrefix(bucket, c)
		it := txn.NewIterator(io)
		// In reverse, Seek finds the largest key <= the one given: the
		// last chunk of the bucket starting at or before seq.
		last := min(seq, bucket<<bucketBits|(1<<bucketBits-1))
		it.Seek(append(chunkSeek(c, last), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		var r chunkRef
		err := errBadKey
		if it.Valid() {
			_, r, err = decodeChunkKey(it.Item().Key())
		}
		it.Close()
		if err == nil {
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

package buffer

import "github.com/dgraph-io/badger/v4"

// classIter iterates the records of one class in seq order. Record keys are
// bucket-major (keys.go), so the records of a class form one run per
// bucket; the iterator seeks over the other classes' runs, costing one
// seek per bucket boundary.
type classIter struct {
	it  *badger.Iterator
	c   Class
	seq uint64
}

// newClassIter returns an iterator over class c; values says whether to
// prefetch values. Close it.
func newClassIter(txn *badger.Txn, c Class, values bool) *classIter {
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = values
	io.PrefetchSize = 16
	io.Prefix = recordsPrefix
	return &classIter{it: txn.NewIterator(io), c: c}
}

// seek positions the iterator at the first record of the class with seq
// >= from.
func (ci *classIter) seek(from uint64) {
	ci.it.Seek(recKey(ci.c, from))
	ci.settle()
}

// next moves to the following record of the class.
func (ci *classIter) next() {
	ci.it.Next()
	ci.settle()
}

// settle skips undecodable keys and other classes' runs.
func (ci *classIter) settle() {
	for ci.it.Valid() {
		c, seq, err := decodeKey(ci.it.Item().Key())
		switch {
		case err != nil:
			ci.it.Next()
		case c == ci.c:
			ci.seq = seq
			return
		default:
			b := segmentOf(seq)
			if c > ci.c {
				b++ // this bucket's run of our class is behind us
			}
			if b >= 1<<48 {
				ci.it.Seek([]byte{recPrefix + 1}) // past the last bucket: invalid
				continue
			}
			ci.it.Seek(recKey(ci.c, b<<segBits))
		}
	}
}

func (ci *classIter) valid() bool        { return ci.it.Valid() }
func (ci *classIter) item() *badger.Item { return ci.it.Item() }
func (ci *classIter) close()             { ci.it.Close() }

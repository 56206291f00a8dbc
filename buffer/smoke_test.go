package buffer_test

import (
	"context"
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

const killEnv = "TCU_BUFFER_KILL_WRITER"

func killWriter() { panic("todo") }

func TestSmoke(t *testing.T) {
	for _, inMem := range []bool{false, true} {
		o := buffer.DefaultOptions(t.TempDir() + "/q")
		o.InMemory = inMem
		q, err := buffer.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var seqs []uint64
		for i, c := range []buffer.Class{2, 1, 0, 2, 1, 0} {
			s, err := q.Append(ctx, c, []byte{byte(i)})
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		recs, err := q.Lease(10, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			t.Logf("%d %v %v", r.Seq, r.Class, r.Data)
		}
		if err := q.Ack(recs[0].Seq, recs[1].Seq); err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", q.Stats())
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

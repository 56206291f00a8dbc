package dbc

import (
	"math/rand/v2"
	"testing"

	"go.einride.tech/can"
)

// TestCrossCheckEinrideBits compares bit extraction and insertion with the
// independent implementation in go.einride.tech/can (can.Data, classic
// 8-byte frames) for every signal of every 8-byte message in the fixture
// and the real files.
func TestCrossCheckEinrideBits(t *testing.T) {
	t.Parallel()
	dbs := []*Database{}
	db, _ := mustParse(t, fixtureDBC)
	dbs = append(dbs, db)
	for _, f := range realFiles(t) {
		rdb, _, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, rdb)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	checked := 0
	for _, db := range dbs {
		for _, m := range db.Messages {
			if m.Length != 8 {
				continue
			}
			for round := 0; round < 10; round++ {
				var d can.Data
				for i := range d {
					d[i] = byte(rng.Uint32())
				}
				for i := range m.plan.sigs {
					crossCheck(t, m, &m.plan.sigs[i], d, rng)
					checked++
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d signal checks", checked)
	}
}

func crossCheck(t *testing.T, m *Message, sp *sigPlan, d can.Data, rng *rand.Rand) {
	t.Helper()
	s := sp.sig
	start, size := uint8(s.Start), uint8(s.Size)
	var want uint64
	if s.BigEndian {
		want = d.UnsignedBitsBigEndian(start, size)
	} else {
		want = d.UnsignedBitsLittleEndian(start, size)
	}
	if got := sp.bits(pad(d[:])); got != want {
		t.Fatalf("%s.%s: bits %#x, einride %#x", m.Name, s.Name, got, want)
	}
	if s.Signed && s.Type == Integer {
		var ws int64
		if s.BigEndian {
			ws = d.SignedBitsBigEndian(start, size)
		} else {
			ws = d.SignedBitsLittleEndian(start, size)
		}
		if got := sp.raw(pad(d[:])); got != ws {
			t.Fatalf("%s.%s: signed raw %d, einride %d", m.Name, s.Name, got, ws)
		}
	}
	v := rng.Uint64() & sp.mask
	buf := append([]byte(nil), d[:]...)
	insert(buf, s, v)
	if s.BigEndian {
		d.SetUnsignedBitsBigEndian(start, size, v)
	} else {
		d.SetUnsignedBitsLittleEndian(start, size, v)
	}
	if string(buf) != string(d[:]) {
		t.Fatalf("%s.%s: insert %#x = % x, einride % x", m.Name, s.Name, v, buf, d[:])
	}
}

package dbc

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary DBC text to the parser: it must not panic,
// must report warnings with a position, and every message it keeps must
// decode a zero payload of its length.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fixtureDBC))
	f.Add([]byte("BO_ 1 M: 8 X\n SG_ S m1M : 0|8@1+ (1,0) [0|1] \"\" X\nSG_MUL_VAL_ 1 S S 1-1;\n"))
	f.Add([]byte("BO_ 2147483650 M: 64 X\n SG_ S : 511|64@0- (1e308,1) [0|0] \"\" X\n"))
	f.Add([]byte("BU_: A\nBO_ 1 M: 8 A\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" A\nCM_ SG_ 1 S \"c\";\nVAL_ 1 S 1 \"a\";\n"))
	for _, path := range realFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) < 4<<10 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		db, warns, err := Parse("fuzz.dbc", data)
		for _, w := range warns {
			if w.Line < 1 {
				t.Fatalf("warning without line: %+v", w)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrUnusable) || db != nil {
				t.Fatalf("Parse() = %v, %v", db, err)
			}
			return
		}
		buf := make([]byte, 64)
		for _, m := range db.Messages {
			if got, ok := db.MessageByID(m.ID, m.Extended); !ok || got != m {
				t.Fatalf("MessageByID(%#x) does not find %s", m.ID, m.Name)
			}
			if _, err := m.Decode(buf[:m.Length]); err != nil {
				t.Fatalf("%s: Decode(zeros) error = %v", m.Name, err)
			}
		}
	})
}

// FuzzDecodeFrame decodes arbitrary payloads against the fixture messages
// and the real files: no panic, only ErrShortPayload as error, and the
// fast extractor agrees with the bit-by-bit reference.
func FuzzDecodeFrame(f *testing.F) {
	db, _ := mustParse(f, fixtureDBC)
	msgs := append([]*Message(nil), db.Messages...)
	for _, path := range realFiles(f) {
		rdb, _, err := Load(path)
		if err != nil {
			f.Fatal(err)
		}
		msgs = append(msgs, rdb.Messages...)
	}
	f.Add(uint16(0), []byte{0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0})
	f.Add(uint16(3), []byte{0x31, 0x44, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(2), make([]byte, 64))
	f.Fuzz(func(t *testing.T, pick uint16, data []byte) {
		m := msgs[int(pick)%len(msgs)]
		vs, err := m.Decode(data)
		if err != nil {
			if !errors.Is(err, ErrShortPayload) || len(data) >= m.Length {
				t.Fatalf("%s: Decode(%d bytes) error = %v", m.Name, len(data), err)
			}
			return
		}
		for _, v := range vs {
			sp := findPlan(m, v.Signal)
			if got, want := sp.bits(pad(data)), refBits(data, v.Signal); got != want {
				t.Fatalf("%s.%s: bits %#x, reference %#x", m.Name, v.Signal.Name, got, want)
			}
		}
	})
}

func findPlan(m *Message, s *Signal) *sigPlan {
	for i := range m.plan.sigs {
		if m.plan.sigs[i].sig == s {
			return &m.plan.sigs[i]
		}
	}
	return nil
}

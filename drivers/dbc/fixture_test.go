package dbc

import (
	"testing"
)

// fixtureDBC covers every decoding feature with small messages whose
// vectors are computed by hand in decode_test.go.
const fixtureDBC = `VERSION "fixture"

NS_ :
	NS_DESC_
	CM_
	BA_DEF_

BS_:

BU_: ECU GW

VAL_TABLE_ GearTable 0 "P" 1 "R" 2 "N" 3 "D" ;

BO_ 100 LE: 8 ECU
 SG_ A : 0|8@1+ (1,0) [0|255] "" GW
 SG_ B : 8|12@1+ (0.5,-10) [-10|2037.5] "km/h" GW
 SG_ C : 20|4@1- (1,0) [-8|7] "" GW
 SG_ D : 28|16@1+ (1,0) [0|65535] "" GW

BO_ 200 BE: 8 ECU
 SG_ E : 7|16@0+ (1,0) [0|65535] "" GW
 SG_ F : 19|6@0- (1,0) [-32|31] "" GW
 SG_ G : 39|12@0+ (0.1,0) [0|409.5] "V" GW

BO_ 2147484000 FD64: 64 ECU
 SG_ H : 500|12@1+ (1,0) [0|4095] "" GW
 SG_ I : 263|16@0- (1,0) [0|0] "" GW
 SG_ J : 323|64@1+ (1,0) [0|0] "" GW
 SG_ K : 404|64@0+ (1,0) [0|0] "" GW

BO_ 300 MUX: 8 ECU
 SG_ Sel M : 0|8@1+ (1,0) [0|255] "" GW
 SG_ S0 m0 : 8|8@1+ (1,0) [0|255] "" GW
 SG_ S1 m1 : 8|16@1+ (1,0) [0|65535] "" GW
 SG_ Common : 56|8@1+ (1,0) [0|255] "" GW

BO_ 400 XMUX: 8 ECU
 SG_ Top M : 0|4@1+ (1,0) [0|15] "" GW
 SG_ Sub m1M : 4|4@1+ (1,0) [0|15] "" GW
 SG_ Leaf m2 : 8|8@1+ (1,0) [0|255] "" GW
 SG_ Other m0 : 8|8@1+ (1,0) [0|255] "" GW

BO_ 500 VALS: 8 ECU
 SG_ Gear : 0|3@1+ (1,0) [0|7] "" GW
 SG_ F32 : 32|32@1- (1,0) [0|0] "" GW

BO_ 501 F64MSG: 8 ECU
 SG_ D64 : 0|64@1- (2,1) [0|0] "" GW

CM_ "network comment";
CM_ BO_ 100 "little-endian message";
CM_ SG_ 100 B "speed with \"quotes\"";
BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000;
BA_DEF_DEF_ "GenMsgCycleTime" 0;
BA_ "GenMsgCycleTime" BO_ 100 20;
BA_ "GenMsgCycleTime" BO_ 2147484000 5;
VAL_ 500 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
SIG_VALTYPE_ 500 F32 : 1;
SIG_VALTYPE_ 501 D64 : 2;
SG_MUL_VAL_ 400 Sub Top 1-1;
SG_MUL_VAL_ 400 Leaf Sub 2-3, 5-5;
SG_MUL_VAL_ 400 Other Top 0-0;
`

func mustParse(t testing.TB, src string) (*Database, []Warning) {
	t.Helper()
	db, warns, err := Parse("test.dbc", []byte(src))
	if err != nil {
		t.Fatalf("Parse() error = %v (warnings %v)", err, warns)
	}
	return db, warns
}

func mustMessage(t testing.TB, db *Database, name string) *Message {
	t.Helper()
	m, ok := db.Message(name)
	if !ok {
		t.Fatalf("message %s missing", name)
	}
	return m
}

// payload builds an n-byte payload with the given bytes set.
func payload(n int, set map[int]byte) []byte {
	b := make([]byte, n)
	for i, v := range set {
		b[i] = v
	}
	return b
}

// refBits is a bit-by-bit reference extractor, independent of the
// byte-assembling one in codec.go.
func refBits(data []byte, s *Signal) uint64 {
	var v uint64
	for i := 0; i < s.Size; i++ {
		if s.BigEndian {
			q := msbPos(s) + i
			v = v<<1 | uint64(data[q/8]>>(7-q%8)&1)
		} else {
			q := s.Start + i
			v |= uint64(data[q/8]>>(q%8)&1) << i
		}
	}
	return v
}

func pad(data []byte) *frame {
	var f frame
	copy(f[:], data)
	return &f
}

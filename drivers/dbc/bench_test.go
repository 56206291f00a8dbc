package dbc

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// bench20DBC is a 20-signal message mixing the encodings found in real
// files: 10 Intel and 10 Motorola signals, signed and unsigned, scaled,
// two with value descriptions.
func bench20DBC() string {
	var b strings.Builder
	b.WriteString("BO_ 291 BENCH20: 8 ECU\n")
	for i := 0; i < 10; i++ { // Intel: 10 x 3 bits from bit 0
		sign := "+"
		if i%2 == 1 {
			sign = "-"
		}
		fmt.Fprintf(&b, " SG_ L%d : %d|3@1%s (0.5,-1) [0|0] \"\" X\n", i, i*3, sign)
	}
	for i := 0; i < 10; i++ { // Motorola: 10 x 3 bits from byte 4
		lin := 32 + i*3
		start := lin/8*8 + 7 - lin%8
		fmt.Fprintf(&b, " SG_ M%d : %d|3@0+ (1,0) [0|7] \"\" X\n", i, start)
	}
	b.WriteString("VAL_ 291 M0 0 \"zero\" 1 \"one\" ;\nVAL_ 291 M1 0 \"zero\" 1 \"one\" ;\n")
	return b.String()
}

// BenchmarkDecode20Signals measures the per-frame hot path: DecodeInto of a
// 20-signal classic CAN message into a reused slice.
func BenchmarkDecode20Signals(b *testing.B) {
	db, _ := mustParse(b, bench20DBC())
	m := mustMessage(b, db, "BENCH20")
	if len(m.Signals) != 20 {
		b.Fatalf("%d signals", len(m.Signals))
	}
	data := []byte{0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0}
	dst := make([]Value, 0, 20)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start := threadCPU()
	for b.Loop() {
		var err error
		dst, err = m.DecodeInto(data, dst)
		if err != nil || len(dst) != 20 {
			b.Fatalf("DecodeInto() = %d values, %v", len(dst), err)
		}
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDecodeFDReal decodes the CAN FD message with the most signals
// of a real file (hyundai_canfd.dbc).
func BenchmarkDecodeFDReal(b *testing.B) {
	db, _, err := Load("../../testdata/dbc/opendbc/hyundai_canfd.dbc")
	if err != nil {
		b.Fatal(err)
	}
	var m *Message
	for _, c := range db.Messages {
		if c.Length > 8 && (m == nil || len(c.Signals) > len(m.Signals)) {
			m = c
		}
	}
	data := make([]byte, 64)
	for i := range data {
		data[i] = byte(i * 37)
	}
	dst := make([]Value, 0, len(m.Signals))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start := threadCPU()
	for b.Loop() {
		dst, _ = m.DecodeInto(data, dst)
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(len(m.Signals)), "signals")
	b.ReportMetric(float64(m.Length), "bytes")
}

// BenchmarkParseTeslaCAN measures loading a real 54 kB file.
func BenchmarkParseTeslaCAN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Load("../../testdata/dbc/opendbc/tesla_can.dbc"); err != nil {
			b.Fatal(err)
		}
	}
}

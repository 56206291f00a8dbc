package gnss

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDecodeCapture measures scanning, checksum verification and
// epoch assembly of a real capture (u-blox NEO-M8N, 293 sentences).
func BenchmarkDecodeCapture(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "gpsd", "neo-m8n.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	sentences := 0
	for b.Loop() {
		rd, _, err := DecodeAll(bytes.NewReader(data), func(Fix) {})
		if err != nil {
			b.Fatal(err)
		}
		sentences += rd.Sentences
	}
	b.ReportMetric(float64(sentences)/b.Elapsed().Seconds(), "sentences/s")
}

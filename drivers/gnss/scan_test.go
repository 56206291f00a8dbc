package gnss

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func scanAll(t *testing.T, in []byte, bufSize int) []string {
	t.Helper()
	sc := bufio.NewScanner(&chunkReader{b: in, n: bufSize})
	sc.Buffer(make([]byte, 256), 1<<16)
	sc.Split(ScanSentences)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// chunkReader returns at most n bytes per Read, like a serial port.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func TestScanSentences(t *testing.T) {
	t.Parallel()
	a := "$GNVTG,,T,,M,0.117,N,0.216,K,A*3F"
	b := "$GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A*66"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"crlf lines", a + "\r\n" + b + "\r\n", []string{a, b}},
		{"lf only and no final newline", a + "\n" + b, []string{a, b}},
		{"binary between lines", a + "\r\n\xb5\x62\x01\x07\x5c\x00\xff\x00" + b + "\r\n", []string{a, b}},
		{"binary with dollar and newline", "\xb5$\x01\n" + a + "\r\n", []string{a}},
		{"partial line then sentence", "$GNGGA,1719" + a + "\r\n", []string{a}},
		{"binary cuts a sentence", "$GNGGA,17\x00\x01" + b + "\r\n", []string{b}},
		{"overlong garbage", "$" + strings.Repeat("A", 500) + b + "\r\n", []string{b}},
		{"noise only", "\x00\x01\x02\xff", nil},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 7, 4096} {
			got := scanAll(t, []byte(tt.in), chunk)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (reads of %d): mismatch (-want +got):\n%s", tt.name, chunk, diff)
			}
		}
	}
}

// TestNoiseKeepsNeighbours inserts binary protocol noise and truncated
// sentences between every line of a real capture: the fixes decoded must
// be exactly those of the clean capture.
func TestNoiseKeepsNeighbours(t *testing.T) {
	t.Parallel()
	clean, err := os.ReadFile(filepath.Join("testdata", "gpsd", "neo-m8n.log"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var noisy bytes.Buffer
	for _, line := range bytes.SplitAfter(clean, []byte("\n")) {
		switch rng.IntN(3) {
		case 0: // binary frame (UBX-like), may contain '$' and newlines
			for range 5 + rng.IntN(40) {
				noisy.WriteByte(byte(rng.IntN(256)))
			}
			noisy.WriteString("\x00")
		case 1: // a sentence cut short by a receiver reset
			noisy.WriteString("$GPGSV,4,1,13,01,53,2")
		}
		noisy.Write(line)
	}
	decode := func(b []byte) ([]Fix, *Reader) {
		var fixes []Fix
		rd, _, err := DecodeAll(&chunkReader{b: b, n: 13}, func(f Fix) { fixes = append(fixes, f) })
		if err != nil {
			t.Fatal(err)
		}
		return fixes, rd
	}
	want, cleanRd := decode(clean)
	got, noisyRd := decode(noisy.Bytes())
	if len(want) < 20 {
		t.Fatalf("clean capture gave only %d fixes", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fixes with noise differ (-clean +noisy):\n%s", diff)
	}
	if noisyRd.Sentences != cleanRd.Sentences {
		t.Errorf("noisy stream yielded %d sentences, clean %d", noisyRd.Sentences, cleanRd.Sentences)
	}
}

func FuzzScanSentences(f *testing.F) {
	f.Add([]byte("$GNVTG,,T,,M,0.117,N,0.216,K,A*3F\r\n\xb5b$x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Split(ScanSentences)
		for sc.Scan() {
			tok := sc.Bytes()
			if len(tok) == 0 || (tok[0] != '$' && tok[0] != '!') {
				t.Fatalf("token %q does not start a sentence", tok)
			}
		}
	})
}

// FuzzDecodeAll runs arbitrary bytes through the whole pipeline (scan,
// verify, decode, assemble): no panic, and every fix is sane.
func FuzzDecodeAll(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "gpsd", "beidou-bd.log")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("$GNRMC,235959.50,A,4404.14063,N,12118.85478,W,1.944,90.0,311225,,,A*70\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := DecodeAll(bytes.NewReader(b), func(fx Fix) {
			if fx.HasPos && (fx.Lat < -90 || fx.Lat > 90 || fx.Lon < -180 || fx.Lon > 180) {
				t.Fatalf("position out of range: %v,%v", fx.Lat, fx.Lon)
			}
			if fx.Mode < ModeUnknown || fx.Mode > Mode3D {
				t.Fatalf("mode %d", fx.Mode)
			}
		})
		if err != nil {
			t.Fatalf("DecodeAll() error = %v", err)
		}
	})
}

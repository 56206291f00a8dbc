package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// MaxJSON bounds the JSON text Decode produces (dictionary strings can be
// referenced many times).
const MaxJSON = 32 << 20

// MaxEntries bounds the dictionary entries and the records of one batch
// (an agent's message of at most 128 KiB holds far fewer).
const MaxEntries = 1 << 18

// Batch is a decoded compact batch.
type Batch struct {
	// Version is the format version of the header.
	Version int
	// Compression is the header's compression byte.
	Compression byte
	// Device is the thing name.
	Device string
	// Records in the order they were encoded.
	Records []Record
}

// Record is one record of a batch.
type Record struct {
	Seq  uint64
	TS   int64 // Unix milliseconds
	Kind string
	// Fields is a JSON object of the record's data fields (everything but
	// seq, ts and kind), in their original order.
	Fields json.RawMessage
}

var (
	zdecOnce sync.Once
	zdec     *zstd.Decoder
	zdecErr  error
)

func zstdDecoder() (*zstd.Decoder, error) {
	zdecOnce.Do(func() {
		zdec, zdecErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(MaxDecoded), zstd.WithDecoderMaxWindow(1<<20))
	})
	return zdec, zdecErr
}

// Decode parses a compact batch.
func Decode(payload []byte) (*Batch, error) {
	if !IsCompact(payload) {
		return nil, fmt.Errorf("%w: no TCB header", ErrFormat)
	}
	if payload[3] != Version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrFormat, payload[3])
	}
	body, err := decompress(payload[4], payload[HeaderSize:])
	if err != nil {
		return nil, err
	}
	d := decoder{b: body}
	out := &Batch{Version: int(payload[3]), Compression: payload[4]}
	out.Device = string(d.bytes())
	nd := d.count()
	if nd > MaxEntries {
		return nil, fmt.Errorf("%w: %d dictionary entries (limit %d)", ErrFormat, nd, MaxEntries)
	}
	dict := make([][]byte, 0, min(nd, 1024))
	for range nd {
		dict = append(dict, d.bytes())
	}
	d.dict = dict
	n := d.count()
	if d.err != nil {
		return nil, d.err
	}
	if n > MaxEntries {
		return nil, fmt.Errorf("%w: %d records (limit %d)", ErrFormat, n, MaxEntries)
	}
	out.Records = make([]Record, 0, min(n, 1024))
	var seq uint64
	var ts int64
	var text []byte
	for range n {
		seq += uint64(d.varint())
		ts += d.varint()
		kind := d.str()
		start := len(text)
		text = d.object(text, 0)
		if d.err != nil {
			return nil, d.err
		}
		if len(text) > MaxJSON {
			return nil, fmt.Errorf("%w: decoded JSON larger than %d bytes", ErrFormat, MaxJSON)
		}
		out.Records = append(out.Records, Record{Seq: seq, TS: ts, Kind: string(kind), Fields: text[start:len(text):len(text)]})
	}
	if d.i != len(d.b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(d.b)-d.i)
	}
	return out, nil
}

func decompress(c byte, b []byte) ([]byte, error) {
	switch c {
	case CompressNone:
		if len(b) > MaxDecoded {
			return nil, fmt.Errorf("%w: body larger than %d bytes", ErrFormat, MaxDecoded)
		}
		return b, nil
	case CompressZstd:
		z, err := zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("wire: zstd: %w", err)
		}
		out, err := z.DecodeAll(b, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrFormat, err)
		}
		if len(out) > MaxDecoded {
			return nil, fmt.Errorf("%w: body larger than %d bytes", ErrFormat, MaxDecoded)
		}
		return out, nil
	case CompressDeflate:
		r := flate.NewReader(bytes.NewReader(b))
		defer func() { _ = r.Close() }()
		out, err := io.ReadAll(io.LimitReader(r, MaxDecoded+1))
		if err != nil {
			return nil, fmt.Errorf("%w: deflate: %v", ErrFormat, err)
		}
		if len(out) > MaxDecoded {
			return nil, fmt.Errorf("%w: body larger than %d bytes", ErrFormat, MaxDecoded)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown compression %d", ErrFormat, c)
}

// decoder reads a body; the first error sticks and later reads return
// zero values.
type decoder struct {
	b    []byte
	i    int
	dict [][]byte
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrFormat, d.i, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

// count reads a count of items that take at least one byte each, so it
// is bounded by the bytes left.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.i) {
		d.fail("count %d exceeds the remaining %d bytes", n, len(d.b)-d.i)
		return 0
	}
	return int(n)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.i >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.i]
	d.i++
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.i) {
		d.fail("string of %d bytes exceeds the remaining %d", n, len(d.b)-d.i)
		return nil
	}
	s := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// str reads a dictionary index.
func (d *decoder) str() []byte {
	return d.index(d.uvarint())
}

func (d *decoder) index(i uint64) []byte {
	if d.err != nil {
		return nil
	}
	if i >= uint64(len(d.dict)) {
		d.fail("dictionary index %d out of range (%d entries)", i, len(d.dict))
		return nil
	}
	return d.dict[i]
}

// object appends the JSON object whose fields start at d.i.
func (d *decoder) object(dst []byte, depth int) []byte {
	if depth >= maxDepth {
		d.fail("nested too deeply")
		return dst
	}
	dst = append(dst, '{')
	for first := true; d.err == nil; first = false {
		k := d.uvarint()
		if k == 0 || d.err != nil {
			break
		}
		if !first {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, d.index(k-1))
		dst = append(dst, ':')
		dst = d.value(dst, depth)
		if len(dst) > MaxJSON {
			d.fail("decoded JSON larger than %d bytes", MaxJSON)
		}
	}
	return append(dst, '}')
}

func (d *decoder) value(dst []byte, depth int) []byte {
	switch tag := d.byte(); tag {
	case tagNull:
		return append(dst, "null"...)
	case tagFalse:
		return append(dst, "false"...)
	case tagTrue:
		return append(dst, "true"...)
	case tagInt:
		return strconv.AppendInt(dst, d.varint(), 10)
	case tagDecimal:
		scale := d.byte()
		m := d.varint()
		if scale == 0 || scale > maxScale {
			d.fail("decimal scale %d", scale)
			return dst
		}
		return appendDecimal(dst, m, int(scale))
	case tagFloat:
		if d.err != nil || len(d.b)-d.i < 8 {
			d.fail("truncated float")
			return dst
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.i:]))
		d.i += 8
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail("float %v is not JSON", f)
			return dst
		}
		return AppendFloat(dst, f)
	case tagString:
		return AppendJSONString(dst, d.str())
	case tagNumber:
		s := d.str()
		if d.err == nil && !validNumber(s) {
			d.fail("number %q", s)
		}
		return append(dst, s...)
	case tagObject:
		return d.object(dst, depth+1)
	case tagArray:
		if depth+1 >= maxDepth {
			d.fail("nested too deeply")
			return dst
		}
		dst = append(dst, '[')
		for first := true; d.err == nil; first = false {
			if d.i < len(d.b) && d.b[d.i] == tagEnd {
				d.i++
				break
			}
			if !first {
				dst = append(dst, ',')
			}
			dst = d.value(dst, depth+1)
			if len(dst) > MaxJSON {
				d.fail("decoded JSON larger than %d bytes", MaxJSON)
			}
		}
		return append(dst, ']')
	default:
		if d.err == nil {
			d.i--
			d.fail("unknown value tag 0x%02x", tag)
		}
		return dst
	}
}

// appendDecimal writes m / 10^scale with exactly scale fraction digits.
func appendDecimal(dst []byte, m int64, scale int) []byte {
	var buf [24]byte
	u := uint64(m)
	if m < 0 {
		dst = append(dst, '-')
		u = -u
	}
	digits := strconv.AppendUint(buf[:0], u, 10)
	for len(digits) <= scale {
		digits = append([]byte{'0'}, digits...)
	}
	dst = append(dst, digits[:len(digits)-scale]...)
	dst = append(dst, '.')
	return append(dst, digits[len(digits)-scale:]...)
}

// AppendFloat formats f as encoding/json does.
func AppendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// AppendJSONString appends s as a JSON string literal; invalid UTF-8
// becomes U+FFFD, as encoding/json does.
func AppendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, `\u00`...)
				dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendEnvelope appends the JSON envelope of PRODUCT.md for b:
// {"v":1,"device":...,"records":[{"seq":..,"ts":..,"kind":..,<fields>}]}.
func AppendEnvelope(dst []byte, b *Batch) []byte {
	dst = append(dst, `{"v":1,"device":`...)
	dst = AppendJSONString(dst, []byte(b.Device))
	dst = append(dst, `,"records":[`...)
	for i, r := range b.Records {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, r.TS, 10)
		dst = append(dst, `,"kind":`...)
		dst = AppendJSONString(dst, []byte(r.Kind))
		if len(r.Fields) > 2 {
			dst = append(dst, ',')
			dst = append(dst, r.Fields[1:len(r.Fields)-1]...)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// ToJSON decodes a compact batch into the JSON envelope.
func ToJSON(payload []byte) ([]byte, error) {
	b, err := Decode(payload)
	if err != nil {
		return nil, err
	}
	return AppendEnvelope(nil, b), nil
}

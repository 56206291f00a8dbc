package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Encoder builds one compact batch at a time. It is not safe for
// concurrent use; Reset starts the next batch and reuses the buffers.
type Encoder struct {
	compression byte
	zstd        *zstd.Encoder
	flate       *flate.Writer
	out         bytes.Buffer // flate output

	device   string
	dict     map[string]uint64
	order    []string // dictionary in index order
	dictSize int      // encoded size of the dictionary
	recs     []byte
	n        int
	prevSeq  uint64
	prevTS   int64
	body     []byte // assembled uncompressed body

	mark mark // state before the last Add, for Undo
}

type mark struct {
	recs, order, dictSize, n int
	prevSeq                  uint64
	prevTS                   int64
}

// NewEncoder returns an encoder that compresses with compression
// (CompressZstd, CompressDeflate or CompressNone).
func NewEncoder(compression byte) (*Encoder, error) {
	e := &Encoder{compression: compression, dict: make(map[string]uint64)}
	switch compression {
	case CompressNone:
	case CompressZstd:
		z, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(false), zstd.WithWindowSize(1<<17))
		if err != nil {
			return nil, fmt.Errorf("wire: zstd: %w", err)
		}
		e.zstd = z
	case CompressDeflate:
		f, err := flate.NewWriter(&e.out, flate.DefaultCompression)
		if err != nil {
			return nil, fmt.Errorf("wire: deflate: %w", err)
		}
		e.flate = f
	default:
		return nil, fmt.Errorf("wire: unknown compression %d", compression)
	}
	return e, nil
}

// Reset starts a new, empty batch for device.
func (e *Encoder) Reset(device string) {
	e.device = device
	clear(e.dict)
	e.order = e.order[:0]
	e.dictSize = 0
	e.recs = e.recs[:0]
	e.n = 0
	e.prevSeq, e.prevTS = 0, 0
}

// Records is the number of records in the batch.
func (e *Encoder) Records() int { return e.n }

// Len is the uncompressed size of the batch body so far; the compressed
// payload is at most Bound(Len()).
func (e *Encoder) Len() int {
	return uvarintLen(uint64(len(e.device))) + len(e.device) + uvarintLen(uint64(len(e.order))) + e.dictSize +
		uvarintLen(uint64(e.n)) + len(e.recs)
}

// Bound is the largest payload (header included) a body of n
// uncompressed bytes can become, whatever the compression.
func Bound(n int) int { return HeaderSize + n + n>>7 + 64 }

// Add appends one record: seq, ts (Unix ms), kind and body, a JSON object
// whose fields follow seq, ts and kind in the envelope. On error the batch
// is unchanged.
func (e *Encoder) Add(seq uint64, ts int64, kind string, body []byte) error {
	e.mark = mark{recs: len(e.recs), order: len(e.order), dictSize: e.dictSize, n: e.n, prevSeq: e.prevSeq, prevTS: e.prevTS}
	e.recs = binary.AppendVarint(e.recs, int64(seq-e.prevSeq))
	e.recs = binary.AppendVarint(e.recs, ts-e.prevTS)
	e.recs = binary.AppendUvarint(e.recs, e.intern(kind))
	s := scanner{b: body}
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		e.Undo()
		return errors.New("wire: body is not a JSON object")
	}
	if err := e.object(&s, 0); err != nil {
		e.Undo()
		return err
	}
	if s.space(); s.i != len(s.b) {
		e.Undo()
		return errors.New("wire: trailing data after body")
	}
	e.prevSeq, e.prevTS = seq, ts
	e.n++
	return nil
}

// Undo removes the record added by the last successful or failed Add
// (only one level).
func (e *Encoder) Undo() {
	m := e.mark
	for _, s := range e.order[m.order:] {
		delete(e.dict, s)
	}
	e.order = e.order[:m.order]
	e.recs = e.recs[:m.recs]
	e.dictSize, e.n, e.prevSeq, e.prevTS = m.dictSize, m.n, m.prevSeq, m.prevTS
}

// Finish appends the complete payload (header and compressed body) to
// dst. The batch stays as it is until Reset.
func (e *Encoder) Finish(dst []byte) ([]byte, error) {
	b := e.body[:0]
	b = appendString(b, e.device)
	b = binary.AppendUvarint(b, uint64(len(e.order)))
	for _, s := range e.order {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(e.n))
	b = append(b, e.recs...)
	e.body = b
	dst = append(dst, Magic[:]...)
	dst = append(dst, Version, e.compression)
	switch e.compression {
	case CompressZstd:
		return e.zstd.EncodeAll(b, dst), nil
	case CompressDeflate:
		e.out.Reset()
		e.flate.Reset(&e.out)
		if _, err := e.flate.Write(b); err != nil {
			return nil, fmt.Errorf("wire: deflate: %w", err)
		}
		if err := e.flate.Close(); err != nil {
			return nil, fmt.Errorf("wire: deflate: %w", err)
		}
		return append(dst, e.out.Bytes()...), nil
	}
	return append(dst, b...), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// intern returns the dictionary index of s, adding it if new.
func (e *Encoder) intern(s string) uint64 {
	if i, ok := e.dict[s]; ok {
		return i
	}
	i := uint64(len(e.order))
	e.dict[s] = i
	e.order = append(e.order, s)
	e.dictSize += uvarintLen(uint64(len(s))) + len(s)
	return i
}

func (e *Encoder) internBytes(b []byte) uint64 {
	if i, ok := e.dict[string(b)]; ok { // no allocation for the lookup
		return i
	}
	return e.intern(string(b))
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// scanner walks a JSON text.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

var errSyntax = errors.New("wire: body is not valid JSON")

// object encodes the fields of the object at s (s.b[s.i] == '{'),
// terminated by a zero key.
func (e *Encoder) object(s *scanner, depth int) error {
	if depth >= maxDepth {
		return errors.New("wire: body nested too deeply")
	}
	s.i++ // {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		e.recs = append(e.recs, 0)
		return nil
	}
	for {
		s.space()
		key, err := s.str()
		if err != nil {
			return err
		}
		e.recs = binary.AppendUvarint(e.recs, e.internBytes(key)+1)
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errSyntax
		}
		s.i++
		if err := e.value(s, depth); err != nil {
			return err
		}
		s.space()
		if s.i >= len(s.b) {
			return errSyntax
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			e.recs = append(e.recs, 0)
			return nil
		default:
			return errSyntax
		}
	}
}

func (e *Encoder) value(s *scanner, depth int) error {
	s.space()
	if s.i >= len(s.b) {
		return errSyntax
	}
	switch c := s.b[s.i]; {
	case c == '{':
		e.recs = append(e.recs, tagObject)
		return e.object(s, depth+1)
	case c == '[':
		return e.array(s, depth+1)
	case c == '"':
		str, err := s.str()
		if err != nil {
			return err
		}
		e.recs = append(e.recs, tagString)
		e.recs = binary.AppendUvarint(e.recs, e.internBytes(str))
		return nil
	case c == 't':
		return s.literal("true", func() { e.recs = append(e.recs, tagTrue) })
	case c == 'f':
		return s.literal("false", func() { e.recs = append(e.recs, tagFalse) })
	case c == 'n':
		return s.literal("null", func() { e.recs = append(e.recs, tagNull) })
	case c == '-' || (c >= '0' && c <= '9'):
		return e.number(s)
	}
	return errSyntax
}

func (e *Encoder) array(s *scanner, depth int) error {
	if depth >= maxDepth {
		return errors.New("wire: body nested too deeply")
	}
	e.recs = append(e.recs, tagArray)
	s.i++ // [
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		e.recs = append(e.recs, tagEnd)
		return nil
	}
	for {
		if err := e.value(s, depth); err != nil {
			return err
		}
		s.space()
		if s.i >= len(s.b) {
			return errSyntax
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			e.recs = append(e.recs, tagEnd)
			return nil
		default:
			return errSyntax
		}
	}
}

func (s *scanner) literal(word string, emit func()) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return errSyntax
	}
	s.i += len(word)
	emit()
	return nil
}

// str returns the unescaped string at s (s.b[s.i] must be '"'); the
// result may alias s.b.
func (s *scanner) str() ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, errSyntax
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return nil, errSyntax
		case c == '"':
			s.i = j + 1
			if !escaped {
				return s.b[start+1 : j], nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:j+1], &out); err != nil {
				return nil, errSyntax
			}
			return []byte(out), nil
		}
	}
	return nil, errSyntax
}

// number encodes the JSON number at s as an int, a decimal (exact text
// kept), a float64, or, if out of float64 range, its text.
func (e *Encoder) number(s *scanner) error {
	start := s.i
	dot, exp := -1, false
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' {
			s.i++
			continue
		}
		if c == '.' && dot < 0 && !exp {
			dot = s.i
			s.i++
			continue
		}
		if c == 'e' || c == 'E' {
			exp = true
			s.i++
			continue
		}
		break
	}
	text := s.b[start:s.i]
	if !validNumber(text) {
		return errSyntax
	}
	if !exp {
		scale := 0
		if dot >= 0 {
			scale = s.i - dot - 1
		}
		m, ok := mantissa(text)
		switch {
		case ok && m == 0 && text[0] == '-': // -0: a float below
		case ok && scale <= maxScale:
			if scale == 0 {
				e.recs = append(e.recs, tagInt)
			} else {
				e.recs = append(e.recs, tagDecimal, byte(scale))
			}
			e.recs = binary.AppendVarint(e.recs, m)
			return nil
		default: // too many digits for int64: keep the exact text
			e.recs = append(e.recs, tagNumber)
			e.recs = binary.AppendUvarint(e.recs, e.internBytes(text))
			return nil
		}
	}
	if f, err := strconv.ParseFloat(string(text), 64); err == nil && !math.IsInf(f, 0) {
		e.recs = append(e.recs, tagFloat)
		e.recs = binary.LittleEndian.AppendUint64(e.recs, math.Float64bits(f))
		return nil
	}
	e.recs = append(e.recs, tagNumber)
	e.recs = binary.AppendUvarint(e.recs, e.internBytes(text))
	return nil
}

// mantissa returns the digits of a number without exponent (the '.'
// skipped) as an int64, false if they do not fit.
func mantissa(text []byte) (int64, bool) {
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	var m int64
	for _, c := range text {
		if c == '.' {
			continue
		}
		d := int64(c - '0')
		if m > (math.MaxInt64-d)/10 {
			return 0, false
		}
		m = m*10 + d
	}
	if neg {
		m = -m
	}
	return m, true
}

// validNumber checks the JSON number grammar.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}

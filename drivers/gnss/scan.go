package gnss

import (
	"bufio"
	"errors"
	"io"
)

// ScanSentences is a bufio.SplitFunc that yields candidate NMEA sentences
// ("$..." or "!..." up to the line end, terminator stripped) from a byte
// stream that may mix in binary protocol bytes and partial lines. A
// candidate is abandoned, without losing what follows, when a new start
// delimiter or a byte that cannot occur in NMEA appears before its line
// ends, or when it grows past the maximum sentence length. Candidates are
// not checksum-verified here (ParseSentence does that).
func ScanSentences(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for {
		start := -1
		for i, c := range data {
			if c == '$' || c == '!' {
				start = i
				break
			}
		}
		if start < 0 {
			return len(data), nil, nil // all noise
		}
		end, restart := sentenceEnd(data[start:])
		switch {
		case end >= 0:
			return advance + start + end + 1, data[start : start+end], nil
		case restart > 0:
			// Abandon the partial candidate; rescan from restart.
			data = data[start+restart:]
			advance += start + restart
			continue
		case atEOF && len(data) > start+1:
			return advance + len(data), data[start:], nil
		case atEOF:
			return advance + len(data), nil, nil
		}
		// Need more data; keep the candidate in the buffer.
		return advance + start, nil, nil
	}
}

// sentenceEnd finds the CR or LF ending the candidate at b[0]. It returns
// end ≥ 0 on success, restart > 0 when the candidate must be abandoned at
// that offset, and (-1, 0) when more input is needed.
func sentenceEnd(b []byte) (end, restart int) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' || c == '\n':
			return i, 0
		case c == '$' || c == '!':
			return -1, i
		case c < 0x20 || c > 0x7e:
			return -1, i + 1
		case i >= maxSentence:
			return -1, i
		}
	}
	return -1, 0
}

// A Reader reads verified sentences from a byte stream, skipping (and
// counting) noise, partial lines and sentences with bad checksums.
type Reader struct {
	sc *bufio.Scanner
	// Sentences counts sentences returned; Rejected counts candidates
	// that failed ParseSentence (bad checksum, syntax).
	Sentences, Rejected int
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	sc.Split(ScanSentences)
	return &Reader{sc: sc}
}

// Next returns the next valid sentence, or the reader's error (io.EOF at
// the end of the stream).
func (r *Reader) Next() (Sentence, error) {
	for r.sc.Scan() {
		s, err := ParseSentence(r.sc.Bytes())
		if err != nil {
			r.Rejected++
			continue
		}
		r.Sentences++
		return s, nil
	}
	if err := r.sc.Err(); err != nil {
		return Sentence{}, err
	}
	return Sentence{}, io.EOF
}

// DecodeAll reads r to its end and calls fn with every fix, in order,
// exactly as the GNSS driver assembles them (before gating).
func DecodeAll(r io.Reader, fn func(Fix)) (*Reader, *Decoder, error) {
	rd := NewReader(r)
	var dec Decoder
	for {
		s, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rd, &dec, err
		}
		if f, ok, _ := dec.Feed(s); ok {
			fn(f)
		}
	}
	if f, ok := dec.Flush(); ok {
		fn(f)
	}
	return rd, &dec, nil
}

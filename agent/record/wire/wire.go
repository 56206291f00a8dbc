// Package wire is the compact batch encoding of tcu-agent telemetry and
// events (docs/wire.md): the same records as the JSON envelope of
// PRODUCT.md, `{"v":1,"device":...,"records":[...]}`, with a per-message
// string dictionary, delta-encoded seq and timestamps, typed values and a
// general compressor over the whole batch.
//
// Backends import this package to decode what the agent sends; it depends
// on nothing but the standard library and github.com/klauspost/compress.
// Decode never panics and bounds what it allocates by MaxDecoded, whatever
// the input.
package wire

import (
	"bytes"
	"errors"
)

// Magic starts every compact batch. A JSON envelope starts with '{', so the
// two are told apart by the first byte.
var Magic = [3]byte{'T', 'C', 'B'}

// Version is the format version this package writes and reads.
const Version = 1

// Compression of the body (header byte 4).
const (
	CompressNone    byte = 0
	CompressZstd    byte = 1
	CompressDeflate byte = 2
)

// HeaderSize is the fixed header: magic (3), version (1), compression (1).
const HeaderSize = 5

// MaxDecoded bounds the decompressed body Decode accepts (4 MiB; an
// agent's message is at most 128 KiB uncompressed).
const MaxDecoded = 4 << 20

// Value tags (docs/wire.md).
const (
	tagNull    = 0x00
	tagFalse   = 0x01
	tagTrue    = 0x02
	tagInt     = 0x03 // zigzag varint
	tagDecimal = 0x04 // scale byte, zigzag varint mantissa: m / 10^scale
	tagFloat   = 0x05 // 8 bytes IEEE 754 little endian
	tagString  = 0x06 // uvarint dictionary index
	tagObject  = 0x07 // fields: (uvarint key index + 1, value)…, uvarint 0
	tagArray   = 0x08 // values…, tagEnd
	tagNumber  = 0x09 // uvarint dictionary index of a JSON number's text
	tagEnd     = 0x0A // ends an array
)

// maxDepth bounds nesting of objects and arrays (encoder and decoder).
const maxDepth = 64

// maxScale is the largest decimal scale written.
const maxScale = 20

// ErrFormat marks bytes that are not a valid compact batch.
var ErrFormat = errors.New("wire: malformed compact batch")

// IsCompact reports whether payload starts like a compact batch.
func IsCompact(payload []byte) bool {
	return len(payload) >= HeaderSize && bytes.Equal(payload[:3], Magic[:])
}

// Package dbc loads CAN database (DBC) files as integrators actually have
// them and decodes and encodes CAN and CAN FD frames with them.
//
// Loading is tolerant: Parse keeps every message, signal, value table,
// comment and attribute it understands and reports each construct it had to
// skip (or could only partly understand) as a Warning naming file and line.
// It fails only when nothing usable (no message) is left. The rules are
// written up in docs/dbc.md.
//
// Decoding supports Intel (little-endian) and Motorola (big-endian, DBC
// start-bit numbering) signals, two's-complement signed values, IEEE float
// signals (SIG_VALTYPE_), scale and offset, value descriptions, simple and
// extended multiplexing (SG_MUL_VAL_) and payloads up to 64 bytes (CAN FD).
// Message.DecodeInto does not allocate and is meant for the per-frame path.
//
// A Database and everything it points to is read-only after Parse returns;
// it may be shared by any number of goroutines.
package dbc

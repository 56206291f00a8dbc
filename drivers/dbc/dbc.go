package dbc

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Errors returned by this package; test with errors.Is.
var (
	// ErrUnusable means a file held no usable message at all.
	ErrUnusable = errors.New("no usable message")
	// ErrNotFound means a message or signal named by the caller does not exist.
	ErrNotFound = errors.New("not found")
	// ErrShortPayload means a payload is shorter than the message length.
	ErrShortPayload = errors.New("payload shorter than message length")
	// ErrUnknownSignal means Encode was given a signal the message lacks.
	ErrUnknownSignal = errors.New("unknown signal")
	// ErrOutOfRange means a physical value lies outside the signal's [Min,Max].
	ErrOutOfRange = errors.New("value out of range")
	// ErrNotRepresentable means a physical value has no raw encoding
	// (NaN, infinity, too large for the signal's bits, or zero scale).
	ErrNotRepresentable = errors.New("value not representable")
	// ErrInactive means Encode was given a multiplexed signal whose
	// multiplexer value does not select it.
	ErrInactive = errors.New("signal not selected by multiplexer")
)

// A Warning describes one construct of a DBC file that was skipped or only
// partly understood.
type Warning struct {
	File string
	Line int
	Msg  string
}

// String formats the warning as "file:line: msg".
func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Database is the usable content of one DBC file.
type Database struct {
	// Messages holds every usable message, sorted by ID (standard IDs
	// before extended ones with the same number).
	Messages []*Message
	// Version is the VERSION string, if any.
	Version string
	// Nodes lists the BU_ node names.
	Nodes []string
	// ValueTables holds the named VAL_TABLE_ tables.
	ValueTables map[string]map[int64]string
	// Comment is the network comment (CM_ "...";), if any.
	Comment string

	byName  map[string]*Message
	byID    map[uint64]*Message
	skipped map[string]Warning // "MSG" / "MSG.Sig" dropped while loading
}

// Message is one CAN message (BO_).
type Message struct {
	Name string
	// ID is the 11- or 29-bit identifier, without DBC flag bits.
	ID uint32
	// Extended marks a 29-bit identifier.
	Extended bool
	// Length is the payload length in bytes (0..64).
	Length int
	// Sender is the transmitting node.
	Sender string
	// Signals in file order.
	Signals []*Signal
	// FD marks a CAN FD message: Length above 8, or a VFrameFormat
	// attribute (or its default) naming a CAN FD format.
	FD bool
	// CycleTime is the GenMsgCycleTime attribute (or its default); zero
	// when absent.
	CycleTime time.Duration
	// Comment is the CM_ BO_ text, if any.
	Comment string

	plan  *plan
	bySig map[string]*Signal
	rawID uint32
	file  string
	line  int
}

// ValueType tells how a signal's raw bits are interpreted.
type ValueType uint8

// Signal value types (SIG_VALTYPE_).
const (
	Integer ValueType = iota // two's complement or unsigned integer
	Float32                  // IEEE 754 single precision, Size 32
	Float64                  // IEEE 754 double precision, Size 64
)

// MuxRange is an inclusive range of multiplexer values.
type MuxRange struct{ Lo, Hi int64 }

// Signal is one signal (SG_) of a message.
type Signal struct {
	Name string
	// Start is the DBC start bit: the least significant bit for
	// little-endian signals, the most significant bit (in DBC's sawtooth
	// numbering) for big-endian ones.
	Start, Size int
	BigEndian   bool
	Signed      bool
	// Type is Integer unless SIG_VALTYPE_ says otherwise.
	Type          ValueType
	Scale, Offset float64
	Min, Max      float64
	Unit          string
	// Values maps raw values to their descriptions (VAL_), or is nil.
	Values map[int64]string
	// Receivers lists the receiving nodes.
	Receivers []string
	Comment   string
	// IsMultiplexer marks a multiplexer switch ("M", or "mNM" in extended
	// multiplexing).
	IsMultiplexer bool
	// MuxValue is the multiplexer value that selects this signal, -1 when
	// the signal is not multiplexed. With SG_MUL_VAL_ ranges it is the
	// lower bound of the first range.
	MuxValue int64
	// MuxParent names the multiplexer switch selecting this signal (set
	// for every multiplexed signal; from SG_MUL_VAL_ when present).
	MuxParent string
	// MuxRanges lists the switch values selecting the signal; a plain mN
	// signal has the single range {N, N}.
	MuxRanges []MuxRange

	line int // of the SG_ statement, for warnings
}

// Value is one decoded signal.
type Value struct {
	Signal *Signal
	// Raw is the raw integer (for float signals: the raw bit pattern).
	Raw int64
	// Phys is Raw scaled: Raw*Scale + Offset.
	Phys float64
	// Label is the value description for Raw, or "".
	Label string
}

// InRange reports whether the physical value lies within the signal's
// [Min, Max]; a signal without a usable range (Min >= Max, as in "[0|0]")
// is always in range. Decode never clamps; callers decide what an
// out-of-range value means (often "signal not available").
func (v Value) InRange() bool {
	s := v.Signal
	return s.Min >= s.Max || v.Phys >= s.Min && v.Phys <= s.Max
}

// Message returns the message with the given name.
func (db *Database) Message(name string) (*Message, bool) {
	m, ok := db.byName[name]
	return m, ok
}

// MessageByID returns the message with the given identifier.
func (db *Database) MessageByID(id uint32, extended bool) (*Message, bool) {
	m, ok := db.byID[idKey(id, extended)]
	return m, ok
}

// Signal resolves a reference of the form "MESSAGE.Signal".
func (db *Database) Signal(ref string) (*Message, *Signal, error) {
	mname, sname, ok := strings.Cut(ref, ".")
	if !ok || mname == "" || sname == "" {
		return nil, nil, fmt.Errorf("signal reference %q: want MESSAGE.Signal: %w", ref, ErrNotFound)
	}
	m, ok := db.byName[mname]
	if !ok {
		return nil, nil, fmt.Errorf("signal reference %q: message %q%s: %w", ref, mname, db.why(mname), ErrNotFound)
	}
	s, ok := m.Signal(sname)
	if !ok {
		return nil, nil, fmt.Errorf("signal reference %q: signal %q in message %q%s: %w",
			ref, sname, mname, db.why(mname+"."+sname), ErrNotFound)
	}
	return m, s, nil
}

// why explains a missing message or signal that was skipped while loading.
func (db *Database) why(key string) string {
	if w, ok := db.skipped[key]; ok {
		return " (skipped while loading: " + w.String() + ")"
	}
	return ""
}

// Signal returns the message's signal with the given name.
func (m *Message) Signal(name string) (*Signal, bool) {
	if m.bySig != nil {
		s, ok := m.bySig[name]
		return s, ok
	}
	for _, s := range m.Signals {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

func idKey(id uint32, extended bool) uint64 {
	k := uint64(id)
	if extended {
		k |= 1 << 32
	}
	return k
}

// index builds the lookup maps and sorts the messages.
func (db *Database) index() {
	sort.SliceStable(db.Messages, func(i, j int) bool {
		a, b := db.Messages[i], db.Messages[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return !a.Extended && b.Extended
	})
	db.byName = make(map[string]*Message, len(db.Messages))
	db.byID = make(map[uint64]*Message, len(db.Messages))
	for _, m := range db.Messages {
		db.byName[m.Name] = m
		db.byID[idKey(m.ID, m.Extended)] = m
	}
}

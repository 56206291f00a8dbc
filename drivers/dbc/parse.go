package dbc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// keywords are the DBC statement keywords. A keyword at the start of a line
// ends a statement whose ';' is missing.
var keywords = map[string]bool{
	"VERSION": true, "NS_": true, "BS_": true, "BU_": true, "BO_": true, "SG_": true,
	"CM_": true, "BA_DEF_": true, "BA_DEF_DEF_": true, "BA_": true, "VAL_": true,
	"VAL_TABLE_": true, "SIG_VALTYPE_": true, "SG_MUL_VAL_": true, "BO_TX_BU_": true,
	"EV_": true, "ENVVAR_DATA_": true, "SGTYPE_": true, "SGTYPE_VAL_": true,
	"SIG_GROUP_": true, "SIG_TYPE_REF_": true, "CAT_DEF_": true, "CAT_": true,
	"FILTER": true, "BA_DEF_SGTYPE_": true, "BA_SGTYPE_": true, "BA_DEF_REL_": true,
	"BA_REL_": true, "BA_DEF_DEF_REL_": true, "BU_SG_REL_": true, "BU_EV_REL_": true,
	"BU_BO_REL_": true, "SIGTYPE_VALTYPE_": true, "EV_DATA_": true, "NS_DESC_": true,
}

// ignored are ';'-terminated statements that carry nothing the agent uses;
// they are skipped without a warning.
var ignored = map[string]bool{
	"BA_DEF_": true, "BO_TX_BU_": true, "EV_": true, "ENVVAR_DATA_": true, "SGTYPE_": true,
	"SGTYPE_VAL_": true, "SIG_GROUP_": true, "SIG_TYPE_REF_": true, "CAT_DEF_": true,
	"CAT_": true, "FILTER": true, "BA_DEF_SGTYPE_": true, "BA_SGTYPE_": true,
	"BA_DEF_REL_": true, "BA_REL_": true, "BA_DEF_DEF_REL_": true, "BU_SG_REL_": true,
	"BU_EV_REL_": true, "BU_BO_REL_": true, "SIGTYPE_VALTYPE_": true, "EV_DATA_": true,
	"NS_DESC_": true,
}

// vectorIndependent is the pseudo message Vector tools park unassigned
// signals in.
const vectorIndependent = 0xC0000000

type parser struct {
	file  string
	toks  []token
	pos   int
	db    *Database
	warns []Warning

	cur      *Message // message receiving SG_ lines
	dropSG   string   // why SG_ lines are dropped while cur is nil ("" = silently)
	dropMsg  string   // name of the skipped message whose SG_ lines are dropped
	skipKey  string   // "MSG" or "MSG.Sig" the failing statement defined, if known
	byRaw    map[uint32]*Message
	byMasked map[uint32]*Message
	deferred []deferred

	cycleDefault float64
	cycle        map[*Message]float64
	fdDefault    bool
	fd           map[*Message]bool
}

// Parse parses DBC text. filename is used in warnings only. It returns an
// error (wrapping ErrUnusable) only when no usable message remains.
// Parse does not follow opendbc's CM_ "IMPORT file"; statements; Load does.
func Parse(filename string, data []byte) (*Database, []Warning, error) {
	return parseSources([]source{{file: filename, data: data}}, nil)
}

// source is one DBC text; several are parsed into one Database when a file
// imports others.
type source struct {
	file string
	data []byte
}

type deferred struct {
	file string
	f    func()
}

func parseSources(srcs []source, warns []Warning) (*Database, []Warning, error) {
	p := &parser{
		warns:    warns,
		db:       &Database{ValueTables: map[string]map[int64]string{}},
		byRaw:    map[uint32]*Message{},
		byMasked: map[uint32]*Message{},
		cycle:    map[*Message]float64{},
		fd:       map[*Message]bool{},
	}
	for _, s := range srcs {
		p.file, p.toks, p.pos = s.file, lex(string(s.data)), 0
		p.cur, p.dropSG, p.dropMsg = nil, "not inside a message (no BO_ before it)", ""
		p.run()
	}
	p.toks = nil
	for _, d := range p.deferred {
		p.file = d.file
		d.f()
	}
	p.finish()
	if len(p.db.Messages) == 0 {
		return nil, p.warns, fmt.Errorf("parse dbc %s: %w", srcs[len(srcs)-1].file, ErrUnusable)
	}
	return p.db, p.warns, nil
}

func (p *parser) warn(line int, format string, args ...any) {
	p.warns = append(p.warns, Warning{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// recordSkip remembers that the last warning dropped the message or signal
// key ("MSG" or "MSG.Sig"), so Database.Signal can say why it is missing.
func (p *parser) recordSkip(key string) {
	if key == "" || len(p.warns) == 0 {
		return
	}
	if p.db.skipped == nil {
		p.db.skipped = map[string]Warning{}
	}
	if _, dup := p.db.skipped[key]; !dup {
		p.db.skipped[key] = p.warns[len(p.warns)-1]
	}
}

func (p *parser) peek() token {
	if p.pos >= len(p.toks) {
		return token{kind: tEOF, first: true}
	}
	return p.toks[p.pos]
}

func (p *parser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

// atStmt reports whether the next token starts a new statement (or is EOF).
func (p *parser) atStmt() bool {
	t := p.peek()
	return t.kind == tEOF || t.first && t.kind == tWord && keywords[t.text]
}

// atLineEnd reports whether the current line has no more tokens.
func (p *parser) atLineEnd() bool { return p.peek().first }

func (p *parser) skipLine() {
	for !p.atLineEnd() {
		p.next()
	}
}

// skipStmt skips to after the next ';' or to the next statement keyword.
func (p *parser) skipStmt() {
	for !p.atStmt() {
		if t := p.next(); t.kind == tPunct && t.text == ";" {
			return
		}
	}
}

// run parses statements until EOF.
func (p *parser) run() {
	for {
		t := p.next()
		switch {
		case t.kind == tEOF:
			return
		case t.kind != tWord:
			p.warn(t.line, "skipped unexpected %s", describe(t))
			p.skipLine()
			continue
		}
		p.skipKey = ""
		if err := p.statement(t); err != nil {
			p.warn(t.line, "skipped %s: %v", t.text, err)
			p.recordSkip(p.skipKey)
			switch t.text {
			case "BO_", "SG_", "BU_", "VERSION":
				p.skipLine()
			default:
				p.skipStmt()
			}
		}
	}
}

func (p *parser) statement(t token) error {
	switch t.text {
	case "VERSION":
		s, err := p.str()
		p.db.Version = text(s)
		return err
	case "NS_":
		for t := p.peek(); t.kind != tEOF && !t.col0; t = p.peek() {
			p.next()
		}
		return nil
	case "BS_":
		p.skipLine()
		return nil
	case "BU_":
		return p.nodes()
	case "BO_":
		return p.message(t.line)
	case "SG_":
		return p.signal(t.line)
	case "CM_":
		return p.comment(t.line)
	case "BA_DEF_DEF_":
		return p.attrDefault()
	case "BA_":
		return p.attr(t.line)
	case "VAL_TABLE_":
		return p.valueTable(t.line)
	case "VAL_":
		return p.values(t.line)
	case "SIG_VALTYPE_":
		return p.valType(t.line)
	case "SG_MUL_VAL_":
		return p.mulVal(t.line)
	}
	if !ignored[t.text] {
		p.warn(t.line, "skipped unknown keyword %q", t.text)
	}
	p.skipStmt()
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tString:
		return "string"
	case tBad:
		return t.text
	case tEOF:
		return "end of file"
	}
	return strconv.Quote(t.text)
}

var errSyntax = errors.New("syntax error")

func (p *parser) expected(what string) error {
	return fmt.Errorf("%w: want %s, found %s (line %d)", errSyntax, what, describe(p.peek()), p.peek().line)
}

func (p *parser) word() (string, error) {
	if t := p.peek(); t.kind != tWord || t.first && keywords[t.text] {
		return "", p.expected("name")
	}
	return p.next().text, nil
}

func (p *parser) str() (string, error) {
	if p.peek().kind != tString {
		return "", p.expected("string")
	}
	return p.next().text, nil
}

func (p *parser) punct(c string) error {
	if t := p.peek(); t.kind != tPunct || t.text != c {
		return p.expected(strconv.Quote(c))
	}
	p.next()
	return nil
}

// end consumes a statement's ';'. A missing ';' before the next statement
// (or EOF) is tolerated with a warning.
func (p *parser) end(line int, kw string) error {
	if t := p.peek(); t.kind == tPunct && t.text == ";" {
		p.next()
		return nil
	}
	if p.atStmt() {
		p.warn(line, "%s: missing ';' (kept)", kw)
		return nil
	}
	return p.expected("';'")
}

func (p *parser) uint32() (uint32, error) {
	w, err := p.word()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(w, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: bad unsigned number %q", errSyntax, w)
	}
	return uint32(v), nil
}

func (p *parser) int() (int, error) {
	v, err := p.int64()
	if err != nil {
		return 0, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: number %d out of range", errSyntax, v)
	}
	return int(v), nil
}

func (p *parser) int64() (int64, error) {
	w, err := p.word()
	if err != nil {
		return 0, err
	}
	return parseInt(w)
}

// parseInt accepts decimal or 0x-hex integers, unsigned values up to 2^64-1
// (stored as their two's-complement bit pattern) and integral floats ("3.0").
func parseInt(w string) (int64, error) {
	if v, err := strconv.ParseInt(w, 0, 64); err == nil {
		return v, nil
	}
	if v, err := strconv.ParseUint(strings.TrimPrefix(w, "+"), 0, 64); err == nil {
		return int64(v), nil
	}
	f, err := strconv.ParseFloat(w, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("%w: bad integer %q", errSyntax, w)
	}
	return int64(f), nil
}

func (p *parser) float() (float64, error) {
	w, err := p.word()
	if err != nil {
		return 0, err
	}
	return parseFloat(w)
}

func parseFloat(w string) (float64, error) {
	f, err := strconv.ParseFloat(w, 64)
	if err == nil {
		return f, nil
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
		return f, nil // ±Inf or 0: still a usable bound
	}
	if v, ierr := parseInt(w); ierr == nil {
		return float64(v), nil
	}
	return 0, fmt.Errorf("%w: bad number %q", errSyntax, w)
}

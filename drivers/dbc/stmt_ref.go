package dbc

import (
	"fmt"
	"strconv"
	"strings"
)

// comment parses CM_ in its network, BU_, EV_, BO_ and SG_ forms.
func (p *parser) comment(line int) error {
	if p.peek().kind == tString {
		s := p.next().text
		p.db.Comment = text(s)
		return p.end(line, "CM_")
	}
	kind, err := p.word()
	if err != nil {
		return err
	}
	switch kind {
	case "BU_", "EV_":
		if _, err := p.word(); err != nil {
			return err
		}
		if _, err := p.str(); err != nil {
			return err
		}
	case "BO_":
		raw, err := p.uint32()
		if err != nil {
			return err
		}
		s, err := p.str()
		if err != nil {
			return err
		}
		p.later(func() {
			if m := p.msgRef(line, raw, "CM_ BO_"); m != nil {
				m.Comment = text(s)
			}
		})
	case "SG_":
		raw, err := p.uint32()
		if err != nil {
			return err
		}
		name, err := p.word()
		if err != nil {
			return err
		}
		s, err := p.str()
		if err != nil {
			return err
		}
		p.later(func() {
			if _, sig := p.sigRef(line, raw, name, "CM_ SG_"); sig != nil {
				sig.Comment = text(s)
			}
		})
	default:
		return fmt.Errorf("unsupported comment target %q", kind)
	}
	return p.end(line, "CM_")
}

func (p *parser) later(f func()) { p.deferred = append(p.deferred, deferred{file: p.file, f: f}) }

// attrValue reads an attribute value: a number, a name or a string.
func (p *parser) attrValue() (string, error) {
	if t := p.peek(); t.kind == tString || t.kind == tWord && !p.atStmt() {
		return p.next().text, nil
	}
	return "", p.expected("attribute value")
}

func (p *parser) attrDefault() error {
	name, err := p.str()
	if err != nil {
		return err
	}
	line := p.peek().line
	v, err := p.attrValue()
	if err != nil {
		return err
	}
	switch name {
	case "GenMsgCycleTime":
		if f, err := parseFloat(v); err == nil && f > 0 {
			p.cycleDefault = f
		}
	case "VFrameFormat":
		p.fdDefault = isFDFormat(v)
	}
	return p.end(line, "BA_DEF_DEF_")
}

// attr parses BA_. Only GenMsgCycleTime and VFrameFormat on messages are
// used; other
// attributes are checked for syntax and dropped.
func (p *parser) attr(line int) error {
	name, err := p.str()
	if err != nil {
		return err
	}
	var raw uint32
	isMsg := false
	if t := p.peek(); t.kind == tWord && !p.atStmt() {
		switch t.text {
		case "BO_":
			p.next()
			if raw, err = p.uint32(); err != nil {
				return err
			}
			isMsg = true
		case "SG_":
			p.next()
			if _, err = p.uint32(); err != nil {
				return err
			}
			if _, err = p.word(); err != nil {
				return err
			}
		case "BU_", "EV_":
			p.next()
			if _, err = p.word(); err != nil {
				return err
			}
		}
	}
	v, err := p.attrValue()
	if err != nil {
		return err
	}
	if isMsg && name == "GenMsgCycleTime" {
		f, err := parseFloat(v)
		if err != nil {
			return fmt.Errorf("GenMsgCycleTime: %w", err)
		}
		p.later(func() {
			if m := p.msgRef(line, raw, "BA_ GenMsgCycleTime"); m != nil {
				p.cycle[m] = f
			}
		})
	}
	if isMsg && name == "VFrameFormat" {
		fd := isFDFormat(v)
		p.later(func() {
			if m := p.msgRef(line, raw, "BA_ VFrameFormat"); m != nil {
				p.fd[m] = fd
			}
		})
	}
	return p.end(line, "BA_")
}

// isFDFormat interprets a VFrameFormat value: an index into Vector's
// standard enum (14 StandardCAN_FD, 15 ExtendedCAN_FD) or the enum name.
func isFDFormat(v string) bool {
	if n, err := parseInt(v); err == nil {
		return n == 14 || n == 15
	}
	return strings.HasSuffix(v, "CAN_FD")
}

// pairs reads "value "description"" pairs up to the end of a statement.
func (p *parser) pairs() (map[int64]string, error) {
	vals := map[int64]string{}
	for {
		t := p.peek()
		if t.kind != tWord || p.atStmt() {
			return vals, nil
		}
		v, err := parseInt(p.next().text)
		if err != nil {
			return nil, err
		}
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		vals[v] = text(s)
	}
}

func (p *parser) valueTable(line int) error {
	name, err := p.word()
	if err != nil {
		return err
	}
	vals, err := p.pairs()
	if err != nil {
		return fmt.Errorf("value table %s: %w", name, err)
	}
	p.db.ValueTables[name] = vals
	return p.end(line, "VAL_TABLE_")
}

// values parses VAL_ for a signal (or, silently ignored, an env variable).
func (p *parser) values(line int) error {
	first, err := p.word()
	if err != nil {
		return err
	}
	raw, idErr := strconv.ParseUint(first, 0, 32)
	if idErr != nil { // VAL_ <env var> ...: not used
		if _, err := p.pairs(); err != nil {
			return err
		}
		return p.end(line, "VAL_")
	}
	name, err := p.word()
	if err != nil {
		return err
	}
	vals, err := p.pairs()
	if err != nil {
		return fmt.Errorf("signal %s: %w", name, err)
	}
	p.later(func() {
		if _, s := p.sigRef(line, uint32(raw), name, "VAL_"); s != nil {
			s.Values = vals
		}
	})
	return p.end(line, "VAL_")
}

// valType parses "SIG_VALTYPE_ id signal : 1|2 ;".
func (p *parser) valType(line int) error {
	raw, err := p.uint32()
	if err != nil {
		return err
	}
	name, err := p.word()
	if err != nil {
		return err
	}
	if t := p.peek(); t.kind == tPunct && t.text == ":" {
		p.next()
	}
	typ, err := p.int()
	if err != nil {
		return err
	}
	if typ < 0 || typ > 2 {
		return fmt.Errorf("signal %s: unknown value type %d", name, typ)
	}
	p.later(func() {
		if _, s := p.sigRef(line, raw, name, "SIG_VALTYPE_"); s != nil {
			s.Type = ValueType(typ)
		}
	})
	return p.end(line, "SIG_VALTYPE_")
}

// mulVal parses "SG_MUL_VAL_ id signal switch lo-hi, lo-hi ;".
func (p *parser) mulVal(line int) error {
	raw, err := p.uint32()
	if err != nil {
		return err
	}
	name, err := p.word()
	if err != nil {
		return err
	}
	parent, err := p.word()
	if err != nil {
		return err
	}
	var ranges []MuxRange
	for t := p.peek(); (t.kind == tWord || t.kind == tPunct && t.text == ",") && !p.atStmt(); t = p.peek() {
		p.next()
		if t.kind == tPunct {
			continue
		}
		r, err := parseRange(t.text)
		if err != nil {
			return fmt.Errorf("signal %s: %w", name, err)
		}
		ranges = append(ranges, r)
	}
	if len(ranges) == 0 {
		return fmt.Errorf("signal %s: no multiplexer value ranges", name)
	}
	p.later(func() {
		if _, s := p.sigRef(line, raw, name, "SG_MUL_VAL_"); s != nil {
			s.MuxParent = parent
			s.MuxRanges = append(s.MuxRanges, ranges...)
		}
	})
	return p.end(line, "SG_MUL_VAL_")
}

func parseRange(w string) (MuxRange, error) {
	lo, hi, ok := strings.Cut(w, "-")
	a, err1 := strconv.ParseUint(lo, 10, 32)
	b, err2 := strconv.ParseUint(hi, 10, 32)
	if !ok || err1 != nil || err2 != nil || a > b {
		return MuxRange{}, fmt.Errorf("%w: bad multiplexer range %q", errSyntax, w)
	}
	return MuxRange{Lo: int64(a), Hi: int64(b)}, nil
}

package dbc

import (
	"fmt"
	"strconv"
	"strings"
)

func (p *parser) nodes() error {
	if t := p.peek(); t.kind == tPunct && t.text == ":" {
		p.next()
	}
	// Node names may continue on the following (indented) lines.
	for !p.atStmt() && !p.peek().col0 {
		t := p.next()
		if t.kind == tWord {
			p.db.Nodes = append(p.db.Nodes, t.text)
		}
	}
	return nil
}

// message parses "BO_ id name: length sender".
func (p *parser) message(line int) error {
	p.cur, p.dropSG, p.dropMsg = nil, "its message was skipped", ""
	raw, err := p.uint32()
	if err != nil {
		return err
	}
	name, err := p.word()
	if err != nil {
		return err
	}
	p.skipKey, p.dropMsg = name, name
	if err := p.punct(":"); err != nil {
		return err
	}
	length, err := p.int()
	if err != nil {
		return err
	}
	var sender string
	if !p.atLineEnd() {
		if sender, err = p.word(); err != nil {
			return err
		}
	}
	if !p.atLineEnd() {
		p.warn(line, "BO_ %s: ignored trailing text", name)
		p.skipLine()
	}
	if raw == vectorIndependent || name == "VECTOR__INDEPENDENT_SIG_MSG" {
		p.dropSG = ""
		return nil
	}
	if length < 0 || length > 64 {
		return fmt.Errorf("message %s: length %d outside 0..64", name, length)
	}
	id, ext := p.normID(line, raw)
	m := &Message{Name: name, ID: id, Extended: ext, Length: length, Sender: sender, rawID: raw, file: p.file, line: line}
	if old, dup := p.db.byName[name]; dup {
		return fmt.Errorf("message %s: duplicate name (first has ID %#x)", name, old.ID)
	}
	if old, dup := p.db.byID[idKey(id, ext)]; dup {
		return fmt.Errorf("message %s: duplicate ID %#x (already used by %s)", name, id, old.Name)
	}
	p.addMessage(m)
	p.cur = m
	return nil
}

func (p *parser) addMessage(m *Message) {
	if p.db.byName == nil {
		p.db.byName, p.db.byID = map[string]*Message{}, map[uint64]*Message{}
	}
	p.db.Messages = append(p.db.Messages, m)
	p.db.byName[m.Name] = m
	p.db.byID[idKey(m.ID, m.Extended)] = m
	p.byRaw[m.rawID] = m
	if _, ok := p.byMasked[m.ID]; !ok {
		p.byMasked[m.ID] = m
	}
}

// normID turns a DBC message ID into identifier and extended flag. Bit 31
// marks an extended ID; a number above 0x7FF without it can only be an
// extended identifier; bits above 28 are flag bits some tools add.
func (p *parser) normID(line int, raw uint32) (uint32, bool) {
	ext := raw&0x80000000 != 0
	id := raw & 0x7FFFFFFF
	if !ext && id > 0x7FF {
		p.warn(line, "BO_ ID %d exceeds 11 bits without the extended flag: treated as extended", raw)
		ext = true
	}
	if id > 0x1FFFFFFF {
		p.warn(line, "BO_ ID %d has flag bits above bit 28: masked to %#x", raw, id&0x1FFFFFFF)
		id &= 0x1FFFFFFF
	}
	return id, ext
}

// msgRef resolves a message ID used in a CM_/BA_/VAL_ statement: first as
// written, then with flag bits removed.
func (p *parser) msgRef(line int, raw uint32, kw string) *Message {
	if m, ok := p.byRaw[raw]; ok {
		return m
	}
	if m, ok := p.byMasked[raw&0x1FFFFFFF]; ok {
		p.warn(line, "%s: message ID %d matched %s (%#x) after removing flag bits", kw, raw, m.Name, m.ID)
		return m
	}
	p.warn(line, "skipped %s: no message with ID %d", kw, raw)
	return nil
}

func (p *parser) sigRef(line int, raw uint32, name, kw string) (*Message, *Signal) {
	m := p.msgRef(line, raw, kw)
	if m == nil {
		return nil, nil
	}
	s, ok := m.Signal(name)
	if !ok {
		p.warn(line, "skipped %s: message %s has no signal %q", kw, m.Name, name)
		return m, nil
	}
	return m, s
}

// signal parses one SG_ line into the current message.
func (p *parser) signal(line int) error {
	if p.cur == nil {
		if p.dropSG != "" {
			p.warn(line, "skipped SG_: %s", p.dropSG)
			if t := p.peek(); p.dropMsg != "" && t.kind == tWord && !t.first {
				p.recordSkip(p.dropMsg + "." + t.text)
			}
		}
		p.skipLine()
		return nil
	}
	s, err := p.signalBody()
	if err != nil {
		return err
	}
	s.line = line
	if _, dup := p.cur.Signal(s.Name); dup {
		return fmt.Errorf("signal %s.%s: duplicate name", p.cur.Name, s.Name)
	}
	p.cur.Signals = append(p.cur.Signals, s)
	if p.cur.bySig == nil {
		p.cur.bySig = map[string]*Signal{}
	}
	p.cur.bySig[s.Name] = s
	return nil
}

func (p *parser) signalBody() (*Signal, error) {
	name, err := p.word()
	if err != nil {
		return nil, err
	}
	p.skipKey = p.cur.Name + "." + name
	s := &Signal{Name: name, MuxValue: -1}
	if t := p.peek(); t.kind == tWord && !t.first {
		if err := parseMux(s, p.next().text); err != nil {
			return nil, err
		}
	}
	if err := p.punct(":"); err != nil {
		return nil, err
	}
	if s.Start, err = p.int(); err != nil {
		return nil, err
	}
	if err := p.punct("|"); err != nil {
		return nil, err
	}
	if s.Size, err = p.int(); err != nil {
		return nil, err
	}
	if err := p.punct("@"); err != nil {
		return nil, err
	}
	if err := p.byteOrder(s); err != nil {
		return nil, err
	}
	if err := p.scaling(s); err != nil {
		return nil, err
	}
	if p.peek().kind == tString && !p.atLineEnd() {
		s.Unit = text(p.next().text)
	}
	for !p.atLineEnd() {
		if t := p.next(); t.kind == tWord {
			s.Receivers = append(s.Receivers, t.text)
		}
	}
	if s.Size < 1 || s.Size > 64 || s.Start < 0 || s.Start > 511 {
		return nil, fmt.Errorf("signal %s: start %d size %d out of range", name, s.Start, s.Size)
	}
	return s, nil
}

func parseMux(s *Signal, w string) error {
	switch {
	case w == "M":
		s.IsMultiplexer = true
		return nil
	case len(w) > 1 && w[0] == 'm':
		digits := strings.TrimSuffix(w[1:], "M")
		v, err := strconv.ParseUint(digits, 10, 32)
		if err != nil {
			break
		}
		s.MuxValue = int64(v)
		s.IsMultiplexer = len(digits) != len(w)-1
		return nil
	}
	return fmt.Errorf("signal %s: bad multiplexer indicator %q", s.Name, w)
}

// byteOrder parses "1+", "0-" or "1 +" after '@'.
func (p *parser) byteOrder(s *Signal) error {
	w, err := p.word()
	if err != nil {
		return err
	}
	if len(w) == 1 && !p.atLineEnd() && p.peek().kind == tWord {
		w += p.next().text
	}
	if len(w) != 2 || (w[0] != '0' && w[0] != '1') || (w[1] != '+' && w[1] != '-') {
		return fmt.Errorf("signal %s: bad byte order/sign %q", s.Name, w)
	}
	s.BigEndian, s.Signed = w[0] == '0', w[1] == '-'
	return nil
}

// scaling parses "(scale,offset) [min|max]".
func (p *parser) scaling(s *Signal) error {
	var err error
	if err = p.punct("("); err != nil {
		return err
	}
	if s.Scale, err = p.float(); err != nil {
		return err
	}
	if err = p.punct(","); err != nil {
		return err
	}
	if s.Offset, err = p.float(); err != nil {
		return err
	}
	if err = p.punct(")"); err != nil {
		return err
	}
	if err = p.punct("["); err != nil {
		return err
	}
	if s.Min, err = p.float(); err != nil {
		return err
	}
	if err = p.punct("|"); err != nil {
		return err
	}
	if s.Max, err = p.float(); err != nil {
		return err
	}
	return p.punct("]")
}

package dbc

import (
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF    tokKind = iota
	tWord           // identifier or number: [A-Za-z0-9_.+-]+
	tString         // "..." (text without quotes)
	tPunct          // any other single byte
	tBad            // unterminated string
)

type token struct {
	kind  tokKind
	text  string
	line  int
	first bool // first token on its line
	col0  bool // starts in column 0
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '+' || c == '-' || c >= 0x80
}

// lex splits src into tokens. It never fails: an unterminated string
// becomes a tBad token and lexing resumes on the next line.
func lex(src string) []token {
	src = strings.TrimPrefix(src, "\uFEFF")
	toks := make([]token, 0, len(src)/4)
	line, lineStart := 1, 0
	first := true
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			lineStart, first = i, true
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		}
		t := token{line: line, first: first, col0: i == lineStart}
		first = false
		switch {
		case c == '"':
			end := closingQuote(src[i+1:])
			if end < 0 {
				t.kind, t.text = tBad, "unterminated string"
				toks = append(toks, t)
				nl := strings.IndexByte(src[i:], '\n')
				if nl < 0 {
					return toks
				}
				i += nl
				continue
			}
			t.kind, t.text = tString, unescape(src[i+1:i+1+end])
			if raw := src[i+1 : i+1+end]; strings.IndexByte(raw, '\n') >= 0 {
				line += strings.Count(raw, "\n")
				lineStart = i + 1 + strings.LastIndexByte(raw, '\n') + 1
			}
			i += end + 2
		case isWordByte(c):
			j := i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			t.kind, t.text = tWord, src[i:j]
			i = j
		default:
			t.kind, t.text = tPunct, src[i:i+1]
			i++
		}
		toks = append(toks, t)
	}
	return toks
}

// text returns s as valid UTF-8, reading invalid input as Latin-1 (the
// encoding Windows tools write DBC files in).
func text(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// closingQuote returns the index of the quote ending a string body, skipping
// quotes escaped with a backslash (\"), or -1.
func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unescape resolves \" and \\ in a string body.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

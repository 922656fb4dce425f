package sqlverb

import (
	"bytes"
	"math/bits"
	"strings"
)

type tokKind uint8

const (
	tEOF    tokKind = iota
	tWord           // unquoted word: a keyword, a name or a number
	tQuoted         // quoted name: `…`, Postgres "…", MySQL "…" (a string unless a name stands there)
	tString         // string literal or dollar-quoted body
	tPunct          // one byte (or a $n parameter)
)

// token is one lexical token of the text: s[start:end] is the word, the
// inside of the quotes (tQuoted), or the whole token. It has at most four
// fields so that the compiler keeps it in registers: a larger struct is
// copied through memory between next, token and word, which cost a
// store-forwarding stall per token (a third of Scan's time).
type token struct {
	kind       tokKind
	c          byte // tPunct: the byte; tQuoted, tString: the quote
	start, end int
}

// digit reports whether t is a word that starts with a digit.
func (t token) digit(s []byte) bool { return t.kind == tWord && t.end > t.start && isDigit(s[t.start]) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isLetter(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

// wordCont marks the bytes that continue an unquoted word in either
// dialect: isWordByte(c, false).
var wordCont = func() (t [256]bool) {
	for c := range t {
		t[c] = isLetter(byte(c)) || isDigit(byte(c)) || c == '$'
	}
	return t
}()

// isWordByte: a byte of an unquoted word. MySQL words may start with a
// digit or '$'; a Postgres word starting with a digit is a number, and '$'
// only continues one.
func (sc *scanner) isWordByte(c byte, first bool) bool {
	switch {
	case isLetter(c), isDigit(c):
		return true
	case c == '$':
		return sc.d == MySQL || !first
	}
	return false
}

// Byte classes for next: most bytes decide their token alone.
const (
	lcOther uint8 = iota // look closer: quotes, '$', comment starts, '*'
	lcBlank              // whitespace
	lcWord               // starts an unquoted word in both dialects (not '$')
	lcPunct              // a one-byte token in both dialects and every mode
)

var lexClass = func() (t [256]uint8) {
	for c := range t {
		switch b := byte(c); {
		case b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f':
			t[c] = lcBlank
		case isLetter(b) || isDigit(b):
			t[c] = lcWord
		case strings.IndexByte("'\"`$#-/*", b) < 0:
			t[c] = lcPunct
		}
	}
	return t
}()

// next returns the next token, skipping blanks and comments; it enters
// and leaves MySQL executable comments, whose content is code. Blanks,
// words and one-byte tokens are read here, the rest by lex.
func (sc *scanner) next() token {
	if sc.pkAt == sc.i && sc.pkExec == sc.exec {
		sc.i, sc.exec = sc.pkEnd, sc.pkExecEnd
		return sc.pk // what peek lexed here
	}
	s := sc.s
	for i := sc.i; i < len(s); i = sc.i {
		c := s[i]
		switch lexClass[c] {
		case lcBlank:
			sc.i = i + 1
			continue
		case lcWord:
			if sc.wide {
				break
			}
			j := wordEnd(s, i+1)
			if j == i+1 && c|0x20 == 'e' && sc.d == Postgres && j < len(s) && s[j] == '\'' {
				sc.i = j
				return sc.lexQuoted(tString, true, false) // E'…': backslash escapes always
			}
			sc.i = j
			if j == i+1 {
				sc.uamp(i)
			}
			return token{kind: tWord, start: i, end: j}
		case lcPunct:
			sc.i = i + 1
			return token{kind: tPunct, c: c, start: i, end: i + 1}
		}
		sc.i = i
		switch c {
		case '#':
			if sc.d == MySQL {
				sc.skipLine()
				continue
			}
		case '-':
			// mysqld starts a comment only at "--" followed by a blank or
			// a control byte ("1--1" is arithmetic); Postgres at any "--".
			if i+1 < len(s) && s[i+1] == '-' &&
				(sc.d == Postgres || i+2 >= len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f) {
				sc.skipLine()
				continue
			}
		case '/':
			if i+1 < len(s) && s[i+1] == '*' {
				sc.comment()
				continue
			}
		case '*':
			if sc.exec && i+1 < len(s) && s[i+1] == '/' {
				sc.exec = false
				sc.i = i + 2
				continue
			}
		}
		return sc.lex()
	}
	return token{kind: tEOF, start: len(s), end: len(s)}
}

// peek returns the next token without consuming it. The token is kept, so
// that the next call of next at the same place does not lex it again.
func (sc *scanner) peek() token {
	i, exec := sc.i, sc.exec
	t := sc.next()
	if !sc.slow {
		sc.pk, sc.pkAt, sc.pkEnd, sc.pkExec, sc.pkExecEnd = t, i, sc.i, exec, sc.exec
	}
	sc.i, sc.exec = i, exec
	return t
}

// wordEnd returns the index of the first byte from j on that does not
// continue an unquoted word (wordCont), or len(s). It tests eight bytes at
// a time where s has them.
func wordEnd(s []byte, j int) int {
	for len(s)-j >= 8 {
		if m := nonWord8(le64(s[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	for j < len(s) && wordCont[s[j]] {
		j++
	}
	return j
}

const (
	ones8  = 0x0101010101010101
	highs8 = 0x8080808080808080
)

// nonWord8 returns the high bit of each of the eight bytes packed in x
// that does not continue an unquoted word: not an ASCII letter, digit,
// '_' or '$' and below 0x80. Every sum below stays under 0x100 per byte,
// so no carry crosses into the next byte.
func nonWord8(x uint64) uint64 {
	y := x &^ highs8 // the low 7 bits of each byte
	z := y | fold8   // letters in lower case
	u := y ^ '_'*ones8
	d := y ^ '$'*ones8
	// High bits: letter, digit; then, inverted, '_' and '$' (u or d is 0:
	// u+0x7f has the high bit unless u is 0).
	w := (z+(0x80-'a')*ones8)&^(z+(0x7f-'z')*ones8) | (y+(0x80-'0')*ones8)&^(y+(0x7f-'9')*ones8)
	return ^(x | w) & (u + 0x7f*ones8 | u) & (d + 0x7f*ones8 | d) & highs8
}

// peekKw returns the keyword of the next token, kwNone if it is no word.
func (sc *scanner) peekKw() kw {
	t := sc.peek()
	if t.kind != tWord {
		return kwNone
	}
	return keywordAt(sc.s, t.start, t.end)
}

// peekPunct reports whether the next token is the byte c.
func (sc *scanner) peekPunct(c byte) bool {
	t := sc.peek()
	return t.kind == tPunct && t.c == c
}

// skipLine skips a -- or # comment: mysqld ends it at LF or NUL, Postgres
// at LF or CR. The end byte is left for the caller.
func (sc *scanner) skipLine() {
	s := sc.s
	i := sc.i
	for i < len(s) {
		c := s[i]
		if c == '\n' || (sc.d == MySQL && c == 0) || (sc.d == Postgres && c == '\r') {
			break
		}
		i++
	}
	sc.i = i
}

// comment handles the "/*" at sc.i: a MySQL executable comment is entered
// (its version digits skipped, its content lexed as code); other comments
// are skipped, nested in Postgres, not in MySQL. An unterminated comment
// runs to the end.
func (sc *scanner) comment() {
	s := sc.s
	i := sc.i + 2
	if sc.d == MySQL {
		j := i
		switch {
		case j < len(s) && s[j] == '!':
			j++
		case j+1 < len(s) && s[j] == 'M' && s[j+1] == '!':
			j += 2
		default:
			k := bytes.Index(s[i:], []byte("*/"))
			if k < 0 {
				sc.i = len(s)
			} else {
				sc.i = i + k + 2
			}
			return
		}
		// Like mysqld: five or six digits are a version; fewer are code.
		k := j
		for k < len(s) && k-j < 6 && isDigit(s[k]) {
			k++
		}
		if k-j >= 5 {
			j = k
		}
		sc.i = j
		sc.exec = true
		return
	}
	depth := 1
	for i < len(s) {
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				sc.i = i
				return
			}
		default:
			i++
		}
	}
	sc.i = len(s)
}

// lex reads the token at sc.i, which is neither blank nor a comment.
func (sc *scanner) lex() token {
	s := sc.s
	i := sc.i
	c := s[i]
	switch {
	case c == '\'':
		return sc.lexQuoted(tString, sc.bs, true)
	case c == '"':
		if sc.d == Postgres {
			return sc.lexQuoted(tQuoted, false, false)
		}
		return sc.lexQuoted(tQuoted, sc.bs && !sc.ansi, true)
	case c == '`' && sc.d == MySQL:
		return sc.lexQuoted(tQuoted, false, false)
	case c == '$' && sc.d == Postgres:
		return sc.dollar()
	case sc.isWordByte(c, true):
		j := i + 1
		if sc.wide && c >= 0x81 && c <= 0xfe && j < len(s) {
			j++ // the second byte of a two-byte character
		}
		if sc.wide {
			for j < len(s) && sc.isWordByte(s[j], false) {
				if s[j] >= 0x81 && s[j] <= 0xfe && j+1 < len(s) {
					j++
				}
				j++
			}
		} else {
			for j < len(s) && wordCont[s[j]] {
				j++
			}
		}
		if sc.d == Postgres && j == i+1 && (c == 'E' || c == 'e') && j < len(s) && s[j] == '\'' {
			sc.i = j
			return sc.lexQuoted(tString, true, false) // E'…': backslash escapes always
		}
		sc.i = j
		if j == i+1 {
			sc.uamp(i)
		}
		return token{kind: tWord, start: i, end: j}
	}
	sc.i = i + 1
	return token{kind: tPunct, c: c, start: i, end: i + 1}
}

// uamp sets Overflow when the one-byte word at i is the U of a Postgres
// U&"…" name: Scan does not decode its escapes (U&"d\0061ta" is the table
// data), so it cannot tell which table the name is.
func (sc *scanner) uamp(i int) {
	s := sc.s
	if sc.d == Postgres && s[i]|0x20 == 'u' && i+2 < len(s) && s[i+1] == '&' && s[i+2] == '"' {
		sc.out.Overflow = true
	}
}

// lexQuoted reads a quoted token whose opening quote is at sc.i. A doubled
// quote stands for one; bs: a backslash escapes the next byte; dep: whether
// backslashes escape depends on a session mode, so a backslash before the
// quote makes the text ambiguous (see Scan).
func (sc *scanner) lexQuoted(kind tokKind, bs, dep bool) token {
	s := sc.s
	start := sc.i
	q := s[start]
	i := start + 1
	for i < len(s) {
		c := s[i]
		if sc.wide && c >= 0x81 && c <= 0xfe && i+1 < len(s) {
			i += 2 // a two-byte character, whatever its second byte
			continue
		}
		if c == '\\' {
			if dep && i+1 < len(s) && s[i+1] == q {
				sc.amb = true
			}
			if bs {
				i += 2
				continue
			}
		}
		if c == q {
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			sc.i = i + 1
			return token{kind: kind, c: q, start: start + 1, end: i}
		}
		i++
	}
	sc.i = len(s)
	return token{kind: kind, c: q, start: start + 1, end: len(s)}
}

// dollar reads what starts with '$' in Postgres: a parameter ($1), a
// dollar-quoted body ($$…$$, $tag$…$tag$) or a lone '$'.
func (sc *scanner) dollar() token {
	s := sc.s
	i := sc.i
	j := i + 1
	if j < len(s) && isDigit(s[j]) {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		sc.i = j
		return token{kind: tPunct, c: '$', start: i, end: j}
	}
	for j < len(s) && (isLetter(s[j]) || (j > i+1 && isDigit(s[j]))) {
		j++
	}
	if j < len(s) && s[j] == '$' {
		tag := s[i : j+1]
		k := bytes.Index(s[j+1:], tag)
		if k < 0 {
			sc.i = len(s)
		} else {
			sc.i = j + 1 + k + len(tag)
		}
		return token{kind: tString, c: '$', start: i, end: sc.i}
	}
	sc.i = i + 1
	return token{kind: tPunct, c: '$', start: i, end: i + 1}
}

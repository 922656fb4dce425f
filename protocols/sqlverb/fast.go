package sqlverb

import (
	"encoding/binary"
	"math/bits"
)

// The fast path: most queries an application sends are plain SELECTs
// (sysbench's point select, pgbench -S, joins with a WHERE clause), and
// for them the general scanner's work per token (a state machine of
// levels, clauses and phases) is mostly spent deciding that a token
// changes nothing. fastSelect reads such a text in one pass with a state
// per parenthesis level, taking the same decisions as the general scanner
// for the few constructs it accepts, and gives up (returns false) at the
// first byte, token or keyword outside them; Scan then scans the text in
// full. Giving up is always safe, so the subset is kept narrow:
//
//   - the text is ASCII, without backslashes, comments ("--", "#", "/*"),
//     braces, Postgres dollar quotes, E'…' strings or U&"…" names: nothing
//     whose reading depends on a session mode or a character set, or that
//     the general scanner marks as Overflow;
//   - its first word is SELECT, and so is a subquery's;
//   - a name follows FROM, JOIN and the commas of a FROM list; it is
//     unquoted (not a keyword, not starting with a digit) or quoted with
//     ` (MySQL) or ", and its parts are joined by '.';
//   - the other keywords are STRAIGHT_JOIN and those that the general
//     scanner ignores where they stand (fastInert: AS, ON, WHERE, BY…);
//   - no derived table, at most one ';', at the end.
//
// FuzzShortcuts and TestShortcutsRandom check that Scan reports the same
// with and without it; TestFastTakes that the benchmarks' queries take it.

// States of a level in the fast path; they mirror the level's table mode
// (level.tm) in the general scanner.
const (
	fsQuiet  uint8 = iota // a query's level, no name expected (tmNone)
	fsExpect              // a name is expected (tmExpect, listy, mFromList)
	fsAfter               // after a name: an alias, a comma, a JOIN, ON … (tmAfter, listy)
	fsExpr                // parentheses that hold no query (lvExpr): FROM gives up
)

// fastMaxDepth bounds the parentheses the fast path follows.
const fastMaxDepth = 16

// Byte classes of the fast path.
const (
	fcBail  uint8 = iota // give up
	fcBlank              // whitespace
	fcWord               // starts an unquoted word: letter, digit, '_'
	fcPunct              // a one-byte token that changes nothing where no name is expected
	fcDollar
	fcString // '
	fcQuoted // ` or "
	fcMinus
	fcComma
	fcSemi
	fcOpen
	fcClose
)

var fastClass = func() (t [256]uint8) {
	for c := range 0x80 {
		b := byte(c)
		switch {
		case b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f':
			t[c] = fcBlank
		case isLetter(b) || isDigit(b):
			t[c] = fcWord
		case b == '$':
			t[c] = fcDollar
		case b == '\'':
			t[c] = fcString
		case b == '`' || b == '"':
			t[c] = fcQuoted
		case b == '-':
			t[c] = fcMinus
		case b == ',':
			t[c] = fcComma
		case b == ';':
			t[c] = fcSemi
		case b == '(':
			t[c] = fcOpen
		case b == ')':
			t[c] = fcClose
		case b > ' ' && b < 0x7f && b != '#' && b != '/' && b != '\\' && b != '{' && b != '}':
			t[c] = fcPunct // = < > ! % & * + . : ? @ [ ] ^ | ~
		}
	}
	return t
}()

// fastInert: keywords that change nothing where a query's level expects
// no name, in parentheses, and after a name in a FROM list (general,
// afterWord and endsTableList do nothing with them there, for a SELECT);
// fastEnds: those of them that end a FROM list.
var fastInert, fastEnds = func() (inert, ends [kwCount]bool) {
	for _, k := range []kw{kwAS, kwON, kwNOT, kwLIKE, kwIN, kwBY, kwDESC, kwWHERE, kwORDER, kwGROUP, kwHAVING, kwLIMIT, kwOFFSET} {
		inert[k] = true
	}
	for _, k := range []kw{kwWHERE, kwORDER, kwGROUP, kwHAVING, kwLIMIT, kwOFFSET} {
		ends[k] = true
	}
	return inert, ends
}()

// fastSelect scans text as the general scanner would if text is in the
// fast path's subset (see above), recording its tables into out and
// returning true; the caller then records the verb SELECT. It returns
// false as soon as text leaves the subset; out may then hold some tables
// and Overflow, and the caller resets it.
func (sc *scanner) fastSelect(text []byte, d Dialect, out *Statement) bool {
	s := text
	i := skipBlanks(s, 0)
	if i == len(s) || fastClass[s[i]] != fcWord {
		return false
	}
	var j int
	var k kw
	if len(s)-i >= 8 {
		// SELECT from one load: six bytes that fold to it (letters, then)
		// and one that does not continue a word; else fastWord decides.
		x := binary.LittleEndian.Uint64(s[i:])
		if (x|fold8)&(1<<48-1) == kwKeys[kwSELECT][0] && !wordCont[byte(x>>48)] {
			j, k = i+6, kwSELECT
		}
	}
	if k == kwNone {
		j, k = fastWord(s, i)
	}
	if k != kwSELECT {
		return false
	}
	sc.s, sc.d, sc.out, sc.nctes = s, d, out, 0
	var stack [fastMaxDepth]uint8
	depth := 0
	state := fsQuiet
	for i = j; i < len(s); {
		c := s[i]
		switch fastClass[c] {
		case fcBlank:
			i++
		case fcDollar:
			if d == Postgres {
				// $n is a parameter; anything else may quote a body.
				j = i + 1
				for j < len(s) && isDigit(s[j]) {
					j++
				}
				if j == i+1 || state == fsExpect {
					return false
				}
				i = j
				continue
			}
			fallthrough // a MySQL word
		case fcWord:
			// fastWord's common case, inline: a word of up to 7 bytes
			// from one load; a longer one goes on from its ninth byte.
			if len(s)-i >= 8 {
				x := binary.LittleEndian.Uint64(s[i:])
				if m := nonWordASCII8(x); m != 0 {
					n := bits.TrailingZeros64(m) >> 3
					j, k = i+n, keyword7(x|fold8, n)
				} else {
					j = wordEndASCII(s, i+8)
					k = keywordAt(s, i, j)
				}
			} else {
				j, k = fastWord(s, i)
			}
			if d == Postgres && j == i+1 && j < len(s) && (c|0x20 == 'e' && s[j] == '\'' || c|0x20 == 'u' && s[j] == '&') {
				return false // E'…', U&"…"
			}
			switch state {
			case fsExpect:
				if k != kwNone || isDigit(c) {
					return false
				}
				if e := skipBlanks(s, j); e == len(s) || s[e] != '.' {
					sc.addWord(s[i:j]) // one unquoted part, the usual name
					i, state = e, fsAfter
					continue
				}
				if i = sc.fastName(tWord, 0, i, j); i < 0 {
					return false
				}
				state = fsAfter
				if i < len(s) && s[i] == ' ' {
					i++ // as after a word
				}
				continue
			case fsAfter:
				switch {
				case k == kwNone:
				case k == kwFROM || k == kwJOIN || k == kwSTRAIGHT_JOIN:
					state = fsExpect
				case fastEnds[k]:
					state = fsQuiet
				case !fastInert[k]:
					return false
				}
			case fsQuiet:
				if k == kwFROM {
					state = fsExpect
				} else if k != kwNone && !fastInert[k] {
					return false
				}
			default: // fsExpr
				if k != kwNone && !fastInert[k] {
					return false
				}
			}
			i = j
			if i < len(s) && s[i] == ' ' {
				i++ // the usual blank, without a turn of the loop
			}
		case fcString, fcQuoted:
			if c == '`' && d != MySQL {
				return false
			}
			j = quoteEnd(s, i)
			if j < 0 {
				return false // unterminated
			}
			if state == fsExpect {
				if c == '\'' {
					return false
				}
				if i = sc.fastName(tQuoted, c, i+1, j-1); i < 0 {
					return false
				}
				state = fsAfter
				continue
			}
			i = j
		case fcMinus:
			if state == fsExpect || i+1 < len(s) && s[i+1] == '-' {
				return false // a comment in either dialect
			}
			i++
		case fcPunct:
			if state == fsExpect {
				return false
			}
			i++
		case fcComma:
			switch state {
			case fsExpect:
				return false
			case fsAfter:
				state = fsExpect
			}
			i++
		case fcOpen:
			if state == fsExpect || depth == fastMaxDepth {
				return false // a derived table, or deep
			}
			stack[depth] = state
			depth++
			state = fsExpr
			i = skipBlanks(s, i+1)
			if i < len(s) && fastClass[s[i]] == fcWord {
				if j, k = fastWord(s, i); k == kwSELECT {
					state = fsQuiet // a subquery: its verb is no DML
					i = j
				}
			}
		case fcClose:
			if depth == 0 {
				return false
			}
			depth--
			state = stack[depth]
			i++
		case fcSemi:
			if depth > 0 || skipBlanks(s, i+1) < len(s) {
				return false // a second statement
			}
			i = len(s)
		default:
			return false
		}
	}
	return true
}

// fastName reads the name whose first part, of kind tWord or tQuoted
// (quote q), is s[i:j], as readName and takeName do, and records it. It
// returns the index after the name, or -1 to give up.
func (sc *scanner) fastName(kind tokKind, q byte, i, j int) int {
	s := sc.s
	buf := sc.out.nameTemp[:]
	n, parts := 0, 0
	end := j
	if kind == tQuoted {
		end = j + 1
	}
	for {
		if parts > 0 {
			if n < len(buf) {
				buf[n] = '.'
			}
			n++
		}
		n = sc.appendPart(buf, n, token{kind: kind, c: q, start: i, end: j})
		parts++
		k := skipBlanks(s, end)
		if k == len(s) || s[k] != '.' {
			break
		}
		k = skipBlanks(s, k+1)
		if k == len(s) {
			return -1
		}
		switch c := s[k]; {
		case fastClass[c] == fcWord || c == '$' && sc.d == MySQL:
			kind, i, j = tWord, k, wordEndASCII(s, k+1)
			if sc.d == Postgres && j == i+1 && j < len(s) && (c|0x20 == 'e' && s[j] == '\'' || c|0x20 == 'u' && s[j] == '&') {
				return -1 // E'…', U&"…"
			}
			end = j
		case c == '"' || c == '`' && sc.d == MySQL:
			e := quoteEnd(s, k)
			if e < 0 {
				return -1
			}
			kind, q, i, j, end = tQuoted, c, k+1, e-1, e
		default:
			return -1
		}
	}
	if n > MaxName {
		sc.out.Overflow = true
	} else if n > 0 {
		sc.addTable(buf[:n], parts)
	}
	return end
}

// addWord records the name made of the one unquoted ASCII word w as
// appendPart and addTable would (the fast path has no CTEs in scope):
// lower-cased and clipped to pgMaxIdent bytes in Postgres, written once
// into its slot of out.nameBuf rather than through out.nameTemp.
func (sc *scanner) addWord(w []byte) {
	out := sc.out
	pg := sc.d == Postgres
	if pg && len(w) > pgMaxIdent {
		w = w[:pgMaxIdent] // ASCII: no UTF-8 sequence to keep whole
	}
	if len(w) > MaxName {
		out.Overflow = true
		return
	}
	if out.N == MaxTables {
		n := copy(out.nameTemp[:], w)
		if pg {
			lowerASCII(out.nameTemp[:n])
		}
		sc.addTable(out.nameTemp[:n], 1)
		return
	}
	b := out.nameBuf[out.N][:len(w):len(w)]
	if pg {
		lowerCopy(b, w)
	} else {
		copy(b, w)
	}
	for _, t := range out.Tables[:out.N] {
		if string(t) == string(b) {
			return
		}
	}
	out.Tables[out.N] = b
	out.N++
}

// lowerCopy writes src lower-cased (ASCII letters; other bytes as they
// are, as lowerASCII) into dst, as long: eight bytes at a time, the last
// eight overlapping when the length is no multiple of eight.
func lowerCopy(dst, src []byte) {
	n := len(src)
	if n < 8 {
		for i, c := range src {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst[i] = c
		}
		return
	}
	dst = dst[:n]
	for i := 0; n-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], lower8(binary.LittleEndian.Uint64(src[i:])))
	}
	if n%8 != 0 {
		binary.LittleEndian.PutUint64(dst[n-8:], lower8(binary.LittleEndian.Uint64(src[n-8:])))
	}
}

// lower8 lower-cases the ASCII letters among the 8 bytes of x.
func lower8(x uint64) uint64 {
	y := x &^ highs8 // no carry across bytes below
	upper := (y + (0x80-'A')*ones8) &^ (y + (0x7f-'Z')*ones8) &^ x & highs8
	return x | upper>>2
}

// skipBlanks returns the index of the first byte from i on that is no
// blank, or len(s).
func skipBlanks(s []byte, i int) int {
	for i < len(s) && fastClass[s[i]] == fcBlank {
		i++
	}
	return i
}

// quoteEnd returns the index after the quote that closes the one at
// s[i] (a doubled quote stands for one), or -1 when none does or a
// backslash or a byte >= 0x80 comes first: without backslashes no session
// mode moves the end, in ASCII no character set does.
func quoteEnd(s []byte, i int) int {
	q := s[i]
	for k := i + 1; k < len(s); k++ {
		if s[k] == '\\' || s[k] >= 0x80 {
			return -1
		}
		if s[k] == q {
			if k+1 < len(s) && s[k+1] == q {
				k++
				continue
			}
			return k + 1
		}
	}
	return -1
}

// fastWord reads the word that starts at s[i], a byte of class fcWord
// (or a MySQL '$'), and returns its end and its keyword. Only ASCII word
// bytes continue it: a byte >= 0x80 ends it, and the fast path gives up
// there. A word of up to 7 bytes in a text of at least 8 is read and
// looked up from one load.
func fastWord(s []byte, i int) (int, kw) {
	var x uint64
	switch r := len(s) - i; {
	case r >= 8:
		x = binary.LittleEndian.Uint64(s[i:])
	case len(s) >= 8:
		// The text's last 8 bytes, shifted so that s[i] is the lowest:
		// the zero bytes past the end are no word bytes.
		x = binary.LittleEndian.Uint64(s[len(s)-8:]) >> (8 * uint(8-r))
	default:
		j := wordEndASCII(s, i+1)
		return j, keywordAt(s, i, j)
	}
	if m := nonWordASCII8(x); m != 0 {
		n := bits.TrailingZeros64(m) >> 3 // >= 1: s[i] continues a word
		return i + n, keyword7(x|fold8, n)
	}
	j := wordEndASCII(s, i+8)
	return j, keywordAt(s, i, j)
}

// keyword7 returns the keyword of the n-byte ASCII word (1 <= n <= 7)
// whose bytes, folded with |0x20, are the low bytes of x. Such a word has
// no 0x7f, so the folded bytes match a name only in its letters' two
// cases.
func keyword7(x uint64, n int) kw {
	c := byte(x) - 'a'
	if n < 2 || c >= 26 {
		return kwNone
	}
	b := &kwBuckets[n][c]
	if b[0] == kwNone {
		return kwNone
	}
	lo := x & (1<<(8*uint(n)) - 1)
	for _, k := range b {
		if k == kwNone || kwKeys[k][0] == lo {
			return k
		}
	}
	return kwNone
}

// wordEndASCII returns the index of the first byte from j on that is not
// an ASCII letter, digit, '_' or '$', or len(s).
func wordEndASCII(s []byte, j int) int {
	for len(s)-j >= 8 {
		if m := nonWordASCII8(binary.LittleEndian.Uint64(s[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	for j < len(s) && wordCont[s[j]] && s[j] < 0x80 {
		j++
	}
	return j
}

// nonWordASCII8 is nonWord8 for words of ASCII bytes: a byte >= 0x80 ends
// them too.
func nonWordASCII8(x uint64) uint64 {
	y := x &^ highs8
	z := y | fold8
	u := y ^ '_'*ones8
	d := y ^ '$'*ones8
	// High bits: letter, digit; then, inverted, '_' and '$' (u or d is 0).
	w := (z+(0x80-'a')*ones8)&^(z+(0x7f-'z')*ones8) | (y+(0x80-'0')*ones8)&^(y+(0x7f-'9')*ones8)
	return (x | ^w&(u+0x7f*ones8|u)&(d+0x7f*ones8|d)) & highs8
}

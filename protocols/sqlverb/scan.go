package sqlverb

import (
	"bytes"
	"encoding/binary"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Scan fills out (reset first) from the query text in dialect d; see the
// package doc. It allocates nothing. On an error out is left empty.
func Scan(text []byte, d Dialect, out *Statement) error {
	out.reset()
	if d != MySQL && d != Postgres {
		return ErrDialect
	}
	sc := &out.sc
	if !sc.slow && sc.fastSelect(text, d, out) {
		// As addVerb and finish would; an array store, not a copy call.
		*(*[6]byte)(out.verbBuf[0][:6]) = [6]byte{'S', 'E', 'L', 'E', 'C', 'T'}
		out.Verbs[0], out.subs[0], out.NVerbs = out.verbBuf[0][:6:6], out.subBuf[0][:0:0], 1
		out.Verb, out.Sub = out.Verbs[0], out.subs[0]
		return nil
	}
	// The fast path gave up: it may have recorded tables.
	out.reset()
	bs := d == MySQL // MySQL: backslash escapes on; Postgres: standard_conforming_strings on
	if err := sc.run(text, d, bs, false, false, out); err != nil {
		out.reset()
		return err
	}
	mb := multibyteHazard(text)
	if sc.amb || mb {
		// A session mode or the connection's character set decides where a
		// string ends. Scan under every combination and report the union.
		for i := 1; i < 8; i++ {
			bs, ansi, wide := i&1 == 0 == (d == MySQL), i&2 != 0, i&4 != 0
			if (ansi && d != MySQL) || (wide && !mb) || (!sc.amb && !wide) {
				continue
			}
			if err := sc.run(text, d, bs, ansi, wide, out); err != nil {
				out.reset()
				return err
			}
		}
	}
	out.finish()
	return nil
}

func (s *Statement) reset() {
	s.Verb, s.Sub = nil, nil
	s.N, s.NVerbs = 0, 0
	s.Overflow, s.Multi = false, false
}

// finish sets Verb and Sub from the verbs collected.
func (s *Statement) finish() {
	switch s.NVerbs {
	case 0:
		return
	case 1:
		s.Verb, s.Sub = s.Verbs[0], s.subs[0]
		return
	}
	n := copy(s.multi[:], VerbMulti)
	s.Verb = s.multi[:n:n]
	j := 0
	for i := 0; i < s.NVerbs; i++ {
		v := s.Verbs[i]
		seen := false
		for k := 0; k < i; k++ {
			if bytes.Equal(s.Verbs[k], v) {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		need := len(v)
		if j > 0 {
			need++
		}
		if j+need > MaxSub-len(",...") && i < s.NVerbs-1 || j+need > MaxSub {
			j += copy(s.joined[j:], ",...")
			break
		}
		if j > 0 {
			s.joined[j] = ','
			j++
		}
		j += copy(s.joined[j:], v)
	}
	s.Sub = s.joined[:j:j]
}

// addVerb records one statement's verb and sub once.
func addVerb[V, S ~string | ~[]byte](s *Statement, verb V, sub S) {
	for i := 0; i < s.NVerbs; i++ {
		if equal(s.Verbs[i], verb) && equal(s.subs[i], sub) {
			return
		}
	}
	if s.NVerbs == MaxVerbs {
		s.Overflow = true
		return
	}
	i := s.NVerbs
	n := copy(s.verbBuf[i][:], verb)
	s.Verbs[i] = s.verbBuf[i][:n:n]
	n = copy(s.subBuf[i][:], sub)
	s.subs[i] = s.subBuf[i][:n:n]
	s.NVerbs++
}

func equal[S ~string | ~[]byte](a []byte, b S) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Level kinds: what a parenthesis (or the whole statement) holds.
const (
	lvExpr uint8 = iota // an expression, argument or column list
	lvStmt              // a query: FROM introduces tables
	lvRefs              // table references: FROM (a JOIN b)
)

// Table modes of a level.
const (
	tmNone   uint8 = iota
	tmExpect       // a name is expected
	tmAfter        // a name was read; a comma continues a list (listy)
)

// Phases of a WITH clause on a level.
const (
	wNone      uint8 = iota
	wName            // a CTE name (or RECURSIVE) is expected
	wAfterName       // (columns) or AS
	wAs              // [NOT] MATERIALIZED, then the body
	wAfterBody       // a comma, SEARCH/CYCLE, or the main statement
)

// Where a level's verb goes.
const (
	slotNone  uint8 = iota // nested: only data-modifying verbs are recorded
	slotMain               // the statement's verb
	slotInner              // the verb of an explained or prepared statement
)

// Words skipped where a name is expected.
const (
	mDML      uint16 = 1 << iota // LOW_PRIORITY DELAYED HIGH_PRIORITY IGNORE QUICK (MySQL)
	mInto                        // INTO
	mOnly                        // ONLY (Postgres)
	mLateral                     // LATERAL
	mIfExists                    // IF [NOT] EXISTS
	mTable                       // TABLE
	mTables                      // TABLES (MySQL)
	mConc                        // CONCURRENTLY (Postgres)
	mRename                      // TO, AS; COLUMN INDEX KEY CONSTRAINT PARTITION end the name
	mGrant                       // ALL TABLE TABLES FUNCTION PROCEDURE SEQUENCE SCHEMA DATABASE, '*'
	mFrom                        // FROM restarts the list (DELETE)
	mOJ                          // OJ after '{' (MySQL ODBC outer join escape)

	mFromList = mOnly | mLateral
)

type level struct {
	kind       uint8
	vk         kw // verb of the level's query
	tm         uint8
	listy      bool
	mods       uint16
	start      bool // no token yet on this level
	stmtStart  bool // the statement's verb is still to come, and may be the first word here
	fromExpect bool // opened where a name was expected: a derived table or table references
	cteBody    bool // the body of the parent's CTE
	explOpts   bool // EXPLAIN (options)
	likeOK     bool // CREATE TABLE t (LIKE u)
	withPh     uint8
	withRec    bool
	withSlot   uint8
	withOwner  int8 // >= 0: the first query word resolves the WITH of that level
	ctePending int8 // index+1 of the CTE whose body is next, 0 none
}

// Statement phases at the statement's own level.
const (
	phNone uint8 = iota
	phObject
	phExplain
	phLoad
	phPrepare
	phPrepareInner
)

const maxCTEName = 256

type cte struct {
	name   [maxCTEName]byte
	n      int
	depth  int
	active bool
}

// stmtState is what the scanner knows about the current statement.
type stmtState struct {
	any         bool // a token was seen
	verbDone    bool
	verbKw      kw
	verbDepth   int
	mainN       int // the verb, scanner.mainBuf[:mainN]
	innerN      int // the inner verb, scanner.innerBuf[:innerN]
	phase       uint8
	obj         kw
	noFrom      bool // FROM at the statement's level names no table (GRANT, COPY, PREPARE, SHOW…)
	onIntro     bool // ON introduces the object (CREATE INDEX, GRANT)
	grant       bool
	show        bool
	copy        bool
	copyDone    bool
	copyVerb    string
	analyze     bool
	explainSkip bool
	load        kw
	loadLocal   bool
	outfile     bool
	extras      [MaxVerbs]kw
	nExtras     int
}

// scanner is one pass over a text under one set of lexical modes.
type scanner struct {
	s     []byte
	i     int
	d     Dialect
	bs    bool // backslash escapes in '…' strings
	ansi  bool // MySQL ANSI_QUOTES: "…" is a name
	wide  bool // a byte 0x81-0xfe starts a two-byte character (GBK, Big5, Shift JIS…)
	exec  bool // inside a MySQL executable comment
	amb   bool // a backslash stood before a quote in a mode-dependent string
	out   *Statement
	stmts int
	err   error

	depth    int
	deep     int // parentheses beyond MaxDepth
	lv       [MaxDepth + 1]level
	ctes     [MaxCTEs]cte
	nctes    int
	st       stmtState
	prevKw   kw
	lastName bool

	// Kept out of stmtState, which is cleared at each statement.
	mainBuf, innerBuf [l7.MaxVerb]byte

	// The last token peek lexed: next returns pk at pkAt with exec ==
	// pkExec and moves to pkEnd, pkExecEnd. pkAt is -1 when none.
	pk                token
	pkAt, pkEnd       int
	pkExec, pkExecEnd bool

	slow bool // tests: no shortcuts (quiet, the peeked token)
}

func (sc *scanner) run(text []byte, d Dialect, bs, ansi, wide bool, out *Statement) error {
	first := bs == (d == MySQL) && !ansi && !wide
	if first {
		sc.amb = false
	}
	sc.s, sc.i, sc.d, sc.bs, sc.ansi, sc.wide, sc.exec, sc.out, sc.stmts, sc.err = text, 0, d, bs, ansi, wide, false, out, 0, nil
	sc.pkAt = -1
	sc.resetStmt()
	quiet := false
	for sc.err == nil {
		t := sc.next()
		if t.kind == tEOF {
			break
		}
		k := kwNone
		if t.kind == tWord {
			k = keywordAt(sc.s, t.start, t.end)
		}
		if quiet && k == kwNone && !(t.kind == tPunct && (t.c == ';' || t.c == '(' || t.c == ')')) {
			sc.lastName, sc.prevKw = false, kwNone // all that token would do
			continue
		}
		sc.token(t, k)
		quiet = sc.quiet()
	}
	if sc.err != nil {
		return sc.err
	}
	sc.endStatement()
	if sc.stmts > 1 {
		out.Multi = true
	}
	return sc.err
}

// multibyteHazard reports whether text holds a byte that starts a
// two-byte character in GBK, GB18030, Big5, Shift JIS or CP932 followed by
// a backslash or a backtick: in those character sets the pair is one
// character, in UTF-8 and Latin-1 the second byte escapes or quotes.
func multibyteHazard(text []byte) bool {
	if ascii(text) {
		return false // no byte 0x81-0xfe
	}
	// Find each backslash and backtick (rare in most queries) rather than
	// test every byte.
	for _, b := range [2]byte{'\\', '`'} {
		for i := 1; i < len(text); {
			j := bytes.IndexByte(text[i:], b)
			if j < 0 {
				break
			}
			i += j
			if c := text[i-1]; c >= 0x81 && c <= 0xfe {
				return true
			}
			i++
		}
	}
	return false
}

// ascii reports whether every byte of text is below 0x80, eight at a time.
func ascii(text []byte) bool {
	var or uint64
	i := 0
	for ; len(text)-i >= 8; i += 8 {
		or |= le64(text[i:])
	}
	for ; i < len(text); i++ {
		or |= uint64(text[i])
	}
	return or&0x8080808080808080 == 0
}

func (sc *scanner) resetStmt() {
	sc.st = stmtState{}
	sc.depth, sc.deep, sc.nctes = 0, 0, 0
	sc.lv[0] = level{start: true, stmtStart: true, withOwner: -1}
	sc.prevKw, sc.lastName = kwNone, false
}

// endStatement records the verbs of the statement that ends at ';' or at
// the end of the text, and starts the next one.
func (sc *scanner) endStatement() {
	st := &sc.st
	if !st.any {
		sc.resetStmt()
		return
	}
	sc.stmts++
	out := sc.out
	main := sc.mainBuf[:st.mainN]
	inner := sc.innerBuf[:st.innerN]
	switch {
	case !st.verbDone:
		addVerb(out, "", "")
	case st.verbKw == kwLOAD && st.load != kwNone:
		v := [2][2]string{{"LOAD_DATA", "LOAD_DATA_LOCAL"}, {"LOAD_XML", "LOAD_XML_LOCAL"}}
		i, j := 0, 0
		if st.load == kwXML {
			i = 1
		}
		if st.loadLocal {
			j = 1
		}
		addVerb(out, v[i][j], "")
	case st.verbKw == kwCOPY && st.copyVerb != "":
		addVerb(out, st.copyVerb, "")
	case st.verbKw == kwSELECT && st.outfile:
		addVerb(out, "SELECT_OUTFILE", "")
		st.outfile = false
	case st.verbKw == kwEXPLAIN || st.verbKw == kwDESCRIBE || st.verbKw == kwDESC:
		if st.analyze && len(inner) > 0 {
			addVerb(out, inner, "EXPLAIN")
		} else {
			addVerb(out, main, inner)
		}
	default:
		addVerb(out, main, inner)
	}
	for i := 0; i < st.nExtras; i++ {
		addVerb(out, kwNames[st.extras[i]], "")
	}
	if st.outfile {
		addVerb(out, "SELECT_OUTFILE", "")
	}
	sc.resetStmt()
}

func (sc *scanner) addExtra(k kw) {
	st := &sc.st
	for i := 0; i < st.nExtras; i++ {
		if st.extras[i] == k {
			return
		}
	}
	if st.nExtras == len(st.extras) {
		sc.out.Overflow = true
		return
	}
	st.extras[st.nExtras] = k
	st.nExtras++
}

// quiet reports whether the scanner is in a state in which a token other
// than a keyword, ';', '(' or ')' changes nothing but lastName and prevKw:
// on a level that has seen a token, expects no name, is in no WITH clause
// and holds no EXPLAIN options, outside any statement phase and COPY's
// target. In it, run skips token for such tokens (the ordinary words,
// numbers, strings and operators of expressions); TestShortcuts and
// FuzzShortcuts check that skipping changes no result.
func (sc *scanner) quiet() bool {
	if sc.slow || sc.deep > 0 {
		return false
	}
	L := &sc.lv[sc.depth]
	st := &sc.st
	return st.any && !L.start && L.tm == tmNone && L.withPh == wNone && !L.explOpts &&
		(sc.depth != st.verbDepth || st.phase == phNone && (!st.copy || st.copyDone))
}

// token handles one token of the current statement; k is its keyword.
func (sc *scanner) token(t token, k kw) {
	prevName := sc.lastName
	prevKw := sc.prevKw
	sc.lastName, sc.prevKw = false, kwNone
	if t.kind == tPunct && t.c == ';' {
		sc.endStatement()
		return
	}
	st := &sc.st
	st.any = true
	if sc.deep > 0 {
		if t.kind == tPunct && t.c == '(' {
			sc.deep++
		} else if t.kind == tPunct && t.c == ')' {
			sc.deep--
		}
		return
	}
	L := &sc.lv[sc.depth]
	if L.start && L.stmtStart && !st.verbDone && t.kind != tWord && !(t.kind == tPunct && t.c == '(') {
		st.verbDone = true // no leading word: no verb
		st.verbDepth = sc.depth
	}
	switch t.kind {
	case tWord:
		sc.word(L, t, k, prevKw, prevName)
		if !sc.lastName {
			sc.prevKw = k
		}
	case tQuoted:
		sc.quoted(L, t)
	case tString:
		if L.withPh != wNone && L.withPh != wAfterBody {
			L.withPh = wNone
		}
		if L.tm == tmExpect {
			L.tm = tmNone
		}
	case tPunct:
		sc.punct(L, t, prevName)
	}
	L.start = false
}

func (sc *scanner) expect(L *level, listy bool, mods uint16) {
	L.tm, L.listy, L.mods = tmExpect, listy, mods
}

func (sc *scanner) word(L *level, t token, k kw, prevKw kw, prevName bool) {
	st := &sc.st
	if L.start {
		if L.stmtStart && !st.verbDone {
			sc.topVerb(L, t, k)
			return
		}
		if isStmtKeyword(k) && !((k == kwINSERT || k == kwREPLACE) && sc.peekPunct('(')) {
			if L.withOwner >= 0 {
				P := &sc.lv[L.withOwner]
				if P.withPh == wAfterBody {
					P.withPh = wNone
					sc.levelVerb(L, t, k, P.withSlot)
					return
				}
			}
			sc.levelVerb(L, t, k, slotNone)
			return
		}
		if L.likeOK && k == kwLIKE {
			sc.expect(L, false, 0)
			return
		}
	}
	if L.withPh != wNone && sc.withWord(L, t, k) {
		return
	}
	if L.explOpts {
		if k == kwANALYZE || k == kwANALYSE {
			n := sc.peek()
			nk := kwNone
			if n.kind == tWord {
				nk = keywordAt(sc.s, n.start, n.end)
			}
			if nk != kwFALSE && nk != kwOFF && !(n.kind == tWord && n.end-n.start == 1 && sc.s[n.start] == '0') {
				st.analyze = true
			}
		}
		return
	}
	if sc.depth == st.verbDepth {
		if st.phase != phNone && sc.phaseWord(L, t, k) {
			return
		}
		if st.copy && !st.copyDone && (k == kwFROM || k == kwTO) {
			sc.copyTarget(L)
			return
		}
	}
	switch L.tm {
	case tmExpect:
		if sc.expectWord(L, t, k, prevKw) {
			return
		}
	case tmAfter:
		if sc.afterWord(L, k) {
			return
		}
	}
	sc.general(L, k, prevKw, prevName)
}

// topVerb records the statement's first word as its verb.
func (sc *scanner) topVerb(L *level, t token, k kw) {
	st := &sc.st
	st.verbDone, st.verbKw, st.verbDepth = true, k, sc.depth
	w := sc.s[t.start:t.end]
	if len(w) > l7.MaxVerb {
		sc.err = ErrVerbTooLong
		return
	}
	st.mainN = upperCopy(sc.mainBuf[:], w)
	L.kind, L.vk = lvStmt, k
	sc.beginVerb(L, k, slotMain)
	sc.beginTop(L, k)
}

// levelVerb records k as the verb of the query on level L.
func (sc *scanner) levelVerb(L *level, t token, k kw, slot uint8) {
	st := &sc.st
	L.kind, L.vk, L.tm = lvStmt, k, tmNone
	switch slot {
	case slotMain:
		st.mainN = upperCopy(sc.mainBuf[:], sc.s[t.start:t.end])
		st.verbKw = k
	case slotInner:
		st.innerN = upperCopy(sc.innerBuf[:], sc.s[t.start:t.end])
	default:
		if isDML(k) {
			sc.addExtra(k)
		}
	}
	sc.beginVerb(L, k, slot)
}

func upperCopy(dst, w []byte) int {
	n := copy(dst, w)
	for i := 0; i < n; i++ {
		if c := dst[i]; 'a' <= c && c <= 'z' {
			dst[i] = c - ('a' - 'A')
		}
	}
	return n
}

// beginVerb sets up what follows a query verb on any level.
func (sc *scanner) beginVerb(L *level, k kw, slot uint8) {
	switch k {
	case kwINSERT, kwREPLACE:
		sc.expect(L, false, mDML|mInto)
	case kwUPDATE:
		sc.expect(L, true, mDML|mOnly)
	case kwDELETE:
		sc.expect(L, true, mDML|mFrom)
	case kwTABLE:
		sc.expect(L, false, mOnly)
	case kwWITH:
		L.withPh, L.withSlot, L.withRec = wName, slot, false
	}
}

// beginTop sets up what follows a statement's verb.
func (sc *scanner) beginTop(L *level, k kw) {
	st := &sc.st
	switch k {
	case kwTRUNCATE:
		sc.expect(L, true, mTable|mOnly|mIfExists)
	case kwLOCK:
		sc.expect(L, true, mTable|mTables|mOnly)
	case kwUSE, kwCALL, kwHANDLER:
		sc.expect(L, false, 0)
	case kwCREATE, kwDROP, kwALTER:
		st.phase = phObject
	case kwGRANT, kwREVOKE:
		st.onIntro, st.grant, st.noFrom = true, true, true
	case kwEXPLAIN, kwDESCRIBE, kwDESC:
		st.phase = phExplain
	case kwCOPY:
		sc.expect(L, false, 0)
		st.copy, st.noFrom = true, true
	case kwLOAD:
		st.phase = phLoad
	case kwPREPARE:
		st.phase, st.noFrom = phPrepare, true
	case kwSHOW:
		st.show, st.noFrom = true, true
	case kwFETCH, kwMOVE:
		st.noFrom = true
	}
}

// phaseWord handles a word at the statement's level while the statement is
// in a phase; it reports whether the word was consumed.
func (sc *scanner) phaseWord(L *level, t token, k kw) bool {
	st := &sc.st
	switch st.phase {
	case phObject:
		if isObjectType(k) {
			st.phase, st.obj = phNone, k
			sc.expect(L, st.verbKw == kwDROP, mIfExists|mOnly|mConc)
			if k == kwINDEX || k == kwTRIGGER {
				st.onIntro = true
			}
		}
		return true // OR REPLACE, TEMPORARY, UNIQUE, DEFINER = …
	case phExplain:
		if st.explainSkip {
			st.explainSkip = false
			return true
		}
		switch k {
		case kwANALYZE, kwANALYSE:
			st.analyze = true
			return true
		case kwVERBOSE, kwEXTENDED, kwPARTITIONS:
			return true
		case kwFORMAT:
			st.explainSkip = true
			return true
		case kwFOR: // EXPLAIN FOR CONNECTION n
			st.phase = phNone
			return true
		}
		st.phase = phNone
		if isExplainable(k) {
			sc.levelVerb(L, t, k, slotInner)
			if k == kwCREATE {
				st.phase = phObject
			}
			return true
		}
		sc.expect(L, false, 0) // EXPLAIN t, DESCRIBE t
		return false
	case phLoad:
		switch k {
		case kwDATA, kwXML:
			st.load = k
		case kwLOCAL:
			st.loadLocal = true
		case kwINFILE:
			st.phase = phNone
		default:
			if st.load == kwNone { // LOAD INDEX INTO CACHE …
				st.phase = phNone
				return false
			}
		}
		return true
	case phPrepare:
		if k == kwAS {
			st.phase, st.noFrom = phPrepareInner, false
		}
		return true
	case phPrepareInner:
		st.phase = phNone
		w := sc.s[t.start:t.end]
		if len(w) > l7.MaxVerb {
			sc.err = ErrVerbTooLong
			return true
		}
		st.innerN = upperCopy(sc.innerBuf[:], w)
		L.kind, L.vk = lvStmt, k
		sc.beginVerb(L, k, slotInner)
		return true
	}
	return false
}

// copyTarget decides the verb of COPY at its FROM or TO.
func (sc *scanner) copyTarget(L *level) {
	st := &sc.st
	st.copyDone = true
	L.tm = tmNone
	n := sc.peek()
	switch {
	case n.kind == tWord && keywordAt(sc.s, n.start, n.end) == kwPROGRAM:
		st.copyVerb = "COPY_PROGRAM"
	case n.kind == tString:
		st.copyVerb = "COPY_FILE"
	default:
		st.copyVerb = "COPY"
	}
}

// withWord handles a word inside a WITH clause; it reports whether the word
// was consumed, else the clause was no CTE list (WITH ROLLUP, WITH TIME
// ZONE…) and the word is handled as usual.
func (sc *scanner) withWord(L *level, t token, k kw) bool {
	switch L.withPh {
	case wName:
		if k == kwRECURSIVE && !L.withRec {
			L.withRec = true
			return true
		}
		if isStmtKeyword(k) {
			L.withPh = wNone
			return false
		}
		sc.cteName(L, t)
		return true
	case wAfterName:
		if k == kwAS {
			L.withPh = wAs
			return true
		}
	case wAs:
		if k == kwNOT || k == kwMATERIALIZED {
			return true
		}
	case wAfterBody:
		if isStmtKeyword(k) && k != kwWITH {
			L.withPh = wNone
			sc.levelVerb(L, t, k, L.withSlot)
			return true
		}
		switch k {
		case kwNone, kwBY, kwSET, kwTO, kwUSING: // SEARCH … BY … SET …, CYCLE … TO … USING …
			return true
		}
	}
	L.withPh = wNone
	return false
}

// cteName records the name of a CTE: in scope at once when RECURSIVE,
// else after its body.
func (sc *scanner) cteName(L *level, t token) {
	L.withPh = wAfterName
	L.ctePending = 0
	n, parts, ok := sc.readName(t)
	if !ok || parts != 1 || n > maxCTEName || sc.nctes == MaxCTEs {
		return // references to it are reported as tables
	}
	c := &sc.ctes[sc.nctes]
	c.n = copy(c.name[:], sc.out.nameTemp[:n])
	c.depth, c.active = sc.depth, L.withRec
	sc.nctes++
	L.ctePending = int8(sc.nctes)
}

func (sc *scanner) quoted(L *level, t token) {
	st := &sc.st
	switch L.withPh {
	case wNone:
	case wName:
		sc.cteName(L, t)
		return
	default:
		L.withPh = wNone
	}
	if sc.depth == st.verbDepth && st.phase == phExplain {
		st.phase = phNone
		sc.expect(L, false, 0)
	}
	if L.tm == tmExpect {
		sc.takeName(L, t)
	}
}

// expectWord handles a word where a name is expected; it reports whether
// the word was consumed (a modifier or the name), else the name list ended.
func (sc *scanner) expectWord(L *level, t token, k kw, prevKw kw) bool {
	st := &sc.st
	my := sc.d == MySQL
	mods := L.mods
	switch k {
	case kwLOW_PRIORITY, kwDELAYED, kwHIGH_PRIORITY, kwIGNORE, kwQUICK:
		if mods&mDML != 0 && my {
			return true
		}
	case kwINTO:
		if mods&mInto != 0 {
			return true
		}
	case kwONLY:
		if mods&mOnly != 0 && !my {
			return true
		}
	case kwLATERAL:
		if mods&mLateral != 0 && (!my || sc.peekPunct('(')) {
			return true
		}
	case kwIF:
		if mods&mIfExists != 0 && sc.skipIfExists() {
			return true
		}
	case kwTABLE:
		if mods&(mTable|mGrant) != 0 {
			return true
		}
	case kwTABLES:
		if mods&mTables != 0 && my || mods&mGrant != 0 {
			return true
		}
	case kwCONCURRENTLY:
		if mods&mConc != 0 && !my {
			return true
		}
	case kwTO, kwAS:
		if mods&mRename != 0 {
			return true
		}
	case kwCOLUMN, kwINDEX, kwKEY, kwCONSTRAINT, kwPARTITION:
		if mods&mRename != 0 {
			L.tm = tmNone
			return true
		}
	case kwALL, kwFUNCTION, kwPROCEDURE, kwSEQUENCE, kwSCHEMA, kwDATABASE:
		if mods&mGrant != 0 {
			return true
		}
	case kwFROM:
		if mods&mFrom != 0 {
			sc.expect(L, true, mFromList)
			return true
		}
	case kwON:
		if st.onIntro && sc.depth == st.verbDepth {
			L.tm = tmNone
			return false
		}
	case kwDUAL:
		if my {
			L.tm = tmAfter
			return true
		}
	case kwOUTFILE, kwDUMPFILE:
		if my && prevKw == kwINTO {
			st.outfile = true
			L.tm = tmNone
			return true
		}
	case kwSELECT, kwWITH, kwVALUES, kwVALUE, kwWHERE, kwSET:
		L.tm = tmNone
		return false
	}
	if mods&mOJ != 0 && t.end-t.start == 2 && (sc.s[t.start]|0x20) == 'o' && (sc.s[t.start+1]|0x20) == 'j' {
		L.mods &^= mOJ
		return true
	}
	if t.digit(sc.s) && (!my || allDigits(sc.s[t.start:t.end])) {
		L.tm = tmNone // a number
		return true
	}
	sc.takeName(L, t)
	return true
}

func allDigits(w []byte) bool {
	for _, c := range w {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// skipIfExists consumes "[NOT] EXISTS" after IF and reports whether it was
// there (in Postgres IF can be a table's name).
func (sc *scanner) skipIfExists() bool {
	i, exec := sc.i, sc.exec
	t := sc.next()
	k := kwNone
	if t.kind == tWord {
		k = keywordAt(sc.s, t.start, t.end)
	}
	if k == kwNOT {
		t = sc.next()
		k = kwNone
		if t.kind == tWord {
			k = keywordAt(sc.s, t.start, t.end)
		}
	}
	if k != kwEXISTS {
		sc.i, sc.exec = i, exec
		return false
	}
	return true
}

// afterWord handles a word after a name; it reports whether the word was
// consumed. Unconsumed words go to general.
func (sc *scanner) afterWord(L *level, k kw) bool {
	if L.listy {
		switch k {
		case kwJOIN, kwSTRAIGHT_JOIN:
			sc.expect(L, true, mFromList)
			return true
		case kwUSING:
			if (L.vk == kwDELETE || L.vk == kwMERGE) && !sc.peekPunct('(') {
				sc.expect(L, true, mFromList)
			}
			return true // USING (columns) of a join
		case kwFOR:
			switch sc.peekKw() {
			case kwUPDATE, kwSHARE, kwNO, kwKEY: // a locking clause
				L.tm = tmNone
			case kwJOIN: // index hint: USE INDEX FOR JOIN (…)
				sc.next()
			case kwORDER, kwGROUP: // USE INDEX FOR ORDER BY (…)
				sc.next()
				if sc.peekKw() == kwBY {
					sc.next()
				}
			}
			return true
		case kwWITH:
			if sc.peekKw() == kwORDINALITY {
				sc.next()
				return true
			}
			L.tm = tmNone
			return false
		case kwIN:
			if sc.st.verbKw == kwLOCK { // LOCK t IN … MODE
				L.tm = tmNone
				return true
			}
		}
	} else if k == kwWITH {
		L.tm = tmNone
		return false
	}
	if endsTableList(k) {
		L.tm = tmNone
	}
	return false
}

// general handles the words that introduce names anywhere in a statement.
func (sc *scanner) general(L *level, k kw, prevKw kw, prevName bool) {
	st := &sc.st
	top := sc.depth == st.verbDepth
	switch k {
	case kwSELECT:
		L.kind = lvStmt
		if L.vk == kwNone {
			L.vk = kwSELECT
		}
	case kwWITH:
		if n := sc.peek(); n.kind == tWord || n.kind == tQuoted {
			L.withPh, L.withSlot, L.withRec = wName, slotNone, false
		}
	case kwFROM:
		if top && st.show {
			sc.expect(L, false, 0)
		} else if L.kind == lvStmt && prevKw != kwDISTINCT && !(top && st.noFrom) {
			sc.expect(L, true, mFromList)
		}
	case kwTABLE:
		if st.show && prevKw != kwCREATE {
			return // SHOW TABLE STATUS
		}
		listy := false
		if top {
			switch st.verbKw {
			case kwNone, kwRENAME, kwANALYZE, kwLOCK, kwTRUNCATE, kwFLUSH:
				listy = true // OPTIMIZE TABLE a, b; RENAME TABLE a TO b, c TO d
			}
		}
		sc.expect(L, listy, mOnly|mIfExists)
	case kwTABLES:
		if top && (st.verbKw == kwFLUSH || st.verbKw == kwLOCK) {
			sc.expect(L, true, 0)
		}
	case kwINTO:
		sc.expect(L, false, mTable)
	case kwREFERENCES:
		sc.expect(L, false, 0)
	case kwON:
		if st.onIntro && top {
			st.onIntro = false
			if st.grant {
				sc.expect(L, true, mGrant)
			} else {
				sc.expect(L, false, mOnly)
			}
		}
	case kwTO:
		if top && st.verbKw == kwRENAME {
			sc.expect(L, true, 0)
		}
	case kwRENAME:
		if top && st.verbKw == kwALTER {
			sc.expect(L, false, mRename)
		}
	case kwLIKE:
		if prevName && st.verbKw == kwCREATE && st.obj == kwTABLE {
			sc.expect(L, false, 0)
		}
	case kwIN:
		if top && st.show {
			sc.expect(L, false, 0)
		}
	case kwUSING:
		if (L.vk == kwDELETE || L.vk == kwMERGE) && !sc.peekPunct('(') {
			sc.expect(L, true, mFromList)
		}
	}
}

func (sc *scanner) punct(L *level, t token, prevName bool) {
	st := &sc.st
	switch t.c {
	case '(':
		if sc.depth >= MaxDepth {
			sc.deep = 1
			sc.out.Overflow = true
			return
		}
		child := level{start: true, withOwner: -1}
		child.stmtStart = L.start && L.stmtStart && !st.verbDone
		switch L.withPh {
		case wAs:
			child.cteBody = true
		case wAfterBody:
			child.withOwner = int8(sc.depth)
		case wName:
			L.withPh = wNone // WITH (storage options)
		}
		if L.start && L.withOwner >= 0 {
			child.withOwner = L.withOwner // WITH … ((SELECT …))
		}
		if L.tm == tmExpect {
			child.fromExpect, child.kind = true, lvRefs
			sc.expect(&child, true, mFromList)
		}
		if sc.depth == st.verbDepth && st.phase == phExplain {
			child.explOpts = true
		}
		if prevName && st.verbKw == kwCREATE && st.obj == kwTABLE {
			child.likeOK = true
		}
		sc.depth++
		sc.lv[sc.depth] = child
	case ')':
		if sc.depth == 0 {
			return
		}
		child := &sc.lv[sc.depth]
		fromExpect, body := child.fromExpect, child.cteBody
		for sc.nctes > 0 && sc.ctes[sc.nctes-1].depth >= sc.depth {
			sc.nctes--
		}
		sc.depth--
		P := &sc.lv[sc.depth]
		if fromExpect && P.tm == tmExpect {
			P.tm = tmAfter // after a derived table: its alias, a comma, a JOIN
		}
		if body {
			if P.ctePending > 0 {
				sc.ctes[P.ctePending-1].active = true
				P.ctePending = 0
			}
			P.withPh = wAfterBody
		}
	case ',':
		switch L.withPh {
		case wAfterBody:
			L.withPh = wName
			return
		case wNone:
		default:
			L.withPh = wNone
		}
		switch L.tm {
		case tmAfter:
			if L.listy {
				L.tm = tmExpect
				L.mods &= mOnly | mLateral | mGrant
			} else {
				L.tm = tmNone
			}
		case tmExpect:
			L.tm = tmNone
		}
	case '*':
		if L.tm == tmExpect && L.mods&mGrant != 0 {
			sc.takeName(L, t) // GRANT … ON *.*
		}
	case '.':
	case '{':
		if L.tm == tmExpect && sc.d == MySQL {
			L.mods |= mOJ // FROM { OJ a LEFT JOIN b ON … }
		}
	case '}':
	default:
		if L.withPh != wNone && L.withPh != wAfterBody {
			L.withPh = wNone
		}
		if L.tm == tmExpect {
			L.tm = tmNone // INTO @var, a literal where a name could stand
		}
	}
}

// takeName reads the (qualified) name that starts with t and records it.
func (sc *scanner) takeName(L *level, t token) {
	if n, parts, ok := sc.readName(t); ok && n > 0 { // an empty name ("") is a syntax error
		sc.addTable(sc.out.nameTemp[:n], parts)
	}
	L.tm = tmAfter
	sc.lastName = true
}

// readName reads a name of one or more parts joined by '.', starting with
// t, normalised into out.nameTemp; it returns its length and parts, or
// ok == false (and sets Overflow) when it is longer than MaxName.
func (sc *scanner) readName(t token) (n, parts int, ok bool) {
	buf := sc.out.nameTemp[:]
	for {
		if parts > 0 {
			if n < len(buf) {
				buf[n] = '.'
			}
			n++
		}
		n = sc.appendPart(buf, n, t)
		parts++
		if d := sc.peek(); d.kind != tPunct || d.c != '.' {
			break
		}
		i, exec := sc.i, sc.exec
		sc.next() // the '.', as peeked
		p := sc.peek()
		if p.kind != tWord && p.kind != tQuoted && !(p.kind == tPunct && p.c == '*') {
			sc.i, sc.exec = i, exec
			break
		}
		sc.next()
		t = p
	}
	if n > MaxName {
		sc.out.Overflow = true
		return 0, parts, false
	}
	return n, parts, true
}

// pgMaxIdent is Postgres's NAMEDATALEN-1: longer names are clipped to it.
const pgMaxIdent = 63

// appendPart appends one normalised part of a name to buf at n (bytes past
// buf's end are counted, not written) and returns the new length.
func (sc *scanner) appendPart(buf []byte, n int, t token) int {
	start := n
	pg := sc.d == Postgres
	w := sc.s[t.start:t.end]
	switch t.kind {
	case tWord:
		if n+len(w) <= len(buf) {
			copy(buf[n:], w)
			if pg {
				lowerASCII(buf[n : n+len(w)])
			}
			n += len(w)
			break
		}
		for _, c := range w {
			if pg && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if n < len(buf) {
				buf[n] = c
			}
			n++
		}
	case tQuoted:
		for i := 0; i < len(w); i++ {
			c := w[i]
			if c == t.c && i+1 < len(w) && w[i+1] == t.c {
				i++
			}
			if n < len(buf) {
				buf[n] = c
			}
			n++
		}
	default:
		if n < len(buf) {
			buf[n] = '*'
		}
		n++
	}
	if pg && n-start > pgMaxIdent {
		cut := pgMaxIdent
		if start+cut < len(buf) {
			for cut > 0 && buf[start+cut]&0xC0 == 0x80 {
				cut-- // do not split a UTF-8 sequence, as pg_mbcliplen
			}
		}
		n = start + cut
	}
	return n
}

// lowerASCII lower-cases the ASCII letters of b in place, eight bytes at
// a time where it can; other bytes stay as they are.
func lowerASCII(b []byte) {
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		y := x &^ highs8 // no carry across bytes below
		upper := (y + (0x80-'A')*ones8) &^ (y + (0x7f-'Z')*ones8) &^ x & highs8
		binary.LittleEndian.PutUint64(b[i:], x|upper>>2)
	}
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}

// addTable records name once, unless it names a CTE in scope.
func (sc *scanner) addTable(name []byte, parts int) {
	if parts == 1 {
		for i := 0; i < sc.nctes; i++ {
			c := &sc.ctes[i]
			if c.active && bytes.Equal(c.name[:c.n], name) {
				return
			}
		}
	}
	out := sc.out
	for i := 0; i < out.N; i++ {
		if bytes.Equal(out.Tables[i], name) {
			return
		}
	}
	if out.N == MaxTables {
		out.Overflow = true
		return
	}
	n := copy(out.nameBuf[out.N][:], name)
	out.Tables[out.N] = out.nameBuf[out.N][:n:n]
	out.N++
}

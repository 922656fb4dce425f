package postgres

import (
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/sqlverb"
)

// infoTables is the room one remembered statement has for its table
// names; a statement whose names do not fit is remembered with Overflow,
// which the engine reads as "any table".
const infoTables = 384

type infoState uint8

const (
	infoUnknown infoState = iota // not known: judged as EXECUTE
	infoEmpty                    // holds no SQL statement: nothing to judge
	infoKnown
)

// info is what the policy judges of a prepared statement, copied into
// fixed storage: verb, sub-verb and tables.
type info struct {
	state    infoState
	overflow bool
	vlen     uint8
	slen     uint8
	ntab     uint8
	tabEnd   [l7.MaxResources]uint16 // end of each table name in tabs
	verb     [l7.MaxVerb]byte
	sub      [l7.MaxVerb]byte
	tabs     [infoTables]byte
}

// set copies the verb, sub-verb and tables of s.
func (in *info) set(s *sqlverb.Statement) {
	in.setVerb(s.Verb, s.Sub, s)
}

// setPrepared copies a SQL PREPARE's statement: its verb is s.Sub.
func (in *info) setPrepared(s *sqlverb.Statement) {
	if len(s.Sub) == 0 {
		in.state = infoUnknown
		return
	}
	in.setVerb(s.Sub, nil, s)
}

func (in *info) setVerb(verb, sub []byte, s *sqlverb.Statement) {
	in.state = infoKnown
	in.vlen = uint8(copy(in.verb[:], verb))
	in.slen = uint8(copy(in.sub[:], sub))
	in.overflow = s.Overflow
	in.ntab = 0
	end := 0
	for _, t := range s.TableList() {
		if int(in.ntab) == len(in.tabEnd) || end+len(t) > len(in.tabs) {
			in.overflow = true
			break
		}
		end += copy(in.tabs[end:], t)
		in.tabEnd[in.ntab] = uint16(end)
		in.ntab++
	}
}

// copyFrom copies src's used part.
func (in *info) copyFrom(src *info) {
	in.state, in.overflow = src.state, src.overflow
	in.vlen, in.slen, in.ntab = src.vlen, src.slen, src.ntab
	copy(in.verb[:in.vlen], src.verb[:src.vlen])
	copy(in.sub[:in.slen], src.sub[:src.slen])
	in.tabEnd = src.tabEnd
	if in.ntab > 0 {
		end := src.tabEnd[in.ntab-1]
		copy(in.tabs[:end], src.tabs[:end])
	}
}

// fill puts the statement into f as views of in.
func (in *info) fill(f *l7.Frame) {
	f.Verb = view(in.verb[:in.vlen])
	f.Sub = view(in.sub[:in.slen])
	start := uint16(0)
	for i := 0; i < int(in.ntab); i++ {
		f.AddResource(view(in.tabs[start:in.tabEnd[i]]))
		start = in.tabEnd[i]
	}
	if in.overflow {
		f.Overflow = true
	}
}

// entry is one named statement or portal.
type entry struct {
	live bool
	nlen uint8
	hash uint32
	used uint64 // last use, for eviction
	name [MaxName]byte
	info info
}

// chunk is how many entries a table allocates at once.
const chunk = 32

// table maps names (cut to MaxName) to entries. It allocates its storage a
// chunk at a time as names are added, never more than its limit, and
// reuses it: lookups and updates of known names allocate nothing. When it
// is full the least recently used entry gives way.
type table struct {
	chunks [][]entry
	hi     int    // entries [0, hi) have been used
	clock  uint64 // use counter
	// unnamed is false when no live entry has the empty name (the unnamed
	// statement or portal), so that finding it, which every Query and
	// Bind does, need not walk the table. True may be stale (the entry
	// was evicted): find then walks.
	unnamed bool
}

func nameHash(name []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range name {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

func (t *table) at(i int) *entry { return &t.chunks[i/chunk][i%chunk] }

// find returns the live entry for name, or nil.
func (t *table) find(name []byte) *entry {
	if len(name) == 0 && !t.unnamed {
		return nil
	}
	h := nameHash(name)
	for i := 0; i < t.hi; i++ {
		e := t.at(i)
		if e.live && e.hash == h && int(e.nlen) == len(name) && string(e.name[:e.nlen]) == string(name) {
			t.clock++
			e.used = t.clock
			return e
		}
	}
	return nil
}

// put returns the entry for name, taking a free one (or the least recently
// used one when max entries are live) when name is new. Its info is
// whatever it was: the caller sets it.
func (t *table) put(name []byte, max int) *entry {
	if e := t.find(name); e != nil {
		return e
	}
	var free, lru *entry
	for i := 0; i < t.hi && free == nil; i++ {
		e := t.at(i)
		switch {
		case !e.live:
			free = e
		case lru == nil || e.used < lru.used:
			lru = e
		}
	}
	switch {
	case free != nil:
	case t.hi < max:
		if t.hi == len(t.chunks)*chunk {
			t.chunks = append(t.chunks, make([]entry, chunk))
		}
		free = t.at(t.hi)
		t.hi++
	default:
		free = lru
	}
	t.clock++
	free.live = true
	free.used = t.clock
	free.hash = nameHash(name)
	free.nlen = uint8(copy(free.name[:], name))
	if free.nlen == 0 {
		t.unnamed = true
	}
	free.info.state = infoUnknown
	return free
}

func (t *table) remove(name []byte) {
	// As find would, without the call when there is no unnamed entry to
	// drop (every Query drops it): this much inlines.
	if len(name) > 0 || t.unnamed {
		t.removeFound(name)
	}
}

func (t *table) removeFound(name []byte) {
	if e := t.find(name); e != nil {
		e.live = false
		if e.nlen == 0 {
			t.unnamed = false // put keeps one entry per name
		}
	}
}

func (t *table) clear() {
	for i := 0; i < t.hi; i++ {
		t.at(i).live = false
	}
	t.hi = 0
	t.unnamed = false
}

// sqlOp is what a simple Query does to the named prepared statements and
// portals, as far as the parser follows it.
type sqlOp uint8

const (
	opNone          sqlOp = iota
	opPrepare             // PREPARE name AS …: a new statement
	opDeallocate          // DEALLOCATE [PREPARE] name
	opDeallocateAll       // DEALLOCATE [PREPARE] ALL
	opDiscardAll          // DISCARD ALL: statements and portals
	opForgetAll           // any other text that names these verbs: forget all (fail closed)
)

// statementOp finds what the query text, scanned into s, does to named
// statements. The statement name it acts on is written into name (cut to
// MaxName bytes) and returned as a view of it.
func statementOp(text []byte, s *sqlverb.Statement, name *[MaxName]byte) (sqlOp, []byte) {
	managed := false
	for _, v := range s.Verbs[:s.NVerbs] {
		switch string(v) {
		case "PREPARE", "DEALLOCATE", "DISCARD":
			managed = true
		}
	}
	if !managed {
		return opNone, nil
	}
	return managedOp(text, s, name)
}

// managedOp is statementOp for a text that names PREPARE, DEALLOCATE or
// DISCARD; apart so that statementOp stays small for the other texts.
func managedOp(text []byte, s *sqlverb.Statement, name *[MaxName]byte) (sqlOp, []byte) {
	if s.Multi || s.NVerbs != 1 || s.Overflow {
		return opForgetAll, nil
	}
	w := words{text: text}
	first, ok := w.next(name)
	if !ok {
		return opForgetAll, nil
	}
	switch upper(first) {
	case "PREPARE":
		if n, ok := w.next(name); ok {
			return opPrepare, n
		}
	case "DEALLOCATE":
		n, ok := w.next(name)
		if ok && !w.quoted && upper(n) == "PREPARE" {
			n, ok = w.next(name)
		}
		switch {
		case !ok:
		case !w.quoted && upper(n) == "ALL":
			return opDeallocateAll, nil
		default:
			return opDeallocate, n
		}
	case "DISCARD":
		n, ok := w.next(name)
		if ok && !w.quoted && upper(n) == "ALL" {
			return opDiscardAll, nil
		}
		if ok && !w.quoted {
			return opNone, nil // PLANS, SEQUENCES, TEMP: no statements
		}
	}
	return opForgetAll, nil
}

// upper returns the upper-case form of a short keyword candidate, or ""
// for anything longer than the keywords compared.
func upper(b []byte) string {
	var buf [10]byte
	if len(b) > len(buf) {
		return ""
	}
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	return string(buf[:len(b)])
}

// words reads the leading words of a statement, the way the server's
// lexer reads identifiers: blanks and comments (-- and nested /* */)
// between them, unquoted words folded to lower case, "quoted" ones with
// "" undone. It stops at anything else (punctuation, strings).
type words struct {
	text   []byte
	i      int
	quoted bool // the last word was quoted
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || ('0' <= c && c <= '9') || c == '$' }

// skip moves past blanks and comments; false on an unterminated comment.
func (w *words) skip() bool {
	t := w.text
	for w.i < len(t) {
		c := t[w.i]
		switch {
		case isBlank(c):
			w.i++
		case c == '-' && w.i+1 < len(t) && t[w.i+1] == '-':
			for w.i < len(t) && t[w.i] != '\n' && t[w.i] != '\r' {
				w.i++
			}
		case c == '/' && w.i+1 < len(t) && t[w.i+1] == '*':
			depth := 0
			for {
				switch {
				case w.i+1 >= len(t):
					return false
				case t[w.i] == '/' && t[w.i+1] == '*':
					depth++
					w.i += 2
				case t[w.i] == '*' && t[w.i+1] == '/':
					depth--
					w.i += 2
				default:
					w.i++
				}
				if depth == 0 {
					break
				}
			}
		default:
			return true
		}
	}
	return true
}

// next reads the next word into buf (cut to its size) and returns it; ok
// is false when no word follows.
func (w *words) next(buf *[MaxName]byte) ([]byte, bool) {
	if !w.skip() || w.i >= len(w.text) {
		return nil, false
	}
	t := w.text
	n := 0
	switch c := t[w.i]; {
	case c == '"':
		w.quoted = true
		w.i++
		for {
			if w.i >= len(t) {
				return nil, false
			}
			c := t[w.i]
			w.i++
			if c == '"' {
				if w.i >= len(t) || t[w.i] != '"' {
					break
				}
				w.i++
			}
			if n < len(buf) {
				buf[n] = c
				n++
			}
		}
		if n == 0 {
			return nil, false // a zero-length quoted name is an error
		}
	case isIdentStart(c):
		w.quoted = false
		for w.i < len(t) && isIdent(t[w.i]) {
			c := t[w.i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if n < len(buf) {
				buf[n] = c
				n++
			}
			w.i++
		}
	default:
		return nil, false
	}
	return buf[:n], true
}

package mysql

import "github.com/bulkhead-io/bulkhead/protocols/l7"

// Prepared statements: what COM_STMT_PREPARE's statement does, kept per
// statement id so that COM_STMT_EXECUTE can be judged on it.
const (
	// MaxStatements bounds the prepared statements a connection keeps; past
	// it the least recently used is forgotten (its executions are then
	// framed as EXECUTE with Overflow).
	MaxStatements = 256
	// stmtBytes bounds the verb, sub, database and tables kept for one
	// statement; what does not fit sets the statement's Overflow.
	stmtBytes = 256
	// lastStatement is MariaDB's statement id for "the statement prepared
	// last" (COM_STMT_EXECUTE right after COM_STMT_PREPARE, unanswered).
	lastStatement = 0xffffffff
)

const (
	stmtFree uint8 = iota
	stmtPending
	stmtBound
)

type stmtEntry struct {
	id       uint32
	used     uint64
	state    uint8
	overflow bool
	nVerb    uint8
	nSub     uint8
	nDB      uint8
	dbKnown  bool
	nTab     uint8
	tabLen   [l7.MaxResources]uint8
	buf      [stmtBytes]byte
}

// stmtTable is allocated with the first COM_STMT_PREPARE of a connection.
type stmtTable struct {
	e     [MaxStatements]stmtEntry
	clock uint64
	last  int // the entry allocated last, -1 none
}

func newStmtTable() *stmtTable { return &stmtTable{last: -1} }

// alloc takes a free entry, else the least recently used bound one; -1
// when every entry waits for its COM_STMT_PREPARE_OK.
func (t *stmtTable) alloc() int {
	victim := -1
	for i := range t.e {
		e := &t.e[i]
		if e.state == stmtFree {
			victim = i
			break
		}
		if e.state == stmtBound && (victim < 0 || e.used < t.e[victim].used) {
			victim = i
		}
	}
	if victim < 0 {
		return -1
	}
	t.clock++
	t.e[victim] = stmtEntry{state: stmtPending, used: t.clock}
	t.last = victim
	return victim
}

// put stores a statement's verb, sub, database and tables into entry i.
func (t *stmtTable) put(i int, f *l7.Frame) {
	e := &t.e[i]
	n := 0
	add := func(b []byte) (uint8, bool) {
		if len(b) > 255 || n+len(b) > len(e.buf) {
			return 0, false
		}
		n += copy(e.buf[n:], b)
		return uint8(len(b)), true
	}
	var ok bool
	if e.nVerb, ok = add(f.Verb); !ok {
		e.nVerb, e.overflow = 0, true
	}
	if e.nSub, ok = add(f.Sub); !ok {
		e.nSub, e.overflow = 0, true
	}
	e.dbKnown = f.Aux != nil
	if e.nDB, ok = add(f.Aux); !ok {
		e.nDB, e.dbKnown, e.overflow = 0, false, true
	}
	f.Resources(func(r []byte) bool {
		l, ok := add(r)
		if !ok {
			e.overflow = true
			return false
		}
		e.tabLen[e.nTab] = l
		e.nTab++
		return true
	})
	if f.Overflow {
		e.overflow = true
	}
}

// bind gives pending entry i its statement id; an older entry with the
// same id is forgotten.
func (t *stmtTable) bind(i int, id uint32) {
	if i < 0 || t.e[i].state != stmtPending {
		return
	}
	if j := t.find(id); j >= 0 {
		t.e[j].state = stmtFree
	}
	t.e[i].id, t.e[i].state = id, stmtBound
}

// find returns the entry of a bound statement id, -1 when unknown.
func (t *stmtTable) find(id uint32) int {
	if id == lastStatement {
		if t.last >= 0 && t.e[t.last].state != stmtFree {
			return t.last
		}
		return -1
	}
	for i := range t.e {
		if t.e[i].state == stmtBound && t.e[i].id == id {
			return i
		}
	}
	return -1
}

func (t *stmtTable) free(i int) {
	if i >= 0 {
		t.e[i].state = stmtFree
	}
}

// reset forgets every statement (COM_CHANGE_USER, COM_RESET_CONNECTION).
func (t *stmtTable) reset() {
	for i := range t.e {
		if t.e[i].state == stmtBound {
			t.e[i].state = stmtFree
		}
	}
}

// fill puts entry i's statement into f: verb, sub, tables, and its
// database as Aux. The views point into the table.
func (t *stmtTable) fill(i int, f *l7.Frame) {
	e := &t.e[i]
	t.clock++
	e.used = t.clock
	n := 0
	take := func(l uint8) []byte {
		b := e.buf[n : n+int(l) : n+int(l)]
		n += int(l)
		return b
	}
	f.Verb = take(e.nVerb)
	f.Sub = take(e.nSub)
	if db := take(e.nDB); e.dbKnown {
		f.Aux = db
	}
	for k := 0; k < int(e.nTab); k++ {
		f.AddResource(take(e.tabLen[k]))
	}
	if e.overflow {
		f.Overflow = true
	}
}

package sqlverb

import (
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Dialect selects the lexical rules of one SQL server family.
type Dialect uint8

const (
	// MySQL covers MySQL and MariaDB.
	MySQL Dialect = 1
	// Postgres covers PostgreSQL.
	Postgres Dialect = 2
)

func (d Dialect) String() string {
	switch d {
	case MySQL:
		return "mysql"
	case Postgres:
		return "postgres"
	}
	return "dialect?"
}

// Limits of a Statement.
const (
	// MaxTables bounds the distinct names a Statement holds; more set
	// Overflow.
	MaxTables = l7.MaxResources
	// MaxName bounds one normalised (possibly qualified) name in bytes;
	// a longer one is dropped and sets Overflow. MySQL names are at most 64
	// characters of up to 3 bytes per part, Postgres parts 63 bytes, so no
	// valid two-part name comes near it.
	MaxName = 512
	// MaxDepth bounds how deep parentheses nest while Scan still tracks the
	// clause each level is in; deeper text is still lexed, and sets
	// Overflow.
	MaxDepth = 64
	// MaxVerbs bounds the distinct verbs of a multi-statement text; more
	// set Overflow.
	MaxVerbs = 8
	// MaxSub bounds Statement.Sub in bytes.
	MaxSub = l7.MaxVerb
	// MaxCTEs bounds the common table expression names tracked at once;
	// past it, references to further CTEs are reported as tables (fail
	// closed).
	MaxCTEs = 16
)

// VerbMulti is the verb of a text that performs more than one kind of
// statement.
const VerbMulti = "MULTI"

// Errors returned by Scan. They wrap the l7 sentinels and are built once,
// so returning one allocates nothing.
var (
	// ErrDialect: the Dialect is neither MySQL nor Postgres.
	ErrDialect = fmt.Errorf("sqlverb: unknown dialect: %w", l7.ErrMalformed)
	// ErrVerbTooLong: a statement's first word is longer than l7.MaxVerb.
	ErrVerbTooLong = fmt.Errorf("sqlverb: verb longer than %d bytes: %w", l7.MaxVerb, l7.ErrTooLong)
)

// Statement is what Scan found in a query text. Its slices point into its
// own scratch space and stay valid until the next Scan into it. It is
// large (about 10 KiB): keep one and reuse it.
type Statement struct {
	// Verb is the upper-case verb: SELECT, COPY_PROGRAM, MULTI… Empty when
	// the text holds no statement.
	Verb []byte
	// Sub qualifies Verb: the explained statement's verb for EXPLAIN,
	// "EXPLAIN" for EXPLAIN ANALYZE, the prepared statement's verb for
	// Postgres PREPARE … AS, the verbs joined by ',' for MULTI. Often empty.
	Sub []byte
	// Tables are the normalised names the text acts on, Tables[:N].
	Tables [MaxTables][]byte
	N      int
	// Overflow: the table list (or the verb list) is incomplete.
	Overflow bool
	// Multi: the text holds more than one statement.
	Multi bool
	// Verbs are the distinct verbs of the text's statements, Verbs[:NVerbs],
	// in order of first appearance (one entry unless Verb is MULTI).
	Verbs  [MaxVerbs][]byte
	NVerbs int

	// scratch
	verbBuf  [MaxVerbs][l7.MaxVerb]byte
	subs     [MaxVerbs][]byte // Sub of each entry of Verbs
	subBuf   [MaxVerbs][l7.MaxVerb]byte
	joined   [MaxSub]byte
	multi    [len(VerbMulti)]byte
	nameBuf  [MaxTables][MaxName]byte
	nameTemp [MaxName + 2*pgMaxIdent]byte
	sc       scanner
}

// TableList returns s.Tables[:s.N].
func (s *Statement) TableList() [][]byte { return s.Tables[:s.N] }

// Fill copies Verb and Sub into f and adds every table as a resource (with
// f.AddResource); it sets f.Overflow when s.Overflow. The views point into
// s. It does not reset f.
func (s *Statement) Fill(f *l7.Frame) {
	f.Verb = s.Verb
	f.Sub = s.Sub
	for i := 0; i < s.N; i++ {
		f.AddResource(s.Tables[i])
	}
	if s.Overflow {
		f.Overflow = true
	}
}

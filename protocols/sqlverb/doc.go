// Package sqlverb is a small SQL lexer shared by the MySQL and PostgreSQL
// parsers: it finds what a query text does (its verb) and what it acts on
// (its tables), without allocating. It is not a parser: it skips what the
// server skips (whitespace, comments), steps over what cannot hold a verb
// or a table (string literals, dollar-quoted bodies), and reads keywords and
// names with a few rules per clause.
//
// # API
//
//	func Scan(text []byte, d Dialect, out *Statement) error
//
// Scan fills out (reset first) from a query text in dialect d (MySQL or
// Postgres). A Statement is large (it owns the scratch space its views point
// into): keep one per connection and reuse it. Its slices are valid until
// the next Scan into the same Statement.
//
//	type Statement struct {
//		Verb     []byte                // upper case: SELECT, INSERT, COPY_PROGRAM, MULTI…
//		Sub      []byte                // see below; may be empty
//		Tables   [MaxTables][]byte     // Tables[:N], normalised, "schema.table" when qualified
//		N        int
//		Overflow bool                  // the table list is incomplete (see below)
//		Multi    bool                  // the text holds more than one statement
//		Verbs    [MaxVerbs][]byte      // distinct statement verbs, Verbs[:NVerbs]
//		NVerbs   int
//		// scratch space (unexported)
//	}
//	func (s *Statement) TableList() [][]byte // s.Tables[:s.N]
//	func (s *Statement) Fill(f *l7.Frame)    // Verb, Sub, resources and Overflow into f (views into s)
//
// Errors (both wrap l7 sentinels, never allocated): ErrDialect (unknown
// dialect) and ErrVerbTooLong (the first word is longer than l7.MaxVerb;
// no SQL keyword is).
//
// # Verb
//
// The verb is the first keyword of a statement, upper-cased (ASCII), after
// any opening parentheses: SELECT, INSERT, UPDATE, DELETE, REPLACE, CREATE,
// DROP, ALTER, TRUNCATE, GRANT, REVOKE, SET, SHOW, USE, BEGIN, START,
// COMMIT, ROLLBACK, CALL, EXPLAIN, PREPARE, EXECUTE, DEALLOCATE, DO,
// HANDLER, LOCK, UNLOCK, … — any word, as written. Composite verbs:
//
//   - LOAD DATA → LOAD_DATA, LOAD DATA LOCAL → LOAD_DATA_LOCAL, likewise
//     LOAD_XML and LOAD_XML_LOCAL (MySQL).
//   - SELECT … INTO OUTFILE|DUMPFILE → SELECT_OUTFILE (MySQL: it writes a
//     file on the server).
//   - COPY … FROM|TO PROGRAM → COPY_PROGRAM; COPY … FROM|TO 'file' →
//     COPY_FILE; COPY … FROM STDIN|TO STDOUT → COPY (Postgres).
//   - WITH … → the verb of the main statement after the common table
//     expressions (WITH x AS (…) DELETE … → DELETE). A data-modifying CTE
//     (Postgres: WITH d AS (DELETE … RETURNING …) SELECT …) adds its verb
//     to the statement's verbs (see MULTI); so does a data-modifying query
//     in COPY (…) TO.
//   - EXPLAIN|DESCRIBE|DESC stmt → EXPLAIN (as written), Sub = the verb of
//     stmt. EXPLAIN ANALYZE stmt executes stmt: Verb = the verb of stmt, Sub
//     = EXPLAIN. EXPLAIN t / DESCRIBE t (MySQL: the columns of t) → Verb as
//     written, table t.
//   - PREPARE name AS stmt (Postgres) → PREPARE, Sub = the verb of stmt,
//     tables of stmt. PREPARE name FROM '…' (MySQL) → PREPARE, no tables:
//     the text in the string is not looked into.
//
// MULTI: when the text performs more than one kind of statement — several
// statements (SELECT 1; DROP TABLE t) whose verbs differ, or a
// data-modifying CTE — Verb is "MULTI", Verbs lists the distinct verbs in
// order of appearance (at most MaxVerbs; more set Overflow) and Sub is the
// same list joined by ',' (cut at a comma to fit MaxSub, then ending in
// ",..."). When all statements share one verb, Verb is that verb and only
// Multi tells that there were several. Tables is the union over all
// statements. A ';' is a statement boundary wherever it is outside a
// string, quoted name or comment — also inside parentheses and inside a
// CREATE PROCEDURE … BEGIN … END body, which therefore reads as MULTI (fail
// closed). A text with only comments and ';' has no verb and no tables.
//
// # Tables
//
// The names after FROM (comma lists, JOINs, also after ON/USING
// conditions: MySQL's "FROM a JOIN b ON c, d"), JOIN, INTO, UPDATE, TABLE,
// DELETE [FROM], TRUNCATE [TABLE], DROP/CREATE/ALTER TABLE|VIEW|INDEX|
// DATABASE|SCHEMA|SEQUENCE|PROCEDURE|FUNCTION|TRIGGER|EVENT|TYPE|EXTENSION
// [IF [NOT] EXISTS], REPLACE [INTO], INSERT [INTO], CREATE … LIKE,
// REFERENCES, CREATE INDEX|TRIGGER … ON, GRANT|REVOKE … ON, RENAME TABLE
// a TO b, ALTER … RENAME [TO|AS], LOCK TABLE[S], FLUSH TABLES, DELETE/MERGE
// … USING, COPY t, USE db (the database), CALL p (the routine), HANDLER t,
// in subqueries and CTE bodies at any depth. Names of common table
// expressions are not tables where they are in scope (a non-recursive CTE
// is in scope after its body, a RECURSIVE one from its name on). A
// function in FROM (generate_series(…), JSON_TABLE(…)) is reported as a
// table. Duplicates are reported once, in order of first appearance.
//
// Names are normalised: quotes removed and doubled quotes undone (a
// doubled backtick or double quote inside a quoted name stands for one);
// parts of a qualified name joined by '.' without blanks (`db` . `t` →
// db.t; three parts kept as written); Postgres folds unquoted names to
// lower case (ASCII) and clips each part to 63 bytes as the server does;
// MySQL keeps the case as written (lower_case_table_names is a server
// setting; a case the server would fold only ever fails closed). In MySQL
// a "double-quoted" token where a name stands is taken as a name
// (ANSI_QUOTES). An empty name ("") is dropped.
//
// Overflow is set when the list is incomplete: more than MaxTables
// distinct names, a name longer than MaxName bytes, parentheses nested
// deeper than MaxDepth, or more than MaxVerbs distinct verbs. A caller that
// cannot see every table must treat the statement as touching any table.
//
// # Lexing
//
// MySQL: '…' and "…" strings (a doubled quote stands for one) with
// backslash escapes, `…` names, -- comments only when followed by a blank
// or control byte (as mysqld: "1--1" is arithmetic), # comments, /* */
// comments that do not nest, and /*!…*/, /*!50001 …*/ and MariaDB
// /*M!100100 …*/ executable comments whose content is lexed as code (the
// version digits are skipped); /*+ hints */ are comments. Postgres: '…'
// strings (standard conforming), E'…' with backslash escapes, U&'…', "…"
// names, $tag$…$tag$ bodies, nested /* */ comments and -- comments.
//
// Session modes (MySQL NO_BACKSLASH_ESCAPES and ANSI_QUOTES, Postgres
// standard_conforming_strings) move where a string ends only when a
// backslash stands before a quote; so do two-byte character sets (GBK,
// GB18030, Big5, Shift JIS, CP932), whose characters may end in a
// backslash or a backtick, when a byte 0x81-0xfe stands before one. When a
// text has either, Scan lexes it again under every combination of those
// modes (at most eight passes) and reports the union, so that no session
// setting or character set can hide a statement or a table from it.
//
// # Speed
//
// Scan runs per query on the proxy's path, so its common cases are cut
// short without changing what it reports:
//
//   - A plain SELECT (ASCII, no comments, backslashes or dollar quotes;
//     names after FROM, JOIN and commas; subqueries; the keywords the
//     general rules ignore where they stand) is read by a fast path in one
//     pass (fast.go), which gives up at the first thing outside that subset;
//     the text is then scanned in full. Its first word is checked for
//     SELECT from one 8-byte load, and a name of one unquoted word (the
//     usual one) is lower-cased straight into its slot of the Statement.
//   - In full, a token in a state where it can change nothing (no name
//     expected, no WITH, EXPLAIN, COPY or statement phase pending) skips
//     the clause rules: only keywords, ';' and parentheses are looked at.
//     A token that was peeked is not lexed again.
//   - Bytes are classed by 256-entry tables; words are delimited 8 bytes at
//     a time (SWAR), and a keyword is compared as case-folded 64-bit words
//     among the few of its length and first letter. A text without a byte
//     >= 0x80 skips the two-byte character set check.
//
// Tests compare each shortcut with the path it cuts short: the fast path
// and the skipping against Scan without them (FuzzShortcuts, and random
// texts of SQL pieces in TestShortcutsRandom), the SWAR helpers against
// byte loops (FuzzWordEnd, FuzzLowerASCII), the keyword lookup against a
// linear search (FuzzKeyword).
//
// Known gaps: the text of dynamic SQL (PREPARE … FROM '…', EXECUTE
// IMMEDIATE, DO $$…$$ and function bodies) is not looked into; functions
// that touch files or tables (LOAD_FILE, pg_read_file, dblink) are not
// reported; routine and trigger bodies are lexed like any text (their ';'
// make them MULTI); in a MySQL multi-table DELETE the aliases before FROM
// are reported as tables; Postgres U&"…" escapes are not decoded: a text
// with a U&"…" name sets Overflow (it fails closed).
package sqlverb

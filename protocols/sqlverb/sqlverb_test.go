package sqlverb

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/google/go-cmp/cmp"
)

type scanCase struct {
	d      Dialect
	text   string
	verb   string
	sub    string
	tables []string
	multi  bool
}

// scanCases are statements from real clients and the tricks that matter to
// a firewall: verbs hidden in comments and strings, statements after a ';',
// session modes that move where a string ends, CTEs shadowing tables.
var scanCases = []scanCase{
	{MySQL, "SELECT * FROM t", "SELECT", "", []string{"t"}, false},
	{MySQL, "select a from db.t1, `db2`.`t 2` x join t3 on t3.a = x.b, t4 where a in (select b from t5)", "SELECT", "", []string{"db.t1", "db2.t 2", "t3", "t4", "t5"}, false},
	{MySQL, "SELECT 1; DROP TABLE t", "MULTI", "SELECT,DROP", []string{"t"}, true},
	{MySQL, "SELECT 1; SELECT 2;", "SELECT", "", nil, true},
	{MySQL, "SELECT 1 -- ; DROP TABLE t", "SELECT", "", nil, false},
	{MySQL, "SELECT 1 --1; DROP TABLE t", "MULTI", "SELECT,DROP", []string{"t"}, true},
	{MySQL, "SELECT 1 /* ; DROP TABLE x */", "SELECT", "", nil, false},
	{MySQL, "SELECT 1 /*! ; DROP TABLE x */", "MULTI", "SELECT,DROP", []string{"x"}, true},
	{MySQL, "/*!40101 SET NAMES utf8 */", "SET", "", nil, false},
	{MySQL, "SELECT 'a;b' FROM t WHERE x = 'it''s; DROP'", "SELECT", "", []string{"t"}, false},
	{MySQL, "SELECT 'a\\'; DROP TABLE t; -- '", "MULTI", "SELECT,DROP", []string{"t"}, true},
	{MySQL, "SELECT \"a\\\"; DROP TABLE t; -- \"", "MULTI", "SELECT,DROP", []string{"t"}, true},
	{MySQL, "INSERT INTO t (a,b) VALUES (1,2) ON DUPLICATE KEY UPDATE a=VALUES(a)", "INSERT", "", []string{"t"}, false},
	{MySQL, "INSERT LOW_PRIORITY IGNORE t2 SELECT * FROM t3", "INSERT", "", []string{"t2", "t3"}, false},
	{MySQL, "REPLACE INTO t VALUES (1)", "REPLACE", "", []string{"t"}, false},
	{MySQL, "UPDATE t1 JOIN t2 ON t1.id=t2.id SET t1.a = 1 WHERE t2.b IN (SELECT c FROM t3)", "UPDATE", "", []string{"t1", "t2", "t3"}, false},
	{MySQL, "DELETE FROM t WHERE id = 1", "DELETE", "", []string{"t"}, false},
	{MySQL, "DELETE t1, t2 FROM t1 INNER JOIN t2 INNER JOIN t3 WHERE t1.id=t2.id", "DELETE", "", []string{"t1", "t2", "t3"}, false},
	{MySQL, "DELETE FROM t1 USING t1 JOIN t2 USING (id)", "DELETE", "", []string{"t1", "t2"}, false},
	{MySQL, "CREATE TABLE IF NOT EXISTS db.t (id INT PRIMARY KEY, u INT REFERENCES users(id))", "CREATE", "", []string{"db.t", "users"}, false},
	{MySQL, "CREATE TABLE t2 LIKE t1", "CREATE", "", []string{"t2", "t1"}, false},
	{MySQL, "DROP TABLE IF EXISTS a, b, c", "DROP", "", []string{"a", "b", "c"}, false},
	{MySQL, "ALTER TABLE t RENAME TO u", "ALTER", "", []string{"t", "u"}, false},
	{MySQL, "ALTER TABLE t RENAME COLUMN a TO b", "ALTER", "", []string{"t"}, false},
	{MySQL, "TRUNCATE TABLE t", "TRUNCATE", "", []string{"t"}, false},
	{MySQL, "RENAME TABLE a TO b, c TO d", "RENAME", "", []string{"a", "b", "c", "d"}, false},
	{MySQL, "WITH x AS (SELECT * FROM secret) SELECT * FROM x", "SELECT", "", []string{"secret"}, false},
	{MySQL, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 5) SELECT * FROM r", "SELECT", "", nil, false},
	{MySQL, "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret", "SELECT", "", []string{"secret"}, false},
	{MySQL, "SELECT * FROM (WITH secret AS (SELECT 1) SELECT * FROM secret) a, secret", "SELECT", "", []string{"secret"}, false},
	{Postgres, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "MULTI", "SELECT,DELETE", []string{"t"}, false},
	{Postgres, "COPY t FROM STDIN", "COPY", "", []string{"t"}, false},
	{Postgres, "COPY t TO PROGRAM 'cat > /tmp/x'", "COPY_PROGRAM", "", []string{"t"}, false},
	{Postgres, "COPY t FROM '/etc/passwd'", "COPY_FILE", "", []string{"t"}, false},
	{Postgres, "COPY (SELECT * FROM u) TO STDOUT WITH (FORMAT csv)", "COPY", "", []string{"u"}, false},
	{Postgres, "SELECT * FROM \"Users\" u JOIN Orders o ON o.uid = u.id", "SELECT", "", []string{"Users", "orders"}, false},
	{Postgres, "SELECT $$ ; DROP TABLE t $$, $a$ x $a$ FROM t", "SELECT", "", []string{"t"}, false},
	{Postgres, "SELECT E'a\\'; DROP TABLE x; --' FROM t", "SELECT", "", []string{"t"}, false},
	{Postgres, "SELECT 'a\\'; DROP TABLE x; --' FROM t", "MULTI", "SELECT,DROP", []string{"x", "t"}, true},
	{Postgres, "SELECT 1 /* /* nested */ DROP TABLE x */ FROM t", "SELECT", "", []string{"t"}, false},
	{Postgres, "SELECT 1--comment\nFROM t", "SELECT", "", []string{"t"}, false},
	{Postgres, "EXPLAIN ANALYZE DELETE FROM t", "DELETE", "EXPLAIN", []string{"t"}, false},
	{Postgres, "EXPLAIN (ANALYZE, VERBOSE) UPDATE t SET a = 1", "UPDATE", "EXPLAIN", []string{"t"}, false},
	{Postgres, "EXPLAIN (ANALYZE false) UPDATE t SET a = 1", "EXPLAIN", "UPDATE", []string{"t"}, false},
	{MySQL, "EXPLAIN SELECT * FROM t", "EXPLAIN", "SELECT", []string{"t"}, false},
	{MySQL, "DESCRIBE t", "DESCRIBE", "", []string{"t"}, false},
	{MySQL, "DESC `t`", "DESC", "", []string{"t"}, false},
	{MySQL, "EXPLAIN FORMAT=JSON SELECT * FROM t", "EXPLAIN", "SELECT", []string{"t"}, false},
	{MySQL, "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t", "LOAD_DATA_LOCAL", "", []string{"t"}, false},
	{MySQL, "LOAD DATA INFILE 'x' REPLACE INTO TABLE db.t", "LOAD_DATA", "", []string{"db.t"}, false},
	{MySQL, "SELECT * FROM t INTO OUTFILE '/tmp/x'", "SELECT_OUTFILE", "", []string{"t"}, false},
	{MySQL, "SELECT a INTO @x FROM t", "SELECT", "", []string{"t"}, false},
	{MySQL, "USE mydb", "USE", "", []string{"mydb"}, false},
	{MySQL, "CALL p(1)", "CALL", "", []string{"p"}, false},
	{MySQL, "SHOW TABLES", "SHOW", "", nil, false},
	{MySQL, "SHOW COLUMNS FROM t", "SHOW", "", []string{"t"}, false},
	{MySQL, "SHOW CREATE TABLE t", "SHOW", "", []string{"t"}, false},
	{MySQL, "SHOW TABLE STATUS", "SHOW", "", nil, false},
	{MySQL, "GRANT SELECT ON db.* TO 'u'@'h'", "GRANT", "", []string{"db.*"}, false},
	{MySQL, "GRANT ALL ON *.* TO u", "GRANT", "", []string{"*.*"}, false},
	{MySQL, "REVOKE INSERT ON db.t FROM u", "REVOKE", "", []string{"db.t"}, false},
	{MySQL, "SET autocommit=1", "SET", "", nil, false},
	{MySQL, "BEGIN", "BEGIN", "", nil, false},
	{MySQL, "START TRANSACTION", "START", "", nil, false},
	{MySQL, "COMMIT", "COMMIT", "", nil, false},
	{MySQL, "LOCK TABLES t1 READ, t2 AS x WRITE", "LOCK", "", []string{"t1", "t2"}, false},
	{MySQL, "UNLOCK TABLES", "UNLOCK", "", nil, false},
	{MySQL, "SELECT EXTRACT(YEAR FROM d) FROM t", "SELECT", "", []string{"t"}, false},
	{Postgres, "SELECT * FROM t WHERE a IS DISTINCT FROM b", "SELECT", "", []string{"t"}, false},
	{MySQL, "SELECT * FROM a JOIN b ON a.x IN (1), secret", "SELECT", "", []string{"a", "b", "secret"}, false},
	{MySQL, "SELECT * FROM t USE INDEX FOR ORDER BY (i), secret", "SELECT", "", []string{"t", "secret"}, false},
	{MySQL, "SELECT * FROM t FOR UPDATE", "SELECT", "", []string{"t"}, false},
	{MySQL, "SELECT * FROM t GROUP BY a WITH ROLLUP UNION SELECT * FROM secret", "SELECT", "", []string{"t", "secret"}, false},
	{MySQL, "(SELECT a FROM t1) UNION (SELECT b FROM t2)", "SELECT", "", []string{"t1", "t2"}, false},
	{MySQL, "SELECT * FROM t1 WHERE x IN ((SELECT a FROM t2) UNION SELECT b FROM t3)", "SELECT", "", []string{"t1", "t2", "t3"}, false},
	{MySQL, "CREATE INDEX i ON t (a)", "CREATE", "", []string{"i", "t"}, false},
	{Postgres, "CREATE INDEX ON t (a)", "CREATE", "", []string{"t"}, false},
	{MySQL, "DROP INDEX i ON t", "DROP", "", []string{"i", "t"}, false},
	{MySQL, "CREATE VIEW v AS SELECT * FROM t", "CREATE", "", []string{"v", "t"}, false},
	{MySQL, "CREATE DATABASE d", "CREATE", "", []string{"d"}, false},
	{MySQL, "DROP DATABASE d", "DROP", "", []string{"d"}, false},
	{MySQL, "PREPARE s FROM 'SELECT * FROM t'", "PREPARE", "", nil, false},
	{Postgres, "PREPARE s (int) AS SELECT * FROM t WHERE id = $1", "PREPARE", "SELECT", []string{"t"}, false},
	{MySQL, "EXECUTE s", "EXECUTE", "", nil, false},
	{MySQL, "DEALLOCATE PREPARE s", "DEALLOCATE", "", nil, false},
	{MySQL, "SeLeCt * FrOm T", "SELECT", "", []string{"T"}, false},
	{MySQL, "HANDLER t OPEN", "HANDLER", "", []string{"t"}, false},
	{MySQL, "SELECT 1 FROM DUAL", "SELECT", "", nil, false},
	{MySQL, ";;", "", "", nil, false},
	{MySQL, "-- only a comment", "", "", nil, false},
	{MySQL, "SELECT * FROM t1 a, LATERAL (SELECT * FROM t2 WHERE t2.x = a.x) b", "SELECT", "", []string{"t1", "t2"}, false},
	{Postgres, "SELECT * FROM ONLY t", "SELECT", "", []string{"t"}, false},
	{Postgres, "UPDATE ONLY t SET a=1 FROM u WHERE t.id=u.id", "UPDATE", "", []string{"t", "u"}, false},
	{Postgres, "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", "MERGE", "", []string{"t", "s"}, false},
	{Postgres, "SELECT * FROM generate_series(1,3) g", "SELECT", "", []string{"generate_series"}, false},
	{Postgres, "SELECT * FROM aVeryLongIdentifierThatIsLongerThanSixtyThreeBytesXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "SELECT", "", []string{"averylongidentifierthatislongerthansixtythreebytesxxxxxxxxxxxxx"}, false},
	{MySQL, "SELECT * FROM `a``b`", "SELECT", "", []string{"a`b"}, false},
	{Postgres, "SELECT * FROM \"a\"\"B\"", "SELECT", "", []string{"a\"B"}, false},
	{MySQL, "SELECT * FROM \"ansi\"", "SELECT", "", []string{"ansi"}, false},
	{MySQL, "SELECT/**/a/**/FROM/**/t", "SELECT", "", []string{"t"}, false},
	{MySQL, "SELECT * FROM t WHERE a = 1 /*!50000 UNION SELECT * FROM secret */", "SELECT", "", []string{"t", "secret"}, false},
	{MySQL, "/*M!100100 DROP TABLE t */", "DROP", "", []string{"t"}, false},
	{MySQL, "INSERT INTO t SELECT * FROM u; INSERT INTO v VALUES (1)", "INSERT", "", []string{"t", "u", "v"}, true},
	{MySQL, "TABLE t", "TABLE", "", []string{"t"}, false},
	{Postgres, "VALUES (1), (2)", "VALUES", "", nil, false},
	{Postgres, "DO $$ BEGIN DROP TABLE t; END $$", "DO", "", nil, false},
	{MySQL, "OPTIMIZE TABLE a, b", "OPTIMIZE", "", []string{"a", "b"}, false},
	{MySQL, "SELECT (REPLACE(a, 'x', 'y')) FROM t", "SELECT", "", []string{"t"}, false},
	{MySQL, "INSERT INTO t WITH x AS (SELECT * FROM s) SELECT * FROM x", "INSERT", "", []string{"t", "s"}, false},
	{Postgres, "SELECT * FROM t1 CROSS JOIN t2 NATURAL JOIN t3", "SELECT", "", []string{"t1", "t2", "t3"}, false},
	{MySQL, "SELECT * FROM t PARTITION (p0) AS x WHERE 1", "SELECT", "", []string{"t"}, false},
	{MySQL, "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", "CREATE", "", []string{"trg", "t"}, false},
	{MySQL, "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id)", "ALTER", "", []string{"t", "u"}, false},
	{Postgres, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK", "", []string{"t"}, false},
	{Postgres, "TRUNCATE a, b RESTART IDENTITY", "TRUNCATE", "", []string{"a", "b"}, false},
	{MySQL, "SELECT 1 #; DROP TABLE t\n, 2", "SELECT", "", nil, false},
	{MySQL, "SELECT * FROM {oj secret LEFT OUTER JOIN t2 ON 1}, t3", "SELECT", "", []string{"secret", "t2", "t3"}, false},
	{Postgres, "COPY (DELETE FROM t RETURNING *) TO STDOUT", "MULTI", "COPY,DELETE", []string{"t"}, false},
	{Postgres, "SELECT * FROM t WHERE x = ANY(SELECT y FROM u)", "SELECT", "", []string{"t", "u"}, false},
	{MySQL, "SELECT a FROM t WHERE b = (SELECT MAX(c) FROM u WHERE u.d = t.d) ORDER BY a LIMIT 1, 2", "SELECT", "", []string{"t", "u"}, false},
	{Postgres, "INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b RETURNING id", "INSERT", "", []string{"t"}, false},
	{MySQL, "SELECT c FROM sbtest1 WHERE id=?", "SELECT", "", []string{"sbtest1"}, false},
	{MySQL, "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", "SELECT", "", []string{"sbtest1"}, false},
	{Postgres, "select * from pg_catalog.pg_tables", "SELECT", "", []string{"pg_catalog.pg_tables"}, false},
	{MySQL, "SELECT @@version_comment LIMIT 1", "SELECT", "", nil, false},
	{Postgres, "WITH a AS (SELECT 1), b AS MATERIALIZED (SELECT * FROM a, real) SELECT * FROM b, a", "SELECT", "", []string{"real"}, false},
	{Postgres, "WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 100) SEARCH DEPTH FIRST BY n SET ord SELECT * FROM t ORDER BY ord", "SELECT", "", nil, false},
	{Postgres, "EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT 1", "MULTI", "EXPLAIN,DELETE", []string{"t"}, false},
	{Postgres, "WITH x AS (SELECT 1) DELETE FROM t USING x WHERE t.a = x.a", "DELETE", "", []string{"t"}, false},
	{MySQL, "SELECT * FROM t WHERE a = \"x\\\"\" AND b = 1; DROP TABLE z", "MULTI", "SELECT,DROP", []string{"t", "z"}, true},
}

func tables(st *Statement) []string {
	var out []string
	for _, t := range st.TableList() {
		out = append(out, string(t))
	}
	return out
}

func TestScan(t *testing.T) {
	var st Statement
	for _, c := range scanCases {
		t.Run(fmt.Sprintf("%s/%s", c.d, c.text), func(t *testing.T) {
			if err := Scan([]byte(c.text), c.d, &st); err != nil {
				t.Fatalf("Scan: %v", err)
			}
			got := scanCase{c.d, c.text, string(st.Verb), string(st.Sub), tables(&st), st.Multi}
			if diff := cmp.Diff(c, got, cmp.AllowUnexported(scanCase{})); diff != "" {
				t.Errorf("Scan (-want +got):\n%s", diff)
			}
			if st.Overflow {
				t.Errorf("Overflow set")
			}
		})
	}
}

// TestScanModes: where a backslash stands before a quote, the statement
// that the quote hides under one session mode must be seen under every
// mode, for both dialects.
func TestScanModes(t *testing.T) {
	cases := []struct {
		name string
		d    Dialect
		text string
		want string // a verb that must be among Verbs
		tab  string // a table that must be reported
	}{
		{"mysql NO_BACKSLASH_ESCAPES", MySQL, `SELECT 'a\'; DROP TABLE t1; -- '`, "DROP", "t1"},
		{"mysql backslash escapes", MySQL, `SELECT 'a\''; DROP TABLE t2; -- '`, "DROP", "t2"},
		{"mysql ANSI_QUOTES", MySQL, `SELECT "a\"; DROP TABLE t3; -- "`, "DROP", "t3"},
		{"mysql ANSI_QUOTES name", MySQL, `SELECT * FROM "t4"`, "SELECT", "t4"},
		{"postgres standard_conforming_strings off", Postgres, `SELECT 'a\''; DROP TABLE t5; -- '`, "DROP", "t5"},
		{"postgres standard_conforming_strings on", Postgres, `SELECT 'a\'; DROP TABLE t6; -- '`, "DROP", "t6"},
		{"mysql GBK backtick", MySQL, "SELECT 1 AS a\x81`; DROP TABLE t7; -- `", "DROP", "t7"},
		{"mysql GBK backslash", MySQL, "SELECT '\xbf\\'; DROP TABLE t8; -- '", "DROP", "t8"},
		{"mysql GBK and an escape", MySQL, "SELECT 'a\\'b', '\xbf\\'; DROP TABLE t9; -- '", "DROP", "t9"},
		{"postgres GBK E-string", Postgres, "SELECT E'\xbf\\'; DROP TABLE t10; -- '", "DROP", "t10"},
	}
	var st Statement
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := Scan([]byte(c.text), c.d, &st); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, v := range st.Verbs[:st.NVerbs] {
				found = found || string(v) == c.want
			}
			if !found {
				t.Errorf("verbs %q lack %s", st.Verbs[:st.NVerbs], c.want)
			}
			found = false
			for _, x := range st.TableList() {
				found = found || string(x) == c.tab
			}
			if !found {
				t.Errorf("tables %q lack %s", tables(&st), c.tab)
			}
		})
	}
}

func TestScanLimits(t *testing.T) {
	var st Statement
	t.Run("verb too long", func(t *testing.T) {
		err := Scan([]byte(strings.Repeat("X", l7.MaxVerb+1)+" 1"), MySQL, &st)
		if !errors.Is(err, ErrVerbTooLong) || !errors.Is(err, l7.ErrTooLong) {
			t.Fatalf("err = %v, want ErrVerbTooLong", err)
		}
		if st.Verb != nil || st.N != 0 {
			t.Errorf("statement not empty after an error: %q %d", st.Verb, st.N)
		}
	})
	t.Run("verb at the limit", func(t *testing.T) {
		if err := Scan([]byte(strings.Repeat("x", l7.MaxVerb)), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if string(st.Verb) != strings.Repeat("X", l7.MaxVerb) {
			t.Errorf("verb %q", st.Verb)
		}
	})
	t.Run("bad dialect", func(t *testing.T) {
		if err := Scan([]byte("SELECT 1"), Dialect(9), &st); !errors.Is(err, ErrDialect) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too many tables", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("SELECT * FROM t0")
		for i := 1; i <= MaxTables; i++ {
			fmt.Fprintf(&b, ", t%d", i)
		}
		if err := Scan([]byte(b.String()), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if st.N != MaxTables || !st.Overflow {
			t.Errorf("N = %d, Overflow = %v; want %d, true", st.N, st.Overflow, MaxTables)
		}
	})
	t.Run("duplicates count once", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("SELECT * FROM t")
		for i := 0; i < 100; i++ {
			b.WriteString(" JOIN t")
		}
		if err := Scan([]byte(b.String()), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if st.N != 1 || st.Overflow {
			t.Errorf("N = %d, Overflow = %v", st.N, st.Overflow)
		}
	})
	t.Run("name too long", func(t *testing.T) {
		text := "SELECT * FROM " + strings.Repeat("a", MaxName+1) + ", b"
		if err := Scan([]byte(text), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"b"}, tables(&st)); diff != "" || !st.Overflow {
			t.Errorf("tables (-want +got):\n%s; Overflow = %v", diff, st.Overflow)
		}
	})
	t.Run("postgres clips names", func(t *testing.T) {
		// 62 ASCII bytes and a 2-byte character: the character would be
		// cut at byte 63, so Postgres keeps 62 bytes.
		text := "SELECT * FROM " + strings.Repeat("a", 62) + "é" + "zz"
		if err := Scan([]byte(text), Postgres, &st); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{strings.Repeat("a", 62)}, tables(&st)); diff != "" {
			t.Errorf("tables (-want +got):\n%s", diff)
		}
	})
	t.Run("deep nesting", func(t *testing.T) {
		text := "SELECT * FROM t WHERE a IN " + strings.Repeat("(", MaxDepth+5) + "SELECT b FROM u" + strings.Repeat(")", MaxDepth+5)
		if err := Scan([]byte(text), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if !st.Overflow || string(st.Verb) != "SELECT" {
			t.Errorf("verb %q Overflow %v; want SELECT, true", st.Verb, st.Overflow)
		}
		text = "SELECT * FROM t WHERE a IN " + strings.Repeat("(", MaxDepth-1) + "SELECT b FROM u" + strings.Repeat(")", MaxDepth-1) + ", v"
		if err := Scan([]byte(text), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"t", "u"}, tables(&st)); diff != "" || st.Overflow {
			t.Errorf("tables (-want +got):\n%s; Overflow %v", diff, st.Overflow)
		}
	})
	t.Run("many verbs", func(t *testing.T) {
		text := "A;B;C;D;E;F;G;H;I;J;KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"
		if err := Scan([]byte(text), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if string(st.Verb) != VerbMulti || !st.Overflow || st.NVerbs != MaxVerbs || !st.Multi {
			t.Errorf("verb %q Overflow %v NVerbs %d Multi %v", st.Verb, st.Overflow, st.NVerbs, st.Multi)
		}
		if string(st.Sub) != "A,B,C,D,E,F,G,H" || len(st.Sub) > MaxSub {
			t.Errorf("sub %q", st.Sub)
		}
	})
	t.Run("long sub is cut", func(t *testing.T) {
		w := strings.Repeat("V", 30)
		text := w + "A;" + w + "B;" + w + "C"
		if err := Scan([]byte(text), MySQL, &st); err != nil {
			t.Fatal(err)
		}
		if want := w + "A,..."; string(st.Sub) != want {
			t.Errorf("sub %q, want %q", st.Sub, want)
		}
	})
}

func TestFill(t *testing.T) {
	var st Statement
	if err := Scan([]byte("EXPLAIN SELECT * FROM a, b"), MySQL, &st); err != nil {
		t.Fatal(err)
	}
	var f l7.Frame
	st.Fill(&f)
	var res []string
	f.Resources(func(r []byte) bool { res = append(res, string(r)); return true })
	if string(f.Verb) != "EXPLAIN" || string(f.Sub) != "SELECT" || !cmp.Equal(res, []string{"a", "b"}) || f.Overflow {
		t.Errorf("frame %q %q %q %v", f.Verb, f.Sub, res, f.Overflow)
	}
}

// TestScanReuse: a Statement's views stay correct when it is reused, and
// results do not leak from one Scan into the next.
func TestScanReuse(t *testing.T) {
	var st Statement
	for i := 0; i < 3; i++ {
		for _, c := range scanCases {
			if err := Scan([]byte(c.text), c.d, &st); err != nil {
				t.Fatal(err)
			}
			if string(st.Verb) != c.verb || !cmp.Equal(tables(&st), c.tables) {
				t.Fatalf("round %d %q: %q %q", i, c.text, st.Verb, tables(&st))
			}
		}
	}
}

func TestScanAllocs(t *testing.T) {
	var st Statement
	for _, c := range scanCases {
		text := []byte(c.text)
		if n := testing.AllocsPerRun(20, func() { _ = Scan(text, c.d, &st) }); n != 0 {
			t.Errorf("%q: %v allocations", c.text, n)
		}
	}
}

func BenchmarkScan(b *testing.B) {
	for _, bc := range []struct {
		name string
		d    Dialect
		text string
	}{
		{"sysbench-point", MySQL, "SELECT c FROM sbtest1 WHERE id=5001"},
		{"join", MySQL, "select a.x, b.y from db.t1 a join `t2` b on a.id = b.id, t3 where a.z in (select z from t4 where w = 'x''y') order by 1 limit 10"},
		{"pg-cte", Postgres, `WITH d AS (DELETE FROM t WHERE ts < now() - interval '1 day' RETURNING *) INSERT INTO archive SELECT * FROM d`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var st Statement
			text := []byte(bc.text)
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if err := Scan(text, bc.d, &st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUnicodeName: Postgres U&"…" names may spell any table with escapes,
// which Scan does not decode: it reports Overflow. Elsewhere U& is no name.
func TestUnicodeName(t *testing.T) {
	var st Statement
	for _, c := range []struct {
		d        Dialect
		text     string
		overflow bool
	}{
		{Postgres, `SELECT * FROM U&"d\0061ta"`, true},
		{Postgres, `SELECT * FROM s.u&"secret" x`, true},
		{Postgres, `SELECT U&"c" FROM t`, true},
		{Postgres, `SELECT U&'x' FROM t`, false},
		{Postgres, `SELECT u & "c" FROM t`, false},
		{MySQL, `SELECT * FROM U&"secret"`, false},
	} {
		if err := Scan([]byte(c.text), c.d, &st); err != nil {
			t.Fatal(err)
		}
		if st.Overflow != c.overflow {
			t.Errorf("%v %s: Overflow %v, want %v (tables %q)", c.d, c.text, st.Overflow, c.overflow, st.TableList())
		}
	}
}

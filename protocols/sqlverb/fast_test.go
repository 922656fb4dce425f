package sqlverb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// scanSlow is Scan without the shortcuts: every token goes through
// scanner.token and every peeked token is lexed again.
func scanSlow(text []byte, d Dialect, st *Statement) error {
	st.sc.slow = true
	defer func() { st.sc.slow = false }()
	return Scan(text, d, st)
}

// diff describes how a and b differ, "" when they do not.
func diff(a, b *Statement) string {
	str := func(s *Statement) string {
		return fmt.Sprintf("verb %q sub %q verbs %q tables %q overflow %v multi %v",
			s.Verb, s.Sub, s.Verbs[:s.NVerbs], s.TableList(), s.Overflow, s.Multi)
	}
	same := bytes.Equal(a.Verb, b.Verb) && bytes.Equal(a.Sub, b.Sub) && a.N == b.N && a.NVerbs == b.NVerbs &&
		a.Overflow == b.Overflow && a.Multi == b.Multi
	for i := 0; same && i < a.N; i++ {
		same = bytes.Equal(a.Tables[i], b.Tables[i])
	}
	for i := 0; same && i < a.NVerbs; i++ {
		same = bytes.Equal(a.Verbs[i], b.Verbs[i])
	}
	if same {
		return ""
	}
	return str(a) + "\n   vs " + str(b)
}

// checkShortcuts scans text with and without the shortcuts and fails on
// any difference.
func checkShortcuts(t *testing.T, text []byte, d Dialect, fast, slow *Statement) {
	t.Helper()
	errFast := Scan(text, d, fast)
	errSlow := scanSlow(text, d, slow)
	if errFast != errSlow {
		t.Fatalf("%v %q: error %v, without shortcuts %v", d, text, errFast, errSlow)
	}
	if s := diff(fast, slow); s != "" {
		t.Fatalf("%v %q: with shortcuts %s (without)", d, text, s)
	}
}

// TestShortcuts: skipping token in quiet states and reusing peeked tokens
// change no result of the test cases, in either dialect.
func TestShortcuts(t *testing.T) {
	var fast, slow Statement
	for _, c := range scanCases {
		for _, d := range []Dialect{MySQL, Postgres} {
			checkShortcuts(t, []byte(c.text), d, &fast, &slow)
		}
	}
	for _, c := range fastCases {
		checkShortcuts(t, []byte(c.text), c.d, &fast, &slow)
	}
}

// FuzzShortcuts checks the shortcuts against the slow path on any text.
func FuzzShortcuts(f *testing.F) {
	for _, c := range scanCases {
		f.Add(c.text, c.d == Postgres)
	}
	for _, c := range fastCases {
		f.Add(c.text, c.d == Postgres)
	}
	var fast, slow Statement
	f.Fuzz(func(t *testing.T, text string, pg bool) {
		d := MySQL
		if pg {
			d = Postgres
		}
		checkShortcuts(t, []byte(text), d, &fast, &slow)
	})
}

// randomVocab are the pieces TestShortcutsRandom builds texts from: the
// keywords, names, quotes, operators and comment starts around which the
// fast path and the general scanner decide.
var randomVocab = []string{
	"SELECT", "select", "FROM", "from", "JOIN", "STRAIGHT_JOIN", "LEFT", "AS", "ON", "WHERE", "ORDER", "BY",
	"GROUP", "HAVING", "LIMIT", "OFFSET", "IN", "NOT", "LIKE", "DESC", "DISTINCT", "INTO", "OUTFILE", "UNION",
	"USING", "FOR", "UPDATE", "WITH", "LATERAL", "ONLY", "DUAL", "TABLE", "VALUES", "INSERT", "DELETE", "SET",
	"LOCK", "SHARE", "IF", "EXISTS", "DROP", "e", "E", "U", "t", "t1", "T2", "db", "x", "a", "b", "5001", "1e5",
	"$x", "a$b", "0x41", "ZZ_big_name_that_goes_on", "(", "(", ")", ")", ",", ",", ";", ".", ".", "*", "=", "-",
	"--", "/", "/*", "*/", "/*!", "#", "?", "$1", "$$", "$a$", ":", "<", "@", "{", "}", "`", "\"", "'", "'x'",
	"'a''b'", `'a\'b'`, "''", `"q"`, "`q`", "`a``b`", `"a""b"`, `""`, `'\\'`, "'\xc3\xa9'", "\x81`", "\x00",
	"DEL\x7fETE", "&", "'x' 'y'", "e'", "E'a\\'", "\xff",
}

// friendlyVocab are pieces the fast path may accept.
var friendlyVocab = []string{
	"SELECT", "select", "FROM", "FROM", "from", "JOIN", "JOIN", "STRAIGHT_JOIN", "LEFT", "AS", "ON", "WHERE",
	"WHERE", "ORDER", "BY", "GROUP", "HAVING", "LIMIT", "OFFSET", "IN", "NOT", "LIKE", "DESC", "e", "E", "U",
	"t", "t", "t1", "T2", "db", "x", "a", "b", "5001", "1e5", "$x", "a$b", "0x41", "(", "(", "(SELECT", ")",
	")", ",", ",", ",", ".", ".", "=", "-", "?", "$1", ":", "<", "@", "`", "\"", "'x'", "'a''b'", "''",
	`"q"`, "`q`", "`a``b`", `"a""b"`, `""`, "&",
}

// TestShortcutsRandom checks the shortcuts against the slow path on
// texts made of pieces that matter to them, most starting with SELECT;
// it also checks that the fast path takes a fair share of them, so that
// the comparison covers it.
func TestShortcutsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 100))
	blanks := []string{" ", " ", " ", "\n", "\t", ""}
	var fast, slow Statement
	var b []byte
	n, taken := 100000, 0
	if testing.Short() {
		n = 3000
	}
	for range n {
		b = b[:0]
		if r.IntN(10) < 8 {
			b = append(b, "SELECT "...)
		}
		// Half the texts mostly of pieces the fast path may accept.
		friendly := r.IntN(2) == 0
		for range r.IntN(30) {
			v := randomVocab[r.IntN(len(randomVocab))]
			if friendly && r.IntN(20) > 0 {
				v = friendlyVocab[r.IntN(len(friendlyVocab))]
			}
			b = append(b, v...)
			b = append(b, blanks[r.IntN(len(blanks))]...)
		}
		for _, d := range []Dialect{MySQL, Postgres} {
			checkShortcuts(t, b, d, &fast, &slow)
			fast.reset()
			if fast.sc.fastSelect(b, d, &fast) {
				taken++
			}
		}
	}
	if taken < n/10 {
		t.Errorf("the fast path took %d of %d texts", taken, 2*n)
	}
	t.Logf("the fast path took %d of %d texts", taken, 2*n)
}

// fastCases are the benchmarks' queries.
var fastCases = []struct {
	d    Dialect
	text string
}{
	{MySQL, "SELECT c FROM sbtest1 WHERE id=5001"},
	{MySQL, "select a.x, b.y from db.t1 a join `t2` b on a.id = b.id, t3 where a.z in (select z from t4 where w = 'x''y') order by 1 limit 10"},
	{Postgres, "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"},
	{Postgres, "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
	{Postgres, "SELECT c.relname, n.nspname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') ORDER BY 1, 2"},
}

// TestFastTakes: the benchmarks' queries are in the fast path's subset.
func TestFastTakes(t *testing.T) {
	var st Statement
	for _, c := range fastCases {
		st.reset()
		if !st.sc.fastSelect([]byte(c.text), c.d, &st) {
			t.Errorf("%v %q: the fast path gave up", c.d, c.text)
		}
	}
}

// TestLowerCopy checks lowerCopy against lowerASCII at every length up to
// a few words and for every byte at every position of a short and a long
// value.
func TestLowerCopy(t *testing.T) {
	check := func(src []byte) {
		t.Helper()
		want := append([]byte(nil), src...)
		lowerASCII(want)
		got := make([]byte, len(src))
		lowerCopy(got, src)
		if string(got) != string(want) {
			t.Fatalf("lowerCopy(%q) = %q, want %q", src, got, want)
		}
	}
	for n := range 40 {
		src := make([]byte, n)
		for i := range src {
			src[i] = "AzZa@[`{_9\x80\xc1"[i%12]
		}
		check(src)
	}
	for _, n := range []int{5, 19} {
		for at := range n {
			for c := range 256 {
				src := []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n])
				src[at] = byte(c)
				check(src)
			}
		}
	}
}

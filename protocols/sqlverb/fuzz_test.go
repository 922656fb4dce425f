package sqlverb

import (
	"bytes"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// FuzzScan checks that Scan never panics, keeps its bounds, is
// deterministic, and that no text can hide a statement that comes before
// it: "DROP TABLE zz_fuzz; " + text always reports DROP and zz_fuzz.
func FuzzScan(f *testing.F) {
	for _, c := range scanCases {
		f.Add(c.text, c.d == Postgres)
	}
	var st, again Statement
	f.Fuzz(func(t *testing.T, text string, pg bool) {
		d := MySQL
		if pg {
			d = Postgres
		}
		err := Scan([]byte(text), d, &st)
		if err != nil {
			if st.Verb != nil || st.N != 0 {
				t.Fatalf("statement not empty after %v", err)
			}
			return
		}
		check(t, &st)
		if err := Scan([]byte(text), d, &again); err != nil {
			t.Fatalf("second Scan: %v", err)
		}
		if !bytes.Equal(st.Verb, again.Verb) || !bytes.Equal(st.Sub, again.Sub) || st.N != again.N ||
			st.Overflow != again.Overflow || st.Multi != again.Multi {
			t.Fatalf("not deterministic: %q %q %d vs %q %q %d", st.Verb, st.Sub, st.N, again.Verb, again.Sub, again.N)
		}
		for i := 0; i < st.N; i++ {
			if !bytes.Equal(st.Tables[i], again.Tables[i]) {
				t.Fatalf("table %d: %q vs %q", i, st.Tables[i], again.Tables[i])
			}
		}

		if err := Scan([]byte("DROP TABLE zz_fuzz; "+text), d, &st); err != nil {
			return // the text's own verb is too long
		}
		check(t, &st)
		drop := false
		for _, v := range st.Verbs[:st.NVerbs] {
			drop = drop || string(v) == "DROP"
		}
		if !drop && !st.Overflow {
			t.Fatalf("a leading DROP was hidden: verbs %q", st.Verbs[:st.NVerbs])
		}
		if st.N == 0 || string(st.Tables[0]) != "zz_fuzz" {
			t.Fatalf("a leading DROP's table was hidden: %q", st.TableList())
		}
	})
}

func check(t *testing.T, st *Statement) {
	t.Helper()
	if st.N < 0 || st.N > MaxTables || st.NVerbs > MaxVerbs {
		t.Fatalf("N = %d, NVerbs = %d", st.N, st.NVerbs)
	}
	if len(st.Verb) > l7.MaxVerb || len(st.Sub) > MaxSub {
		t.Fatalf("verb %q sub %q too long", st.Verb, st.Sub)
	}
	if st.NVerbs > 1 && string(st.Verb) != VerbMulti {
		t.Fatalf("verbs %q but Verb %q", st.Verbs[:st.NVerbs], st.Verb)
	}
	for _, x := range st.TableList() {
		if len(x) == 0 || len(x) > MaxName {
			t.Fatalf("table %q", x)
		}
	}
}

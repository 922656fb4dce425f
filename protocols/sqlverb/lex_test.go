package sqlverb

import (
	"bytes"
	"testing"
)

// refWordEnd is wordEnd one byte at a time.
func refWordEnd(s []byte, j int) int {
	for j < len(s) && wordCont[s[j]] {
		j++
	}
	return j
}

// TestWordEnd puts every byte value at every place of a word's first
// sixteen bytes: wordEnd, which tests eight at a time, must stop where
// the byte loop stops.
func TestWordEnd(t *testing.T) {
	for c := range 256 {
		for at := range 17 {
			s := []byte("aZ_$09\x80\xffmnopqrstuvwxyzAB")
			s[at] = byte(c)
			for j := 0; j <= len(s); j++ {
				if got, want := wordEnd(s, j), refWordEnd(s, j); got != want {
					t.Fatalf("wordEnd(%q, %d) = %d, want %d", s, j, got, want)
				}
				if got, want := wordEndASCII(s, j), refWordEndASCII(s, j); got != want {
					t.Fatalf("wordEndASCII(%q, %d) = %d, want %d", s, j, got, want)
				}
			}
		}
	}
}

// refWordEndASCII is wordEndASCII one byte at a time.
func refWordEndASCII(s []byte, j int) int {
	for j < len(s) && wordCont[s[j]] && s[j] < 0x80 {
		j++
	}
	return j
}

// FuzzWordEnd checks wordEnd and wordEndASCII against the byte loop, and
// fastWord against wordEndASCII and keyword.
func FuzzWordEnd(f *testing.F) {
	f.Add([]byte("sbtest1 WHERE"), 0)
	f.Fuzz(func(t *testing.T, s []byte, j int) {
		if j < 0 || j > len(s) {
			return
		}
		if got, want := wordEnd(s, j), refWordEnd(s, j); got != want {
			t.Fatalf("wordEnd(%q, %d) = %d, want %d", s, j, got, want)
		}
		if got, want := wordEndASCII(s, j), refWordEndASCII(s, j); got != want {
			t.Fatalf("wordEndASCII(%q, %d) = %d, want %d", s, j, got, want)
		}
		if j < len(s) && (fastClass[s[j]] == fcWord || s[j] == '$') {
			checkFastWord(t, s, j)
		}
	})
}

// TestLexClass checks that the byte classes of next agree with lex: a
// byte of class lcWord starts a word and one of class lcPunct is a
// one-byte token in both dialects.
func TestLexClass(t *testing.T) {
	for c := range 256 {
		for _, d := range []Dialect{MySQL, Postgres} {
			sc := scanner{s: []byte{byte(c), ' '}, d: d, bs: true, pkAt: -1}
			switch lexClass[c] {
			case lcWord:
				if !sc.isWordByte(byte(c), true) {
					t.Errorf("%q: lcWord but no word byte in %v", byte(c), d)
				}
			case lcPunct:
				if tok := sc.lex(); tok.kind != tPunct || tok.end != 1 {
					t.Errorf("%q: lcPunct but lex reads %+v in %v", byte(c), tok, d)
				}
			case lcBlank:
			default:
				if sc.isWordByte(byte(c), true) && c != '$' {
					t.Errorf("%q: a word byte of class lcOther", byte(c))
				}
			}
		}
	}
}

func checkFastWord(t *testing.T, s []byte, i int) {
	t.Helper()
	end, k := fastWord(s, i)
	if want := refWordEndASCII(s, i+1); end != want {
		t.Fatalf("fastWord(%q, %d) ends at %d, want %d", s, i, end, want)
	}
	if want := refKeyword(s[i:end]); k != want {
		t.Fatalf("fastWord(%q, %d) = %q, want %q", s, i, kwNames[k], kwNames[want])
	}
}

// TestFastWord reads every keyword in three cases, followed by every byte,
// at the end of a text and inside one.
func TestFastWord(t *testing.T) {
	for k := kw(1); k < kwCount; k++ {
		n := kwNames[k]
		for _, w := range []string{n, string(bytes.ToLower([]byte(n))), mixCase(n), n[:len(n)-1], "x" + n} {
			for c := range 256 {
				s := append([]byte(w), byte(c))
				checkFastWord(t, s, 0)
				checkFastWord(t, append(s, " FROM t WHERE"...), 0)
			}
		}
	}
}

// FuzzLowerASCII checks lowerASCII against a byte loop.
func FuzzLowerASCII(f *testing.F) {
	f.Add([]byte("PgBench_Accounts\xc3\x89Z@[`{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := bytes.Clone(b)
		for i, c := range want {
			if 'A' <= c && c <= 'Z' {
				want[i] = c + 'a' - 'A'
			}
		}
		got := bytes.Clone(b)
		lowerASCII(got)
		if !bytes.Equal(got, want) {
			t.Fatalf("lowerASCII(%q) = %q, want %q", b, got, want)
		}
	})
}

// TestLowerASCII puts every byte at every place of a 17-byte value.
func TestLowerASCII(t *testing.T) {
	for c := range 256 {
		for at := range 17 {
			b := []byte("aZ_$09\x80\xffMNOPQRstuvWXYZ")
			b[at] = byte(c)
			want := bytes.Clone(b)
			for i, x := range want {
				if 'A' <= x && x <= 'Z' {
					want[i] = x + 'a' - 'A'
				}
			}
			got := bytes.Clone(b)
			lowerASCII(got)
			if !bytes.Equal(got, want) {
				t.Fatalf("lowerASCII(%q) = %q, want %q", b, got, want)
			}
		}
	}
}

package sqlverb

import (
	"bytes"
	"testing"
)

// refKeyword is keyword by a linear search: the reference the bucketed
// lookup must agree with.
func refKeyword(w []byte) kw {
	u := make([]byte, len(w))
	for i, c := range w {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		u[i] = c
	}
	for k := kw(1); k < kwCount; k++ {
		if string(u) == kwNames[k] {
			return k
		}
	}
	return kwNone
}

func TestKeyword(t *testing.T) {
	for k := kw(1); k < kwCount; k++ {
		n := kwNames[k]
		for _, w := range []string{n, string(bytes.ToLower([]byte(n))), mixCase(n)} {
			if got := keyword([]byte(w)); got != k {
				t.Errorf("keyword(%q) = %q, want %q", w, kwNames[got], n)
			}
			if got := keywordAt([]byte(" "+w+"\x00\xff AND x y z"), 1, 1+len(w)); got != k {
				t.Errorf("keywordAt(%q) = %q, want %q", w, kwNames[got], n)
			}
		}
	}
	for _, w := range []string{"HIGH\x7fPRIORITY", "straight\x7fjoin", "", "A", "SELECTS", "SELEC", "sel_ect", "select\x00", "\xc0ELECT", "SELECT\x80", "DESCX", "DAT", "1SELECT", "_SELECT", "FR0M", "fr\x7fm"} {
		if got, want := keyword([]byte(w)), refKeyword([]byte(w)); got != want {
			t.Errorf("keyword(%q) = %q, want %q", w, kwNames[got], kwNames[want])
		}
	}
}

// FuzzKeyword checks the bucketed lookup against a linear search.
func FuzzKeyword(f *testing.F) {
	for k := kw(1); k < kwCount; k++ {
		f.Add([]byte(kwNames[k]))
	}
	f.Fuzz(func(t *testing.T, w []byte) {
		want := refKeyword(w)
		if got := keyword(w); got != want {
			t.Errorf("keyword(%q) = %q, want %q", w, kwNames[got], kwNames[want])
		}
		// Inside a longer text, whose next 8 bytes are loaded at once.
		text := append(append([]byte("x"), w...), "\xff_Zz 9$\x00\x7f"...)
		if got := keywordAt(text, 1, 1+len(w)); got != want {
			t.Errorf("keywordAt(%q, 1, %d) = %q, want %q", text, 1+len(w), kwNames[got], kwNames[want])
		}
	})
}

func mixCase(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i += 2 {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// refMultibyteHazard tests every byte pair: the reference for
// multibyteHazard, which looks only at backslashes and backticks.
func refMultibyteHazard(text []byte) bool {
	for i := 0; i+1 < len(text); i++ {
		if c := text[i]; c >= 0x81 && c <= 0xfe && (text[i+1] == '\\' || text[i+1] == '`') {
			return true
		}
	}
	return false
}

func TestMultibyteHazard(t *testing.T) {
	for _, s := range []string{"", "\\", "\x81\\", "\x80\\", "\xff`", "\xfe`", "a\\b`c", "SELECT '\xbf\\'", "`\x81", "\\\x81", "ab\x81`", "``\\\\\x81"} {
		if got, want := multibyteHazard([]byte(s)), refMultibyteHazard([]byte(s)); got != want {
			t.Errorf("multibyteHazard(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzMultibyteHazard checks multibyteHazard against a byte-pair scan.
func FuzzMultibyteHazard(f *testing.F) {
	f.Add([]byte("SELECT '\xbf\\''"))
	f.Fuzz(func(t *testing.T, s []byte) {
		if got, want := multibyteHazard(s), refMultibyteHazard(s); got != want {
			t.Errorf("multibyteHazard(%q) = %v, want %v", s, got, want)
		}
	})
}

package l7

import "testing"

func TestPrintable(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
		has  bool
	}{
		{"abc", 10, "abc", true},
		{"a\r\nb\x00c\x7f\xffd", 10, "abcd", true},
		{"  \t", 10, "  ", false},
		{"abcdef", 3, "abc", true},
		{"", 3, "", false},
	} {
		got := string(AppendPrintable(nil, c.in, c.max))
		if got != c.want || HasPrintable(c.in) != c.has || PrintableLen(c.in, c.max) != len(c.want) {
			t.Errorf("%q/%d: got %q has=%v len=%d, want %q has=%v", c.in, c.max, got, HasPrintable(c.in), PrintableLen(c.in, c.max), c.want, c.has)
		}
		if got := string(AppendPrintable(nil, []byte(c.in), c.max)); got != c.want {
			t.Errorf("[]byte %q: got %q", c.in, got)
		}
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { _ = AppendPrintable(buf, "reason\r\n", 32) }); n != 0 {
		t.Errorf("AppendPrintable allocates %v times", n)
	}
}

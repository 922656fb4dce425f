package memcached

import (
	"bytes"
	"strings"
	"testing"
)

// lineCheck is what line and the byte loop of textReply make of data: the
// line's end and next offset when it is whole, has no control character
// but tab, is not empty and is within max, else ok false.
func lineCheck(data []byte, max int) (end, next int, ok bool) {
	p := &Parser{lim: Limits{MaxLine: max}}
	var st dirState
	end, next, err := p.line(&st, data)
	if err != nil || next == 0 || end == 0 || bytes.ContainsFunc(data[:end], func(r rune) bool { return r < ' ' }) {
		return 0, 0, false
	}
	return end, next, true
}

func checkCleanLine(t *testing.T, data []byte, max int) {
	t.Helper()
	e1, n1, ok1 := cleanLine(data, max)
	e2, n2, ok2 := lineCheck(data, max)
	// cleanLine may leave a line to the slow path (tabs), never accept
	// one the slow path refuses or cut it elsewhere.
	if ok1 && (!ok2 || e1 != e2 || n1 != n2) {
		t.Fatalf("%q (max %d): cleanLine %d %d %v, line %d %d %v", data, max, e1, n1, ok1, e2, n2, ok2)
	}
	if ok2 && !ok1 && !bytes.ContainsRune(data[:e2], '\t') {
		t.Fatalf("%q (max %d): cleanLine refused a clean line", data, max)
	}
}

var cleanLineSeeds = []string{
	"STAT pid 1234\r\n", "END\r\n", "VALUE key:1 0 5\r\nvalue\r\n", "\r\n", "\n", "a\n", "a\r", "a\rb\r\n",
	"STORED\r\nSTORED\r\n", "with\ttab\r\n", "bad\x01byte\r\n", "0123456789abcdef0123\r\n", "0123456\x7f\x80\xff89\r\n",
	"01234567\r\n", "0123456\r\n", "012345678901234\n", "no line end yet",
}

func TestCleanLine(t *testing.T) {
	for _, s := range cleanLineSeeds {
		for cut := 0; cut <= len(s); cut++ {
			for _, max := range []int{1, 4, 8, 15, 16, DefaultMaxLine} {
				checkCleanLine(t, []byte(s[:cut]), max)
			}
		}
	}
}

// FuzzCleanLine checks cleanLine against line on any input.
func FuzzCleanLine(f *testing.F) {
	for _, s := range cleanLineSeeds {
		f.Add([]byte(s), uint16(DefaultMaxLine-1))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		checkCleanLine(t, data, int(max)+1)
	})
}

func TestWordEnd(t *testing.T) {
	for _, s := range []string{"", " ", "a", "STAT", "STAT pid", "STAT pid 1", "VALUE k 0 1", "STORED", "12345678", "12345678 ",
		"1234567 ", "123456789012345678901 x", "\xff\x80 \x00", "a b c d e f g h", "  lead"} {
		want := len(s)
		if i := strings.IndexByte(s, ' '); i >= 0 {
			want = i
		}
		if got := wordEnd([]byte(s)); got != want {
			t.Errorf("wordEnd(%q) = %d, want %d", s, got, want)
		}
	}
}

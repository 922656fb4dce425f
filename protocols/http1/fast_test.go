package http1

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSpecial8 checks scanHead's 8-byte test against its byte tables: a
// word holding a byte the table refuses is always flagged, and a word of
// plain bytes never is.
func TestSpecial8(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   *[256]bool
		high uint64
	}{
		{"header", &headerByte, 0},
		{"request-line", &requestLineByte, 0x8080808080808080},
	} {
		for _, fill := range []byte{'a', ' ', '~', 0x21} {
			var w [8]byte
			for i := range w {
				w[i] = fill
			}
			if special8(binary.LittleEndian.Uint64(w[:]), tc.high) != 0 {
				t.Errorf("%s: word of %q flagged", tc.name, fill)
			}
			for b := range 256 {
				for k := range 8 {
					w[k] = byte(b)
					if !tc.ok[b] && special8(binary.LittleEndian.Uint64(w[:]), tc.high) == 0 {
						t.Errorf("%s: byte %#x at %d among %q not flagged", tc.name, b, k, fill)
					}
					w[k] = fill
				}
			}
		}
	}
}

// TestSpecial8First checks that special8's lowest flagged byte is the
// first byte of the word that is special (a control byte, DEL, or above
// 0x7f where high asks), on words mixing plain and special bytes: scanHead
// jumps to it.
func TestSpecial8First(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	pick := []byte{'a', 'Z', ' ', '~', ':', 0x21, 0x7e, 0x7f, 0x80, 0xff, 0xa0, 0x9f, 0, '\t', '\r', '\n', 0x1f, 0x20}
	for _, high := range []uint64{0, 0x8080808080808080} {
		for range 200000 {
			var w [8]byte
			for i := range w {
				if rng.IntN(3) == 0 {
					w[i] = byte(rng.IntN(256))
				} else {
					w[i] = pick[rng.IntN(len(pick))]
				}
			}
			first := 8
			for i, c := range w {
				if c < 0x20 || c == 0x7f || high != 0 && c >= 0x80 {
					first = i
					break
				}
			}
			m := special8(binary.LittleEndian.Uint64(w[:]), high)
			if got := bits.TrailingZeros64(m) >> 3; got != first {
				t.Fatalf("high %#x, word %q: first flagged byte %d, want %d", high, w, got, first)
			}
		}
	}
}

// TestPlainPath checks normalPath's copy of plain paths against appendPath
// on paths that take the copy and on near misses that must not.
func TestPlainPath(t *testing.T) {
	for _, in := range []string{
		"/", "/a", "/a/", "/a/b/c", "/api/v1/users/42/orders?page=2", "/a#frag", "/a.b/c.", "/~u/x-y_z",
		"//a", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/a/.", "/a/..", "/.well-known/x",
		"/a%2Fb", "/%61", "/a;p=1/b", "/a\\b", "/a?b/../c", "/" + string(bytes.Repeat([]byte("a"), MaxPath)),
	} {
		got, gerr := normalPath(nil, []byte(in))
		want, werr := appendPath(nil, cutQuery([]byte(in)))
		if !bytes.Equal(got, want) || gerr != werr {
			t.Errorf("%q: normalPath %q, %v; appendPath %q, %v", in, got, gerr, want, werr)
		}
	}
}

// TestFoldName checks the word compare of header names against equalFold:
// on every name in use, on random case variants of it and on tokens that
// differ from it in one byte (any token byte, "_" for "-" among them).
func TestFoldName(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 2))
	var tchars []byte
	for c := range 256 {
		if tokenChars[c] {
			tchars = append(tchars, byte(c))
		}
	}
	for _, s := range []string{"host", "upgrade", "connection", "content-length", "transfer-encoding"} {
		f := newFoldName(s)
		check := func(name []byte) {
			t.Helper()
			if got, want := f.is(name), equalFold(name, s); got != want {
				t.Fatalf("%q is %q: %v, want %v", name, s, got, want)
			}
		}
		check([]byte(s))
		check([]byte(strings.ToUpper(s)))
		check([]byte(s[1:]))
		check([]byte(s + "x"))
		for range 2000 {
			name := []byte(s)
			for i, c := range name {
				if rng.IntN(2) == 0 && 'a' <= c && c <= 'z' {
					name[i] = c - 'a' + 'A'
				}
			}
			check(name)
			name[rng.IntN(len(name))] = tchars[rng.IntN(len(tchars))]
			check(name)
		}
	}
}

// TestIndexSP checks indexSP against bytes.IndexByte on every length to
// 40 and every place of the first SP, before and after the byte loop's end.
func TestIndexSP(t *testing.T) {
	for n := range 40 {
		b := bytes.Repeat([]byte{'a'}, n)
		if got := indexSP(b); got != -1 {
			t.Fatalf("no SP in %d bytes: %d", n, got)
		}
		for k := range n {
			b[k] = ' '
			if n > k+3 {
				b[k+3] = ' '
			}
			if got, want := indexSP(b), bytes.IndexByte(b, ' '); got != want {
				t.Fatalf("%q: %d, want %d", b, got, want)
			}
			b[k] = 'a'
			if n > k+3 {
				b[k+3] = 'a'
			}
		}
	}
}

// TestChunkSize checks the fast chunk-size line against what it must take
// (1 to 10 hex digits and CRLF) and leave to the state machine (anything
// else, as n == 0).
func TestChunkSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		size int64
		n    int
	}{
		{"1000\r\n", 4096, 6},
		{"0\r\n\r\n", 0, 3},
		{"aB\r\nxx", 0xab, 4},
		{"FFFFFFFFFF\r\n", 0xFFFFFFFFFF, 12},
		{"10000000000\r\n", 0, 0}, // 11 digits: MaxBody and more
		{"00000000001\r\n", 0, 0},
		{"1;ext=1\r\n", 0, 0},
		{"1 \r\n", 0, 0},
		{"1\r", 0, 0},
		{"1", 0, 0},
		{"\r\n", 0, 0},
		{"g\r\n", 0, 0},
		{"1\n", 0, 0},
		{"1\rx", 0, 0},
		{"", 0, 0},
	} {
		if size, n := chunkSize([]byte(tc.in)); size != tc.size && tc.n > 0 || n != tc.n {
			t.Errorf("%q: %d, %d; want %d, %d", tc.in, size, n, tc.size, tc.n)
		}
	}
}

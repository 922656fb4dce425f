package http1

import (
	"bytes"
	"encoding/binary"
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
			if special8(binary.LittleEndian.Uint64(w[:]), tc.high) {
				t.Errorf("%s: word of %q flagged", tc.name, fill)
			}
			for b := range 256 {
				for k := range 8 {
					w[k] = byte(b)
					if !tc.ok[b] && !special8(binary.LittleEndian.Uint64(w[:]), tc.high) {
						t.Errorf("%s: byte %#x at %d among %q not flagged", tc.name, b, k, fill)
					}
					w[k] = fill
				}
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

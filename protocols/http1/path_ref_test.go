package http1

import (
	"bytes"
	"testing"
)

// appendPathRef is the segment-by-segment normaliser that appendPath's one
// pass replaced, kept as the reference FuzzAppendPath checks it against:
// it appends the normal form of raw, a path starting with "/" without
// query, to dst, at most MaxPath bytes. raw holds only printable ASCII.
func appendPathRef(dst, raw []byte) ([]byte, error) {
	base := len(dst)
	limit := base + MaxPath
	trailing := false
	for i := 1; ; {
		end := len(raw)
		if k := bytes.IndexByte(raw[i:], '/'); k >= 0 {
			end = i + k
		}
		seg := raw[i:end]
		if k := bytes.IndexByte(seg, ';'); k >= 0 {
			seg = seg[:k]
		}
		start := len(dst)
		if start+1 > limit {
			return dst[:base], errPathTooLong
		}
		dst = append(dst, '/')
		var err error
		if dst, err = appendSegmentRef(dst, seg, limit); err != nil {
			return dst[:base], err
		}
		switch s := dst[start+1:]; {
		case len(s) == 0 || len(s) == 1 && s[0] == '.':
			dst = dst[:start]
			trailing = true
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			dst = dst[:start]
			if k := bytes.LastIndexByte(dst[base:], '/'); k >= 0 {
				dst = dst[:base+k]
			}
			trailing = true
		default:
			if encodedDot(s) {
				return dst[:base], errEncodedDot
			}
			trailing = false
		}
		if end == len(raw) {
			break
		}
		i = end + 1
	}
	if trailing || len(dst) == base {
		if len(dst)+1 > limit {
			return dst[:base], errPathTooLong
		}
		dst = append(dst, '/')
	}
	return dst, nil
}

// appendSegmentRef decodes seg and appends it in canonical form.
func appendSegmentRef(dst, seg []byte, limit int) ([]byte, error) {
	for j := 0; j < len(seg); j++ {
		c := seg[j]
		if c == '%' {
			if j+2 >= len(seg) || !isHex(seg[j+1]) || !isHex(seg[j+2]) {
				return dst, errPercent
			}
			c = unhex(seg[j+1])<<4 | unhex(seg[j+2])
			if c == 0 {
				return dst, errPathNUL
			}
			j += 2
		}
		if keepEncoded(c) {
			if len(dst)+3 > limit {
				return dst, errPathTooLong
			}
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
			continue
		}
		if len(dst)+1 > limit {
			return dst, errPathTooLong
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// FuzzAppendPath checks appendPath's one pass against appendPathRef, the
// segment-by-segment normaliser it replaced: the same result and error for
// every path of printable ASCII, into an empty dst and into one with room.
func FuzzAppendPath(f *testing.F) {
	for _, c := range pathCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte("/a/./b/../%63;p=1//d/%7Bx%7D/e"))
	f.Add([]byte("/a%2F../b/..%5C/c\\d/%2e%2E/"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || in[0] != '/' {
			return
		}
		for _, c := range in {
			if c < 0x21 || c > 0x7e {
				return
			}
		}
		in = cutQuery(in)
		want, werr := appendPathRef(nil, in)
		got, gerr := appendPath(nil, in)
		if !bytes.Equal(got, want) || gerr != werr {
			t.Fatalf("%q: appendPath %q, %v; appendPathRef %q, %v", in, got, gerr, want, werr)
		}
		var room [MaxPath + 8]byte
		got, gerr = appendPath(append(room[:0], "xy"...), in)
		if gerr != werr || (werr == nil && string(got) != "xy"+string(want)) || (werr != nil && string(got) != "xy") {
			t.Fatalf("%q after \"xy\": appendPath %q, %v; appendPathRef %q, %v", in, got, gerr, want, werr)
		}
	})
}

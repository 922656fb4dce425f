package http1

import (
	"bytes"
	"slices"
)

// AppendNormalizedPath appends to dst the normalised form of an
// origin-form request target (a path starting with "/", with or without a
// query): the form Parse reports in Frame.Resource. The control plane can
// use it to bring rule patterns to the same form. It returns an error
// wrapping l7.ErrMalformed for a target Parse refuses, and l7.ErrTooLong
// when the result would exceed MaxPath bytes.
//
// Normalisation, in order:
//   - the query ("?…") and fragment ("#…") are dropped;
//   - the path is split into segments at "/"; in each, path parameters
//     (from the first ";") are dropped;
//   - each segment is percent-decoded, then written in a canonical form:
//     every byte raw, except these, which are written %XX with upper-case
//     hex digits: "/" and "\" (so that an encoded slash never becomes a
//     separator, as with Envoy's KEEP_UNCHANGED), "%", ";", "?", "#",
//     space, control bytes and bytes >= 0x80. %00 and invalid
//     percent-encoding are refused;
//   - empty segments are dropped (repeated slashes fold), "." and ".."
//     segments are removed (RFC 3986 5.2.4), never above the root; a path
//     ending in "/", "." or ".." keeps a final "/";
//   - a segment with an encoded slash or backslash next to a "." or ".."
//     ("a%2F..", "..%5Cb") is refused: servers that decode %2F (nginx
//     does) would resolve it.
//
// So "/%61dmin", "/./admin", "//admin", "/public/../admin",
// "/admin;jsessionid=1?x=1" all give "/admin".
func AppendNormalizedPath(dst, target []byte) ([]byte, error) {
	if len(target) == 0 || target[0] != '/' {
		return dst, errTarget
	}
	for _, c := range target {
		if c < 0x21 || c > 0x7e {
			return dst, errPathChar
		}
	}
	return normalPath(dst, target)
}

// normalPath appends the normal form of target, an origin-form target
// (starting with "/", printable ASCII) with or without a query, to dst.
// A plain path, the usual case, is its own normal form and is copied in
// one pass: no byte to decode, encode or cut at (see pathPlain), no empty
// segment but a final one ("//"), no segment starting with a dot ("/.",
// which "." and ".." segments do). Any other goes through appendPath.
func normalPath(dst, target []byte) ([]byte, error) {
	prev := byte(0)
	n := len(target)
	for i, c := range target {
		if c == '?' || c == '#' {
			n = i
			break
		}
		if !pathPlain[c] || prev == '/' && (c == '/' || c == '.') {
			// The query, if any, starts after i.
			return appendPath(dst, target[:i+len(cutQuery(target[i:]))])
		}
		prev = c
	}
	if n > MaxPath {
		return appendPath(dst, target[:n])
	}
	return append(dst, target[:n]...), nil
}

// segPlain marks the bytes a segment holds as they are in its normal
// form: pathPlain's but "/".
var segPlain = func() (t [256]bool) {
	t = pathPlain
	t['/'] = false
	return t
}()

// pathPlain marks the bytes a plain path holds as they are: printable
// ASCII but "%" (decoded), ";" (starts path parameters) and "\"
// (written encoded).
var pathPlain = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		t[c] = c != '%' && c != ';' && c != '\\'
	}
	return t
}()

// appendPath appends the normal form of raw, a path starting with "/"
// without query, to dst; it writes at most MaxPath bytes, so a dst with
// that much room never grows. raw holds only printable ASCII.
//
// One pass over raw decodes each segment into its canonical form as it
// goes; a segment is looked at again only when it is "", "." or ".."
// (dropped or popped) or holds an encoded slash or backslash (the
// encodedDot check).
func appendPath(dst, raw []byte) ([]byte, error) {
	base := len(dst)
	limit := base + MaxPath
	// Each raw byte gives at most 3 (a "\" becomes "%5C"), the final "/"
	// one more; the writes below stay within limit.
	if need := min(3*len(raw)+1, MaxPath); cap(dst)-len(dst) < need {
		dst = slices.Grow(dst, need)
	}
	out := dst[:min(cap(dst), limit)]
	w := base
	trailing := false
	for i := 1; ; {
		start := w
		if w >= len(out) {
			return dst[:base], errPathTooLong
		}
		out[w] = '/'
		w++
		slash := false // the segment holds an encoded "/" or "\"
		for i < len(raw) {
			c := raw[i]
			if segPlain[c] {
				if w >= len(out) {
					return dst[:base], errPathTooLong
				}
				out[w] = c
				w++
				i++
				continue
			}
			if c == '/' {
				break
			}
			if c == ';' {
				// Path parameters run to the segment's end.
				for i < len(raw) && raw[i] != '/' {
					i++
				}
				break
			}
			if c == '%' {
				if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
					return dst[:base], errPercent
				}
				c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
				if c == 0 {
					return dst[:base], errPathNUL
				}
				i += 2
			}
			i++
			if keepEncoded(c) {
				if w+3 > len(out) {
					return dst[:base], errPathTooLong
				}
				out[w], out[w+1], out[w+2] = '%', upperHex[c>>4], upperHex[c&15]
				w += 3
				slash = slash || c == '/' || c == '\\'
				continue
			}
			if w >= len(out) {
				return dst[:base], errPathTooLong
			}
			out[w] = c
			w++
		}
		switch s := out[start+1 : w]; {
		case len(s) == 0 || len(s) == 1 && s[0] == '.':
			w = start
			trailing = true
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			w = start
			if k := bytes.LastIndexByte(out[base:w], '/'); k >= 0 {
				w = base + k
			}
			trailing = true
		default:
			if slash && encodedDot(s) {
				return dst[:base], errEncodedDot
			}
			trailing = false
		}
		if i >= len(raw) {
			break
		}
		i++ // past the "/"
	}
	if trailing || w == base {
		if w >= len(out) {
			return dst[:base], errPathTooLong
		}
		out[w] = '/'
		w++
	}
	return out[:w], nil
}

const upperHex = "0123456789ABCDEF"

// keepEncoded reports whether byte c is written percent-encoded in a
// normalised segment.
func keepEncoded(c byte) bool {
	switch c {
	case '/', '\\', '%', ';', '?', '#':
		return true
	}
	return c <= ' ' || c >= 0x7f
}

// encodedDot reports whether a canonical segment holds an encoded slash or
// backslash with a "." or ".." part beside it.
func encodedDot(s []byte) bool {
	start, found := 0, false
	for k := 0; k+2 < len(s); k++ {
		if s[k] != '%' {
			continue
		}
		if (s[k+1] == '2' && s[k+2] == 'F') || (s[k+1] == '5' && s[k+2] == 'C') {
			if isDots(s[start:k]) {
				return true
			}
			start, found = k+3, true
		}
		k += 2
	}
	return found && isDots(s[start:])
}

func isDots(s []byte) bool {
	return (len(s) == 1 && s[0] == '.') || (len(s) == 2 && s[0] == '.' && s[1] == '.')
}

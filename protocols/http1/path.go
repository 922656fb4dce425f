package http1

import "bytes"

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
			return appendPath(dst, cutQuery(target))
		}
		prev = c
	}
	if n > MaxPath {
		return appendPath(dst, target[:n])
	}
	return append(dst, target[:n]...), nil
}

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
func appendPath(dst, raw []byte) ([]byte, error) {
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
		if dst, err = appendSegment(dst, seg, limit); err != nil {
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

const upperHex = "0123456789ABCDEF"

// appendSegment decodes seg and appends it in canonical form.
func appendSegment(dst, seg []byte, limit int) ([]byte, error) {
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

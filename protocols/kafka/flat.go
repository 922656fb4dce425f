package kafka

import "encoding/binary"

// Position-passing forms of reader's methods, for the fast walkers
// (produce, fetch): each takes the message b, the offset pos and the end
// of the body, and returns what it read and the offset after it, or an
// error (pos is then moot: the request is refused). Kept in locals, the
// offset stays in a register; reached through the walker's reader it
// lived in memory, and every read waited for the store of the one before.
// They read and refuse exactly as reader does; FuzzFastWalk checks the
// fast walkers against the interpreter, which uses reader.

func skipAt(pos, end, n int) (int, error) {
	if n < 0 || n > end-pos {
		return pos, errTruncated
	}
	return pos + n, nil
}

func i16At(b []byte, pos, end int) (int16, int, error) {
	if 2 > end-pos {
		return 0, pos, errTruncated
	}
	return int16(binary.BigEndian.Uint16(b[pos:])), pos + 2, nil
}

func i32At(b []byte, pos, end int) (int32, int, error) {
	if 4 > end-pos {
		return 0, pos, errTruncated
	}
	return int32(binary.BigEndian.Uint32(b[pos:])), pos + 4, nil
}

// uvarintAt is reader.uvarint.
func uvarintAt(b []byte, pos, end int) (uint32, int, error) {
	if pos < end && b[pos] < 0x80 {
		return uint32(b[pos]), pos + 1, nil
	}
	return uvarintLongAt(b, pos, end)
}

// The slow path: out of line, its caller stays small.
//
//go:noinline
func uvarintLongAt(b []byte, pos, end int) (uint32, int, error) {
	r := reader{b: b, pos: pos, end: end}
	v, err := r.uvarintLong()
	return v, r.pos, err
}

// arrAt is reader.length of an array (wide, not nullable): its common
// cases here, the rest and every error in lengthSlow.
func arrAt(b []byte, pos, end int, flex bool) (int, int, error) {
	if flex {
		if pos < end {
			if n := int(b[pos]) - 1; n >= 0 && n < 0x7f && n < end-pos {
				return n, pos + 1, nil
			}
		}
	} else if 4 <= end-pos {
		if n := int(int32(binary.BigEndian.Uint32(b[pos:]))); n >= 0 && n <= end-pos-4 {
			return n, pos + 4, nil
		}
	}
	return lengthSlow(b, pos, end, flex, true, false)
}

// lengthSlow is reader.length; arrAt, strAt and bytesAt read the lengths of
// nearly every request (not null, and in flexible versions below 127)
// without calling it. Out of line: its callers stay small.
//
//go:noinline
func lengthSlow(b []byte, pos, end int, flex, wide, nullable bool) (int, int, error) {
	var n int
	switch {
	case flex:
		u, next, err := uvarintAt(b, pos, end)
		if err != nil {
			return 0, pos, err
		}
		n, pos = int(u)-1, next
	case wide:
		v, next, err := i32At(b, pos, end)
		if err != nil {
			return 0, pos, err
		}
		n, pos = int(v), next
	default:
		v, next, err := i16At(b, pos, end)
		if err != nil {
			return 0, pos, err
		}
		n, pos = int(v), next
	}
	switch {
	case n == -1 && nullable:
		return -1, pos, nil
	case n < 0:
		return 0, pos, errBadLength
	case n > end-pos:
		return 0, pos, errTruncated
	}
	return n, pos, nil
}

// strAt is reader.str: the string's offset and length (-1 for null).
func strAt(b []byte, pos, end int, flex, nullable bool) (off, n, next int, err error) {
	// The common cases here, the rest and every error in lengthSlow.
	if flex {
		if pos < end {
			if n = int(b[pos]) - 1; n >= 0 && n < 0x7f && n < end-pos {
				return pos + 1, n, pos + 1 + n, nil
			}
		}
	} else if 2 <= end-pos {
		if n = int(int16(binary.BigEndian.Uint16(b[pos:]))); n >= 0 && n <= end-pos-2 {
			return pos + 2, n, pos + 2 + n, nil
		}
	}
	n, pos, err = lengthSlow(b, pos, end, flex, false, nullable)
	if err != nil || n < 0 {
		return 0, n, pos, err
	}
	return pos, n, pos + n, nil
}

// bytesAt is reader.bytes.
func bytesAt(b []byte, pos, end int, flex, nullable bool) (int, error) {
	// The common cases here, the rest and every error in lengthSlow.
	if flex {
		if pos < end {
			if n := int(b[pos]) - 1; n >= 0 && n < 0x7f && n < end-pos {
				return pos + 1 + n, nil
			}
		}
	} else if 4 <= end-pos {
		if n := int(int32(binary.BigEndian.Uint32(b[pos:]))); n >= 0 && n <= end-pos-4 {
			return pos + 4 + n, nil
		}
	}
	n, pos, err := lengthSlow(b, pos, end, flex, true, nullable)
	if err != nil || n < 0 {
		return pos, err
	}
	return pos + n, nil
}

// tagsAt is reader.tags.
func tagsAt(b []byte, pos, end int) (int, error) {
	if pos < end && b[pos] == 0 {
		return pos + 1, nil // no tagged fields, as nearly always
	}
	return tagsSlow(b, pos, end)
}

// The slow path: out of line, its caller stays small.
//
//go:noinline
func tagsSlow(b []byte, pos, end int) (int, error) {
	r := reader{b: b, pos: pos, end: end}
	err := r.tags()
	return r.pos, err
}

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
	r := reader{b: b, pos: pos, end: end}
	v, err := r.uvarintLong()
	return v, r.pos, err
}

// lengthAt is reader.length.
func lengthAt(b []byte, pos, end int, flex, wide, nullable bool) (int, int, error) {
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
	n, pos, err = lengthAt(b, pos, end, flex, false, nullable)
	if err != nil || n < 0 {
		return 0, n, pos, err
	}
	return pos, n, pos + n, nil
}

// bytesAt is reader.bytes.
func bytesAt(b []byte, pos, end int, flex, nullable bool) (int, error) {
	n, pos, err := lengthAt(b, pos, end, flex, true, nullable)
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
	r := reader{b: b, pos: pos, end: end}
	err := r.tags()
	return r.pos, err
}

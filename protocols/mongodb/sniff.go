package mongodb

import "encoding/binary"

// Sniff reports whether a client's first bytes look like MongoDB: a
// message header with a plausible messageLength (from the smallest message
// to DefaultMaxMessage), responseTo 0 and the opcode OP_MSG, OP_QUERY or
// OP_COMPRESSED; for OP_MSG, flagBits without unknown required bits and a
// body section (kind 0) first whose document fits the message; for
// OP_QUERY, a namespace that starts with a printable byte. It needs 21
// bytes (more for OP_MSG's document size) and allocates nothing.
func Sniff(first []byte) bool {
	if len(first) < headerLen+5 {
		return false
	}
	msgLen := int(int32(binary.LittleEndian.Uint32(first)))
	if msgLen < headerLen+9 || msgLen > DefaultMaxMessage {
		return false
	}
	if binary.LittleEndian.Uint32(first[8:]) != 0 {
		return false
	}
	switch binary.LittleEndian.Uint32(first[12:]) {
	case OpMsg:
		flags := binary.LittleEndian.Uint32(first[headerLen:])
		if flags&flagRequired&^(FlagChecksumPresent|FlagMoreToCome) != 0 || flags>>17 != 0 {
			return false
		}
		if first[20] != 0 || len(first) < 25 {
			return false
		}
		size := int(int32(binary.LittleEndian.Uint32(first[21:])))
		return size >= 5 && size <= msgLen-21
	case OpQuery:
		flags := binary.LittleEndian.Uint32(first[headerLen:])
		c := first[20]
		return flags>>8 == 0 && c > ' ' && c < 0x7f
	case OpCompressed:
		return msgLen >= headerLen+9
	}
	return false
}

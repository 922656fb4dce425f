package memcached

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Text replies are mostly short lines of printable ASCII ending in CRLF.
// cleanLine finds such a line and checks it in one pass, eight bytes at a
// time, where line and the control-character check of textReply took two
// (bytes.IndexByte, then a loop over each byte). Anything else (a tab, a
// control character, no LF yet, a line over the limit, a lone LF at the
// front) is left to line and the byte loop, so that errors and OpMore
// answers stay exactly theirs.

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// cleanLine returns the end of the line at the front of data and the
// offset after its line end when the line holds no byte below ' ', ends in
// LF or CRLF within max bytes, and is not empty; ok is false otherwise.
func cleanLine(data []byte, max int) (end, next int, ok bool) {
	lim := min(len(data), max+2) // the line, its CR and its LF
	i := 0
	// Most lines end within 32 bytes: four words are checked at once so
	// that the loop's exit, which depends on the line's length, is not a
	// branch mispredicted at every line.
	for ; i+32 <= lim; i += 32 {
		w := data[i : i+32 : i+32]
		m := below(w[0:]) | below(w[8:])<<8 | below(w[16:])<<16 | below(w[24:])<<24
		if m != 0 {
			i += bits.TrailingZeros32(m)
			return lineEnd(data, i, max)
		}
	}
	for i < lim {
		if i+8 > lim {
			if lim < 8 {
				for i < lim && data[i] >= ' ' {
					i++
				}
				break
			}
			i = lim - 8 // the last word overlaps bytes known clean
		}
		if m := below(data[i:]); m != 0 {
			i += bits.TrailingZeros32(m)
			break
		}
		i += 8
	}
	if i >= lim {
		return 0, 0, false
	}
	return lineEnd(data, i, max)
}

// below returns a bit mask of the first 8 bytes of b: bit k is set when
// byte k is below 0x20 or follows such a byte. Its lowest set bit is
// therefore the first byte below 0x20.
func below(b []byte) uint32 {
	x := binary.LittleEndian.Uint64(b)
	// Each byte below 0x20 sets its top bit; the borrow can only set bits
	// above the first such byte.
	m := (x - ones*0x20) &^ x & highs
	// Gather the eight top bits into one byte, byte k to bit k.
	return uint32((m >> 7) * 0x0102040810204080 >> 56)
}

// lineEnd finishes cleanLine at i, the first byte of data below ' '.
func lineEnd(data []byte, i, max int) (end, next int, ok bool) {
	switch {
	case i == 0 || i > max:
		return 0, 0, false
	case data[i] == '\n':
		return i, i + 1, true
	case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
		return i, i + 2, true
	}
	return 0, 0, false
}

// wordEnd returns the offset of the first space in line, or len(line):
// the end of its first word when line does not start with a space.
func wordEnd(line []byte) int {
	if len(line) < 8 {
		for i, c := range line {
			if c == ' ' {
				return i
			}
		}
		return len(line)
	}
	x := binary.LittleEndian.Uint64(line) ^ ones*' '
	// Each zero byte of x (a space in line) sets its top bit; the borrow
	// can only set bits above the first.
	if m := (x - ones) &^ x & highs; m != 0 {
		return bits.TrailingZeros64(m) / 8
	}
	if i := bytes.IndexByte(line[8:], ' '); i >= 0 {
		return 8 + i
	}
	return len(line)
}

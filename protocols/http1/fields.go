package http1

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Header fields are decoded in one pass over the lines scanHead found:
// fieldName checks a line's name and finds its colon, the name's length
// picks the few candidates the parser needs (Host, Content-Length,
// Transfer-Encoding, Connection, Upgrade), and a candidate is compared
// with word loads, case folded by |0x20. The value of any other field is
// not looked at again: scanHead has already checked its bytes.

// fieldName checks a header line (without its CRLF) up to its colon and
// returns the colon's offset: the name is a token directly followed by
// ':'; whitespace before the colon is refused, as is a line starting with
// whitespace (obs-fold).
func fieldName(line []byte) (int, error) {
	if len(line) == 0 {
		return 0, errHeader
	}
	if line[0] == ' ' || line[0] == '\t' {
		return 0, errObsFold
	}
	// The name is a token ended by the colon: one pass finds and checks
	// it (':' is no token byte). Words of letters and "-" (what names
	// are made of) pass 8 bytes at a time (nameWord); the table
	// loop takes the rest from the first other byte, usually the colon.
	colon := 0
	for len(line)-colon >= 8 {
		m := nameWord(binary.LittleEndian.Uint64(line[colon:]))
		if m != 0 {
			colon += bits.TrailingZeros64(m) >> 3
			if line[colon] == ':' && colon > 0 {
				return colon, nil
			}
			break
		}
		colon += 8
	}
	for colon < len(line) && tokenChars[line[colon]] {
		colon++
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		return 0, errHeader
	}
	return colon, nil
}

// nameWord flags the bytes of x (little-endian) that are not an ASCII
// letter or "-": it returns a mask with the top bit of each such
// byte set. Each byte is tested on its own, in 7 bits (so without a carry
// between bytes), and a byte with its top bit set is flagged.
func nameWord(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	v := x &^ highs
	y := v | ones*0x20                                         // letters folded to lower case
	letter := (y + ones*(0x80-'a')) &^ (y + ones*(0x80-'z'-1)) // 'a' <= y <= 'z'
	dash := ^((v ^ ones*'-') + ones*0x7f)                      // v == '-'
	return (^(letter | dash) | x) & highs
}

// shortName returns the colon's offset in a header line whose name is 1
// to 7 letters and "-" and at least 8 bytes long, found in its first word
// (Date, ETag, Server, Host, Accept…), and 0 for any other line, which
// fieldName then takes. It is small enough to be inlined into the loops
// over a head's fields.
func shortName(line []byte) int {
	if len(line) < 8 {
		return 0
	}
	c := bits.TrailingZeros64(nameWord(binary.LittleEndian.Uint64(line))) >> 3
	if c < 8 && line[c] == ':' {
		return c
	}
	return 0
}

// field splits a header line into name and value (OWS trimmed); see
// fieldName.
func field(line []byte) (name, value []byte, err error) {
	colon, err := fieldName(line)
	if err != nil {
		return nil, nil, err
	}
	return line[:colon], trimOWS(line[colon+1:]), nil
}

// trimOWS returns v without leading and trailing spaces and tabs.
func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// foldName is a header name the parser looks for, as little-endian words
// to compare a candidate with, lower case: for a name of n bytes, the
// words at offsets 0 and n-8 (and 8 when n > 16), or for n < 8 the
// 4-byte words at 0 and n-4.
type foldName struct {
	n     int
	words [3]uint64
}

// newFoldName returns the foldName of s, a constant of 4 to 24 lower-case
// letters and "-" (TestFoldName checks the ones in use).
func newFoldName(s string) foldName {
	b := []byte(s)
	f := foldName{n: len(b)}
	if len(b) < 8 {
		f.words[0] = uint64(binary.LittleEndian.Uint32(b))
		f.words[1] = uint64(binary.LittleEndian.Uint32(b[len(b)-4:]))
	} else {
		f.words[0] = binary.LittleEndian.Uint64(b)
		f.words[1] = binary.LittleEndian.Uint64(b[len(b)-8:])
		if len(b) > 16 {
			f.words[2] = binary.LittleEndian.Uint64(b[8:])
		}
	}
	return f
}

// The header names the parser needs.
var (
	nameHost             = newFoldName("host")
	nameUpgrade          = newFoldName("upgrade")
	nameConnection       = newFoldName("connection")
	nameContentLength    = newFoldName("content-length")
	nameTransferEncoding = newFoldName("transfer-encoding")
)

// is reports whether name, a token (tokenChars only, as fieldName
// checked), is f ignoring case. Setting bit 0x20 of each byte folds the
// upper-case letters to lower case and leaves every other token byte
// apart from the letters and "-" of f: the only bytes that fold to a
// lower-case letter are it and its upper case, and to "-" only "-" and
// CR, which is no token byte.
func (f *foldName) is(name []byte) bool {
	n := len(name)
	if n != f.n {
		return false
	}
	if n < 8 {
		const fold = 0x20202020
		return uint64(binary.LittleEndian.Uint32(name)|fold) == f.words[0] &&
			uint64(binary.LittleEndian.Uint32(name[n-4:])|fold) == f.words[1]
	}
	const fold = 0x2020202020202020
	return binary.LittleEndian.Uint64(name)|fold == f.words[0] &&
		binary.LittleEndian.Uint64(name[n-8:])|fold == f.words[1] &&
		(n <= 16 || binary.LittleEndian.Uint64(name[8:])|fold == f.words[2])
}

// indexSP returns the offset of the first SP in b, or -1. A request
// line's first SP ends a method of a few bytes: a byte loop finds it
// sooner than bytes.IndexByte, which takes over after 16 bytes.
func indexSP(b []byte) int {
	const short = 16
	for i := 0; i < len(b) && i < short; i++ {
		if b[i] == ' ' {
			return i
		}
	}
	if len(b) <= short {
		return -1
	}
	if k := bytes.IndexByte(b[short:], ' '); k >= 0 {
		return short + k
	}
	return -1
}

// chunkSize reads the usual chunk-size line at the front of data, 1 to 10
// hex digits (less than MaxBody) and CRLF, in one table loop: it returns
// the size and the line's length with its CRLF, or n == 0 for anything
// else (extensions, more digits, an incomplete line, an error), which the
// byte-by-byte state machine of body.chunked then takes.
func chunkSize(data []byte) (size int64, n int) {
	const maxDigits = 10 // 16^10 = 2^40 = MaxBody
	j := 0
	for ; j < len(data) && j <= maxDigits; j++ {
		v := hexVal[data[j]]
		if v > 15 {
			break
		}
		size = size<<4 | int64(v)
	}
	if j == 0 || j > maxDigits || j+1 >= len(data) || data[j] != '\r' || data[j+1] != '\n' {
		return 0, 0
	}
	return size, j + 2
}

// hexVal maps the hex digits to their values and every other byte to 0xff.
var hexVal = func() (t [256]byte) {
	for c := range t {
		t[c] = 0xff
		if isHex(byte(c)) {
			t[c] = unhex(byte(c))
		}
	}
	return t
}()

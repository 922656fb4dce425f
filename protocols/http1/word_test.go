package http1

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// wordFlags returns the byte offsets flagged in a mask of top bits.
func wordFlags(m uint64) (flags [8]bool) {
	for k := range flags {
		flags[k] = m&(0x80<<(8*k)) != 0
	}
	return flags
}

// TestCtl8 checks crlfRun's word test byte by byte, with every byte value
// at every offset among random neighbours (no carry or borrow between
// bytes): it flags exactly the control bytes, DEL, 0x80 to 0x9f and 0xff,
// so every byte headerByte refuses is flagged and every printable ASCII
// byte is not.
func TestCtl8(t *testing.T) {
	want := func(c byte) bool { return c < 0x20 || c == 0x7f || (0x80 <= c && c <= 0x9f) || c == 0xff }
	for c := range 256 {
		if !headerByte[c] && !want(byte(c)) {
			t.Fatalf("byte %#x: refused by headerByte but not flagged", c)
		}
	}
	rng := rand.New(rand.NewPCG(6, 2))
	for range 20000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
		}
		for c := range 256 {
			k := rng.IntN(8)
			w[k] = byte(c)
			got := wordFlags(ctl8(binary.LittleEndian.Uint64(w[:])))
			for i, b := range w {
				if got[i] != want(b) {
					t.Fatalf("ctl8(% x): byte %d (%#x) flagged %v", w, i, b, got[i])
				}
			}
		}
	}
}

// TestNameWord checks fieldName's word test byte by byte, with every byte
// value at every offset among random neighbours: it flags exactly the
// bytes that are not an ASCII letter or "-", all of which are token
// bytes.
func TestNameWord(t *testing.T) {
	plain := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-'
	}
	for c := range 256 {
		if plain(byte(c)) && !tokenChars[c] {
			t.Fatalf("byte %#x passes nameWord but is no token byte", c)
		}
	}
	rng := rand.New(rand.NewPCG(6, 3))
	for range 20000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
		}
		for c := range 256 {
			k := rng.IntN(8)
			w[k] = byte(c)
			got := wordFlags(nameWord(binary.LittleEndian.Uint64(w[:])))
			for i, b := range w {
				if got[i] == plain(b) {
					t.Fatalf("nameWord(% x): byte %d (%#x) flagged %v", w, i, b, got[i])
				}
			}
		}
	}
}

// TestScanHeadRef checks scanHead (with crlfRun) against scanHeadRef, the
// scanner before crlfRun (word tests that stop at every line end), on
// random heads of random lines mixing plain bytes with CR, LF, HTAB, DEL,
// other control bytes and obs-text, whole and as growing prefixes
// (OpMore, then the same bytes extended): the same length, the same need
// for more, the same error and the same line ends.
func TestScanHeadRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 5))
	pick := []byte("aZ-:; ~\t\r\n\r\n\x00\x1f\x7f\x80\x9f\xa0\xff\x20\x21")
	for n := range 200000 {
		var in []byte
		if rng.IntN(2) == 0 {
			in = append(in, "HTTP/1.1 200 OK\r\n"...)
		} else {
			in = append(in, "GET / HTTP/1.1\r\n"...)
		}
		for range rng.IntN(6) {
			for range rng.IntN(40) {
				if rng.IntN(8) == 0 {
					in = append(in, pick[rng.IntN(len(pick))])
				} else {
					in = append(in, byte('a'+rng.IntN(26)))
				}
			}
			in = append(in, "\r\n"...)
		}
		if rng.IntN(4) > 0 {
			in = append(in, "\r\n"...)
		}
		request := n%3 == 0
		step := 1 + rng.IntN(len(in))
		var h, hr headScan
		var ends, endsRef [MaxHeaders + 1]uint32
		for k := step; ; k += step {
			k = min(k, len(in))
			end, more, err := scanHead(in[:k], &h, &ends, request)
			rend, rmore, rerr := scanHeadRef(in[:k], &hr, &endsRef, request)
			if end != rend || more != rmore || err != rerr {
				t.Fatalf("%q[:%d] (request %v): %d, %d, %v; want %d, %d, %v", in, k, request, end, more, err, rend, rmore, rerr)
			}
			if err != nil || more == 0 {
				if err == nil && (h.lines != hr.lines || !slices.Equal(ends[:h.lines], endsRef[:hr.lines])) {
					t.Fatalf("%q (request %v): line ends %v; want %v", in, request, ends[:h.lines], endsRef[:hr.lines])
				}
				break
			}
			if h != hr {
				t.Fatalf("%q[:%d] (request %v): place %+v; want %+v", in, k, request, h, hr)
			}
			if k == len(in) {
				break
			}
		}
	}
}

// scanHeadRef is scanHead as of commit 2c05172, before crlfRun: the
// reference of TestScanHeadRef.
func scanHeadRef(data []byte, h *headScan, ends *[MaxHeaders + 1]uint32, request bool) (end, more int, err error) {
	// The place is kept in locals (the compiler would load and store
	// h's fields around every write to ends) and written back to h
	// before every return but an error's (the caller resets h then).
	i, lines, lineStart := h.pos, h.lines, h.lineStart
	for i < len(data) {
		// Fast path: skip the bytes that need no more than a table check;
		// the byte it stops at (CR, LF, a bad byte, a limit) goes through
		// the checks below in their order.
		ok, lim, high := &headerByte, min(len(data), MaxHead), uint64(0)
		if lines == 0 {
			if request {
				ok, high = &requestLineByte, 0x8080808080808080
			}
			lim = min(lim, lineStart+MaxStartLine)
		}
		// special8's lowest flagged byte is exact, so the word loop stops
		// at the byte to check; the table loop takes the last bytes.
		found := false
		for i+8 <= lim {
			if m := special8(binary.LittleEndian.Uint64(data[i:]), high); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				found = true
				break
			}
			i += 8
		}
		for !found && i < lim && ok[data[i]] {
			i++
		}
		if i >= len(data) {
			break
		}
		c := data[i]
		if c == '\r' {
			if i+2 > MaxHead {
				return 0, 0, errHeadTooLong
			}
			if i+1 >= len(data) {
				h.pos, h.lines, h.lineStart = i, lines, lineStart
				if i == lineStart {
					return 0, 1, nil
				}
				return 0, 3, nil // LF, and the empty line
			}
			if data[i+1] != '\n' {
				return 0, 0, errBareCR
			}
			if i == lineStart {
				if lines == 0 {
					return 0, 0, errRequestLine
				}
				h.lines = lines
				return i + 2, 0, nil
			}
			if lines >= MaxHeaders+1 {
				return 0, 0, errTooManyHdrs
			}
			ends[lines] = uint32(i)
			lines++
			i += 2
			lineStart = i
			continue
		}
		if i >= MaxHead {
			return 0, 0, errHeadTooLong
		}
		if lines == 0 && i-lineStart >= MaxStartLine {
			return 0, 0, errLineTooLong
		}
		switch {
		case c == '\n':
			return 0, 0, errBareLF
		case lines == 0 && request:
			if c != ' ' && (c < 0x21 || c > 0x7e) {
				return 0, 0, errBadChar
			}
		default:
			if c != '\t' && (c < 0x20 || c == 0x7f) {
				return 0, 0, errBadChar
			}
		}
		i++
	}
	h.pos, h.lines, h.lineStart = i, lines, lineStart
	if i == lineStart {
		return 0, 2, nil
	}
	return 0, 4, nil // CRLF, and the empty line
}

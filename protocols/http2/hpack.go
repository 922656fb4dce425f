package http2

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// HPACK errors (sentinels: they are returned on the per-message path).
var (
	errIndex   = fmt.Errorf("%w: hpack index out of range", l7.ErrMalformed)
	errInt     = fmt.Errorf("%w: hpack integer too large", l7.ErrTooLong)
	errString  = fmt.Errorf("%w: hpack string past the header block", l7.ErrMalformed)
	errHuffman = fmt.Errorf("%w: invalid hpack huffman code", l7.ErrMalformed)
	errSize    = fmt.Errorf("%w: hpack table size update above the limit", l7.ErrTooLong)
	errUpdate  = fmt.Errorf("%w: hpack table size update after a field", l7.ErrMalformed)
	errField   = fmt.Errorf("%w: hpack field longer than MaxField", l7.ErrTooLong)
)

// entryOverhead is what RFC 7541 §4.1 adds to an entry's name and value
// lengths to count its size.
const entryOverhead = 32

// entry is one dynamic table entry: its name and value are
// ring[off:off+nlen] and ring[off+nlen:off+nlen+vlen]; kind is the seen
// bit of the request field its name is (fieldKind), computed once at
// insertion so that a lookup compares no names.
type entry struct {
	off, nlen, vlen uint32
	kind            uint8
}

// decoder is the HPACK decoder state of one direction: the dynamic table,
// kept in a byte ring owned by the decoder. The ring holds twice the
// largest table size allowed so that every entry is contiguous (an entry
// that does not fit before the end starts again at 0; the RFC's 32-byte
// overhead per entry is more than the bytes wasted). Both are allocated
// on the first insertion and grow only when the allowed size grows; the
// entry ring's length is a power of two, indexed with a mask.
type decoder struct {
	ring []byte
	ents []entry
	// first is the index in ents of the oldest entry; n entries are live.
	first, n int
	// w is where the next entry's bytes go.
	w int
	// size is the table's size as RFC 7541 counts it; max the current
	// maximum (set by size updates); limit the largest size an update
	// may set (what the server's SETTINGS_HEADER_TABLE_SIZE allows,
	// capped at MaxTableSize).
	size, max, limit int
}

func (d *decoder) reset() {
	d.first, d.n, d.w, d.size = 0, 0, 0, 0
	d.max, d.limit = defaultTableSize, defaultTableSize
}

// setLimit records the table size the server allows its peer's encoder.
// The current maximum changes only with the encoder's size update.
func (d *decoder) setLimit(v uint32) {
	l := int(min(v, MaxTableSize))
	// Lenient: a server lowering the limit waits for the client's
	// update, which the server itself checks.
	d.limit = max(d.limit, l)
}

// setMax applies a dynamic table size update.
func (d *decoder) setMax(v int) error {
	if v > d.limit {
		return errSize
	}
	d.max = v
	d.evict(0)
	return nil
}

// evict drops the oldest entries until an entry of sz bytes fits.
func (d *decoder) evict(sz int) {
	for d.n > 0 && d.size+sz > d.max {
		e := d.ents[d.first]
		d.size -= int(e.nlen+e.vlen) + entryOverhead
		d.first = (d.first + 1) & (len(d.ents) - 1)
		d.n--
	}
	if d.n == 0 {
		d.first, d.w = 0, 0
	}
}

// get returns dynamic entry i (1 = newest).
func (d *decoder) get(i int) (name, value []byte, ok bool) {
	e, ok := d.entry(i)
	if !ok {
		return nil, nil, false
	}
	b := d.ring[e.off : e.off+e.nlen+e.vlen]
	return b[:e.nlen], b[e.nlen:], true
}

// entry returns dynamic entry i (1 = newest).
func (d *decoder) entry(i int) (entry, bool) {
	if uint(i-1) >= uint(d.n) {
		return entry{}, false
	}
	return d.ents[(d.first+d.n-i)&(len(d.ents)-1)], true
}

// value returns the value of entry e.
func (d *decoder) value(e entry) []byte {
	return d.ring[e.off+e.nlen : e.off+e.nlen+e.vlen]
}

// insert adds name and value as the newest entry. Value must not point
// into the ring; name may (a literal naming a dynamic entry): eviction
// moves no bytes, and name is copied, with memmove, before value.
func (d *decoder) insert(name, value []byte) {
	sz := len(name) + len(value) + entryOverhead
	if sz > d.max {
		d.evict(d.max + 1) // empties the table (RFC 7541 §4.4)
		return
	}
	d.evict(sz)
	if len(d.ring) < 2*d.limit {
		d.grow()
	}
	l := len(name) + len(value)
	if d.w+l > len(d.ring) {
		d.w = 0
	}
	copy(d.ring[d.w:], name)
	copy(d.ring[d.w+len(name):], value)
	k := (d.first + d.n) & (len(d.ents) - 1)
	d.ents[k] = entry{off: uint32(d.w), nlen: uint32(len(name)), vlen: uint32(len(value)), kind: fieldKind(name)}
	d.n++
	d.w += l
	d.size += sz
}

// grow makes the ring and the entry ring big enough for a table of
// d.limit bytes, keeping the live entries (it allocates only when the
// limit grew, at most a few times per connection).
func (d *decoder) grow() {
	if len(d.ring) >= 2*d.limit {
		return
	}
	ring := make([]byte, 2*d.limit)
	ents := make([]entry, 1<<bits.Len(uint(d.limit/entryOverhead)))
	w := 0
	for i := d.n; i >= 1; i-- {
		old, _ := d.entry(i)
		name, value, _ := d.get(i)
		e := entry{off: uint32(w), nlen: uint32(len(name)), vlen: uint32(len(value)), kind: old.kind}
		w += copy(ring[w:], name)
		w += copy(ring[w:], value)
		ents[d.n-i] = e
	}
	d.ring, d.ents, d.first, d.w = ring, ents, 0, w
}

// readInt decodes an HPACK integer with an n-bit prefix at b[0]. Values
// are bounded by 1<<24 (more than any length this package accepts).
// The per-field paths (decode, literal, readString) test the one-byte
// case inline and call readIntLong for longer integers.
func readInt(b []byte, n uint) (v int, used int, err error) {
	mask := 1<<n - 1
	if v := int(b[0]) & mask; v < mask {
		return v, 1, nil
	}
	return readIntLong(b, mask)
}

// readIntLong decodes an HPACK integer whose prefix (b[0]&mask) is full.
// It stays out of line, off the callers' hot paths.
//
//go:noinline
func readIntLong(b []byte, mask int) (v int, used int, err error) {
	v = mask
	var shift uint
	for i := 1; i < len(b); i++ {
		c := b[i]
		v += int(c&0x7f) << shift
		if v > 1<<24 {
			return 0, 0, errInt
		}
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, errString
}

// readString decodes the HPACK string at the front of b. With keep its
// decoded bytes are appended to dst (at most cap(dst) bytes in all, else
// errField, still with the bytes used); otherwise it is skipped. It
// returns dst and the bytes of b used.
func readString(dst, b []byte, keep bool) ([]byte, int, error) {
	if len(b) == 0 {
		return dst, 0, errString
	}
	huff := b[0]&0x80 != 0
	l, k := int(b[0]&0x7f), 1
	if l == 0x7f {
		var err error
		if l, k, err = readIntLong(b, 0x7f); err != nil {
			return dst, 0, err
		}
	}
	if l > len(b)-k {
		return dst, 0, errString
	}
	s := b[k : k+l]
	if !keep {
		return dst, k + l, nil
	}
	if !huff {
		if len(dst)+len(s) > cap(dst) {
			return dst, k + l, errField
		}
		return append(dst, s...), k + l, nil
	}
	dst, err := huffmanDecode(dst, s)
	return dst, k + l, err
}

// huffmanDecode appends the Huffman decoding of s to dst, within
// cap(dst). It reads the string into a 64-bit accumulator and decodes
// the codes of up to 8 bits (every letter, digit and common punctuation)
// with one lookup in huffShort; longer codes are found by length in the
// canonical tables (RFC 7541 Appendix B: codes of one length are
// consecutive).
func huffmanDecode(dst, s []byte) ([]byte, error) {
	var acc uint64 // the pending bits are the low nbits bits
	var nbits uint
	i := 0
	for {
		for nbits <= 56 && i < len(s) {
			acc = acc<<8 | uint64(s[i])
			nbits += 8
			i++
		}
		// Codes of up to 8 bits while 8 bits are pending.
		for nbits >= 8 {
			e := huffShort[byte(acc>>(nbits-8))]
			if e.len == 0 {
				break
			}
			if len(dst) == cap(dst) {
				return dst, errField
			}
			dst = append(dst, e.sym)
			nbits -= uint(e.len)
		}
		if nbits >= 8 { // a longer code
			if nbits < 30 && i < len(s) {
				continue
			}
			e, ok := huffLong(acc, nbits)
			if !ok {
				return dst, errHuffman
			}
			if len(dst) == cap(dst) {
				return dst, errField
			}
			dst = append(dst, e.sym)
			nbits -= uint(e.len)
			continue
		}
		if i < len(s) {
			continue
		}
		if nbits == 0 {
			return dst, nil
		}
		// The tail: pad with ones (a prefix of EOS) to look up.
		if e := huffShort[byte(acc<<(8-nbits))|byte(0xff>>nbits)]; e.len != 0 && uint(e.len) <= nbits {
			if len(dst) == cap(dst) {
				return dst, errField
			}
			dst = append(dst, e.sym)
			nbits -= uint(e.len)
			continue
		}
		// Padding: fewer than 8 bits, all ones.
		if acc&(1<<nbits-1) != 1<<nbits-1 {
			return dst, errHuffman
		}
		return dst, nil
	}
}

// huffLong decodes a code of 9 to 30 bits at the top of the nbits
// pending bits of acc; EOS (in a string) is not a symbol.
func huffLong(acc uint64, nbits uint) (huffEntry, bool) {
	for l := uint(9); l <= min(nbits, 30); l++ {
		code := uint32(acc>>(nbits-l)) & (1<<l - 1)
		if d := code - huffFirst[l]; code >= huffFirst[l] && d < uint32(huffCount[l]) {
			sym := huffSyms[int(huffStart[l])+int(d)]
			if sym == 256 {
				return huffEntry{}, false
			}
			return huffEntry{sym: byte(sym), len: uint8(l)}, true
		}
	}
	return huffEntry{}, false
}

// huffEntry is a decoded symbol and its code's length (0: none).
type huffEntry struct{ sym, len uint8 }

// huffShort decodes the codes of up to 8 bits: entry b is the symbol
// whose code is a prefix of byte b.
var huffShort [256]huffEntry

// The canonical decoding tables, built once from huffmanCodes and
// huffmanCodeLen: for each length l, huffCount[l] codes start at
// huffFirst[l]; their symbols are huffSyms[huffStart[l]:], in code order.
var (
	huffFirst [31]uint32
	huffCount [31]uint16
	huffStart [31]uint16
	huffSyms  [257]uint16
)

func init() {
	var (
		codes [257]uint32
		lens  [257]uint8
	)
	copy(codes[:], huffmanCodes[:])
	copy(lens[:], huffmanCodeLen[:])
	codes[256], lens[256] = 0x3fffffff, 30
	k := 0
	for l := 1; l <= 30; l++ {
		huffStart[l] = uint16(k)
		first := ^uint32(0)
		for s := 0; s < 257; s++ {
			if int(lens[s]) == l {
				first = min(first, codes[s])
			}
		}
		// Symbols of one length, in code order.
		for c := first; first != ^uint32(0); c++ {
			found := false
			for s := 0; s < 257; s++ {
				if int(lens[s]) == l && codes[s] == c {
					huffSyms[k] = uint16(s)
					k++
					huffCount[l]++
					found = true
					break
				}
			}
			if !found {
				break
			}
		}
		huffFirst[l] = first
		if first == ^uint32(0) {
			huffFirst[l] = 0
		}
	}
	if k != 257 {
		panic(errors.New("http2: huffman table is not canonical"))
	}
	for sym := range 256 {
		if l := uint(lens[sym]); l <= 8 {
			base := codes[sym] << (8 - l)
			for fill := range uint32(1) << (8 - l) {
				huffShort[base|fill] = huffEntry{sym: byte(sym), len: uint8(l)}
			}
		}
	}
}

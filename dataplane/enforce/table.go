package enforce

import (
	"encoding/binary"
	"math/bits"
)

// btab is a read-only hash table from byte strings to V, built once at
// compile time and probed per message with a []byte without converting it
// to a string. It uses open addressing (linear probing, load at most 1/2)
// on hash64 of the key; a probe costs one hash over the probed bytes (8 at
// a time) and usually one comparison. Keys of a folding table are stored
// lower-cased and probed with the value folded on the fly (hashFold,
// eqFold), so no lower-cased copy of the value is made.
//
// A table of at most smallKeys keys of at most 8 bytes each (most: a
// rule's few verbs, tables or topics) is small: its slots hold just the
// keys, and a probe compares length and first word with each, no hash
// computed.
//
// The zero btab is empty. A probe walks at most the cluster its hash falls
// in, which the table's own keys bound, whatever the probed value.
type btab[V any] struct {
	keys keyTab
	vals []V // parallel to keys.slots
}

// keyTab is the key part of a btab, apart so that probing is not generic.
type keyTab struct {
	slots []bkey // len is a power of two, or 0; when small, the keys
	fold  bool
	small bool
}

// smallKeys bounds the keys of a small keyTab.
const smallKeys = 4

// bkey is a slot: the key and its hash, never 0 when the slot is full,
// and the key's first 8 bytes as a word (keyWord), so that a probe
// compares keys of up to 8 bytes with one comparison.
type bkey struct {
	hash uint64
	w    uint64
	key  string
}

// newBtab builds a table of m's entries. With fold the keys must be
// lower-cased (ASCII) already.
func newBtab[V any](m map[string]V, fold bool) btab[V] {
	t := btab[V]{keys: keyTab{fold: fold}}
	if len(m) == 0 {
		return t
	}
	if len(m) <= smallKeys {
		t.keys.small = true
		for k := range m {
			t.keys.small = t.keys.small && len(k) <= 8
		}
	}
	if t.keys.small {
		for k, v := range m {
			t.keys.slots = append(t.keys.slots, bkey{hash: slotHash(hash64([]byte(k))), w: keyWord([]byte(k)), key: k})
			t.vals = append(t.vals, v)
		}
		return t
	}
	size := 2
	for size < 2*len(m) {
		size *= 2
	}
	t.keys.slots = make([]bkey, size)
	t.vals = make([]V, size)
	mask := uint64(size - 1)
	for k, v := range m {
		h := slotHash(hash64([]byte(k)))
		i := h & mask
		for t.keys.slots[i].hash != 0 {
			i = (i + 1) & mask
		}
		t.keys.slots[i] = bkey{hash: h, w: keyWord([]byte(k)), key: k}
		t.vals[i] = v
	}
	return t
}

// slotHash makes a hash a slot's: never 0 (the mark of an empty slot).
func slotHash(h uint64) uint64 { return h | 1 }

// get returns the value stored for k (folded when the table folds) and
// whether there is one.
func (t *btab[V]) get(k []byte) (v V, ok bool) {
	if i := t.keys.find(k, t.keys.hash(k), keyWord(k)); i >= 0 {
		return t.vals[i], true
	}
	return v, false
}

// getH is get with k's hash (k.hash of the table's fold) and keyWord
// given.
func (t *btab[V]) getH(k []byte, h, w uint64) (v V, ok bool) {
	if i := t.keys.find(k, h, w); i >= 0 {
		return t.vals[i], true
	}
	return v, false
}

// hash is k's hash for t: hashFold when t folds, else hash64; 0 when t
// is empty or small (find does not use it).
func (t *keyTab) hash(k []byte) uint64 {
	if len(t.slots) == 0 || t.small {
		return 0
	}
	if t.fold {
		return hashFold(k)
	}
	return hash64(k)
}

// find returns the slot holding k, whose hash (hash64 or hashFold; any
// when t is small) is h and whose keyWord is w (not folded), or -1. Keys
// of up to 8 bytes compare as one word.
func (t *keyTab) find(k []byte, h, w uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	if t.fold {
		w = lower8(w)
	}
	if t.small {
		// Keys of at most 8 bytes: length and word are the whole key.
		for i := range t.slots {
			if s := &t.slots[i]; s.w == w && len(s.key) == len(k) {
				return i
			}
		}
		return -1
	}
	h = slotHash(h)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.hash == 0 {
			return -1
		}
		if s.hash == h && s.w == w && len(s.key) == len(k) && (len(k) <= 8 || t.eqRest(s.key, k)) {
			return int(i)
		}
	}
}

// eqRest reports whether k[8:], folded when t folds, is key[8:]; len(k)
// == len(key) > 8.
func (t *keyTab) eqRest(key string, k []byte) bool {
	if t.fold {
		return eqFold(key[8:], k[8:])
	}
	return key[8:] == string(k[8:])
}

// keyWord loads the first 8 bytes of b little-endian, zero-padded when b
// is shorter (0 for an empty b).
func keyWord(b []byte) uint64 {
	if len(b) >= 8 {
		return binary.LittleEndian.Uint64(b)
	}
	if len(b) == 0 {
		return 0
	}
	return tailWord(b)
}

// probe is a value to match with its hashes (hash64 and hashFold), each
// computed once, when a table of its kind is first probed: a value that
// only case-sensitive tables are probed with (SQL tables, Kafka topics)
// is not folded.
type probe struct {
	b []byte
	w uint64    // keyWord(b)
	h [2]uint64 // slotHash of hash64, hashFold; 0: not computed yet
}

func (p *probe) set(b []byte) {
	p.b = b
	p.w = keyWord(b)
	p.h = [2]uint64{}
}

// hash returns p.b's hash for a table that folds or not, as slotHash
// makes it (find takes either).
func (p *probe) hash(fold bool) uint64 {
	if h := p.h[boolIndex(fold)]; h != 0 {
		return h
	}
	return p.fill(fold)
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fill computes, keeps and returns p.b's hash for a table that folds or
// not, as slotHash makes it (find takes either). Callers read p.h first:
// the check inlines, the hashing does not.
func (p *probe) fill(fold bool) uint64 {
	if n := len(p.b); n > 0 && n <= 8 {
		return p.fillShort(fold)
	}
	if fold {
		p.h[1] = slotHash(hashFold(p.b))
		return p.h[1]
	}
	p.h[0] = slotHash(hash64(p.b))
	return p.h[0]
}

// fillShort is fill for a value of 1 to 8 bytes: hash64's one step, from
// the word at hand.
func (p *probe) fillShort(fold bool) uint64 {
	w := p.w
	if fold {
		w = lower8(w)
	}
	h := slotHash(mix(mix(uint64(len(p.b))^hashK0^w, hashK1), hashK0))
	p.h[boolIndex(fold)] = h
	return h
}

// Multipliers of the hash (those of wyhash).
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash64 hashes b, 8 bytes per step. It need not resist crafted
// collisions: the keys come from the policy, and a probed value only picks
// where in the table the walk starts.
func hash64(b []byte) uint64 {
	h := uint64(len(b)) ^ hashK0
	for len(b) >= 8 {
		h = mix(h^binary.LittleEndian.Uint64(b), hashK1)
		b = b[8:]
	}
	if len(b) > 0 {
		h = mix(h^tailWord(b), hashK1)
	}
	return mix(h, hashK0)
}

// hashFold is hash64 of b lower-cased (ASCII).
func hashFold(b []byte) uint64 {
	h := uint64(len(b)) ^ hashK0
	for len(b) >= 8 {
		h = mix(h^lower8(binary.LittleEndian.Uint64(b)), hashK1)
		b = b[8:]
	}
	if len(b) > 0 {
		h = mix(h^lower8(tailWord(b)), hashK1)
	}
	return mix(h, hashK0)
}

// tailWord loads the 1 to 7 bytes of b little-endian, zero-padded.
func tailWord(b []byte) uint64 {
	var w uint64
	switch n := len(b); {
	case n >= 4:
		w = uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<(8*(n-4))
	case n >= 2:
		w = uint64(binary.LittleEndian.Uint16(b)) | uint64(b[n-1])<<(8*(n-1))
	default:
		w = uint64(b[0])
	}
	return w
}

// lower8 lower-cases the ASCII letters among the 8 bytes of w; bytes of
// 0x80 and above stay as they are (as lowerInto does).
func lower8(w uint64) uint64 {
	const ones = 0x0101010101010101
	low7 := w & (0x7f * ones)
	geA := low7 + (0x80-'A')*ones   // high bit: byte&0x7f >= 'A'
	gtZ := low7 + (0x80-'Z'-1)*ones // high bit: byte&0x7f > 'Z'
	upper := geA &^ gtZ &^ w & (0x80 * ones)
	return w | upper>>2
}

// upper8 upper-cases the ASCII letters among the 8 bytes of w; bytes of
// 0x80 and above stay as they are (as upperInto does).
func upper8(w uint64) uint64 {
	const ones = 0x0101010101010101
	low7 := w & (0x7f * ones)
	gea := low7 + (0x80-'a')*ones   // high bit: byte&0x7f >= 'a'
	gtz := low7 + (0x80-'z'-1)*ones // high bit: byte&0x7f > 'z'
	lower := gea &^ gtz &^ w & (0x80 * ones)
	return w &^ (lower >> 2)
}

// eqFold reports whether b lower-cased (ASCII) equals key, which is
// lower-case already; len(key) == len(b).
func eqFold(key string, b []byte) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		k := uint64(key[i]) | uint64(key[i+1])<<8 | uint64(key[i+2])<<16 | uint64(key[i+3])<<24 |
			uint64(key[i+4])<<32 | uint64(key[i+5])<<40 | uint64(key[i+6])<<48 | uint64(key[i+7])<<56
		if lower8(binary.LittleEndian.Uint64(b[i:])) != k {
			return false
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != key[i] {
			return false
		}
	}
	return true
}

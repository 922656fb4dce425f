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
// The zero btab is empty. A probe walks at most the cluster its hash falls
// in, which the table's own keys bound, whatever the probed value.
type btab[V any] struct {
	keys keyTab
	vals []V // parallel to keys.slots
}

// keyTab is the key part of a btab, apart so that probing is not generic.
type keyTab struct {
	slots []bkey // len is a power of two, or 0
	fold  bool
}

// bkey is a slot: the key and its hash, never 0 when the slot is full.
type bkey struct {
	hash uint64
	key  string
}

// newBtab builds a table of m's entries. With fold the keys must be
// lower-cased (ASCII) already.
func newBtab[V any](m map[string]V, fold bool) btab[V] {
	t := btab[V]{keys: keyTab{fold: fold}}
	if len(m) == 0 {
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
		t.keys.slots[i] = bkey{hash: h, key: k}
		t.vals[i] = v
	}
	return t
}

// slotHash makes a hash a slot's: never 0 (the mark of an empty slot).
func slotHash(h uint64) uint64 { return h | 1 }

// get returns the value stored for k (folded when the table folds) and
// whether there is one.
func (t *btab[V]) get(k []byte) (v V, ok bool) {
	if i := t.keys.find(k, t.keys.hash(k)); i >= 0 {
		return t.vals[i], true
	}
	return v, false
}

// getH is get with k's hash given (k.hash of the table's fold).
func (t *btab[V]) getH(k []byte, h uint64) (v V, ok bool) {
	if i := t.keys.find(k, h); i >= 0 {
		return t.vals[i], true
	}
	return v, false
}

// hash is k's hash for t: hashFold when t folds, else hash64.
func (t *keyTab) hash(k []byte) uint64 {
	if len(t.slots) == 0 {
		return 0
	}
	if t.fold {
		return hashFold(k)
	}
	return hash64(k)
}

// find returns the slot holding k, whose hash (hash64 or hashFold) is h,
// or -1.
func (t *keyTab) find(k []byte, h uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	h = slotHash(h)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.hash == 0 {
			return -1
		}
		if s.hash == h && len(s.key) == len(k) {
			if t.fold {
				if eqFold(s.key, k) {
					return int(i)
				}
			} else if s.key == string(k) {
				return int(i)
			}
		}
	}
}

// probe is a value to match with its hashes (hash64 and hashFold), each
// computed once, when a table of its kind is first probed: a value that
// only case-sensitive tables are probed with (SQL tables, Kafka topics)
// is not folded.
type probe struct {
	b    []byte
	h    [2]uint64 // hash64, hashFold
	have [2]bool
}

func (p *probe) set(b []byte) {
	p.b = b
	p.have = [2]bool{}
}

// hash returns p.b's hash for a table that folds or not.
func (p *probe) hash(fold bool) uint64 {
	if fold {
		if !p.have[1] {
			p.h[1], p.have[1] = hashFold(p.b), true
		}
		return p.h[1]
	}
	if !p.have[0] {
		p.h[0], p.have[0] = hash64(p.b), true
	}
	return p.h[0]
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

package enforce

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// randBytes returns n random bytes drawn mostly from letters of both cases,
// with some punctuation and bytes of 0x80 and above (which never fold).
func randBytes(rng *rand.Rand, n int) []byte {
	const alpha = "aAzZ@[`{mM/._-\x80\xc1\xda\xff09"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[rng.IntN(len(alpha))]
	}
	return b
}

func lowerCopy(b []byte) []byte {
	out := make([]byte, len(b))
	lowerInto(out, b)
	return out
}

func TestHashFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		for range 50 {
			b := randBytes(rng, n)
			low := lowerCopy(b)
			if got, want := hashFold(b), hash64(low); got != want {
				t.Fatalf("hashFold(%q) = %x, hash64 of it lower-cased = %x", b, got, want)
			}
			var p probe
			p.set(b)
			if hf, h := p.hash(true), p.hash(false); h != slotHash(hash64(b)) || hf != slotHash(hash64(low)) || p.hash(true) != hf {
				t.Fatalf("probe %q: hashes %x, %x; want %x, %x", b, h, hf, slotHash(hash64(b)), slotHash(hash64(low)))
			}
			if !eqFold(string(low), b) {
				t.Fatalf("eqFold(%q, %q) = false", low, b)
			}
			if n > 0 {
				other := bytes.Clone(low)
				other[rng.IntN(n)] ^= 0x01
				if eqFold(string(other), b) {
					t.Fatalf("eqFold(%q, %q) = true", other, b)
				}
			}
		}
	}
	for c := range 256 {
		w := uint64(c) * 0x0101010101010101
		want := uint64(c)
		if 'A' <= c && c <= 'Z' {
			want += 'a' - 'A'
		}
		if got := lower8(w); got != want*0x0101010101010101 {
			t.Fatalf("lower8(%#x) = %#x", w, got)
		}
	}
}

// TestUpperVerb checks upperVerb (upper8 for verbs of up to 8 bytes)
// against upperInto for every byte at every position and for random
// verbs of every length, and that it refuses empty and long verbs.
func TestUpperVerb(t *testing.T) {
	var dst [l7.MaxVerb]byte
	for c := range 256 {
		for n := 1; n <= 9; n++ {
			for at := range n {
				v := bytes.Repeat([]byte{'x'}, n)
				v[at] = byte(c)
				want := make([]byte, n)
				upperInto(want, v)
				if got := upperVerb(&dst, v); !bytes.Equal(got, want) {
					t.Fatalf("upperVerb(%q) = %q, want %q", v, got, want)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= l7.MaxVerb; n++ {
		v := randBytes(rng, n)
		want := make([]byte, n)
		upperInto(want, v)
		if got := upperVerb(&dst, v); !bytes.Equal(got, want) {
			t.Fatalf("upperVerb(%q) = %q, want %q", v, got, want)
		}
	}
	if upperVerb(&dst, nil) != nil || upperVerb(&dst, make([]byte, l7.MaxVerb+1)) != nil {
		t.Fatal("upperVerb of an empty or too long verb is not nil")
	}
}

func TestHashSpreads(t *testing.T) {
	// Keys that differ only in length or in their last bytes must not
	// collide (the tail word and the length are both hashed).
	seen := map[uint64]string{}
	for _, k := range []string{"", "a", "a\x00", "a\x00\x00", "abcdefgh", "abcdefgh\x00", "abcdefghi", "/svc001/items", "/svc001/itemt", "/svc002/items"} {
		h := hash64([]byte(k))
		if prev, ok := seen[h]; ok {
			t.Fatalf("hash64(%q) = hash64(%q)", k, prev)
		}
		seen[h] = k
	}
}

func TestBtab(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	// Keys of up to 9 bytes make small tables (smallKeys keys of at most 8
	// bytes, probed without hashing) and keys just over their bound.
	for _, maxLen := range []int{24, 10} {
		for _, fold := range []bool{false, true} {
			for _, size := range []int{0, 1, 2, 3, 4, 5, 7, 100, 1000} {
				m := map[string]int{}
				for len(m) < size {
					k := randBytes(rng, rng.IntN(maxLen))
					if fold {
						k = lowerCopy(k)
					}
					m[string(k)] = len(m) + 1
				}
				tab := newBtab(m, fold)
				if small := size > 0 && size <= smallKeys && maxLen <= 9; small && !tab.keys.small {
					t.Fatalf("fold %v size %d: not small", fold, size)
				}
				var probes [][]byte
				for k, v := range m {
					probe := []byte(k)
					if fold {
						probe = randCase(rng, probe)
					}
					if got, ok := tab.get(probe); !ok || got != v {
						t.Fatalf("fold %v size %d: get(%q) = %d, %v; want %d", fold, size, probe, got, ok, v)
					}
					// Near misses: one byte more, one less, the last changed.
					probes = append(probes, append([]byte(k), 'x'), append([]byte(k), 0))
					if len(k) > 0 {
						probes = append(probes, []byte(k[:len(k)-1]), append([]byte(k[:len(k)-1]), k[len(k)-1]^1))
					}
				}
				for range 2000 {
					probes = append(probes, randBytes(rng, rng.IntN(maxLen)))
				}
				for _, k := range probes {
					want, wantOK := m[string(k)]
					if fold {
						want, wantOK = m[string(lowerCopy(k))]
					}
					if got, ok := tab.get(k); ok != wantOK || got != want {
						t.Fatalf("fold %v size %d: get(%q) = %d, %v; want %d, %v", fold, size, k, got, ok, want, wantOK)
					}
				}
			}
		}
	}
}

// randCase upper-cases some of the ASCII letters of b.
func randCase(rng *rand.Rand, b []byte) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if 'a' <= c && c <= 'z' && rng.IntN(2) == 0 {
			out[i] = c - ('a' - 'A')
		}
	}
	return out
}

// TestTemplateChain covers templates whose literal segments form a chain of
// one-child nodes (tnode.one), compared rather than looked up, with and
// without fold_case.
func TestTemplateChain(t *testing.T) {
	pp := &bulkheadv1.ProxyPolicy{Segment: "api", Namespace: "shop", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Ports: []*bulkheadv1.Port{port(80, "http")},
		Ingress: []*bulkheadv1.Rule{
			{Name: "shop/api/a", Ports: []*bulkheadv1.Port{port(80, "http")}, L7: []*bulkheadv1.L7Rule{
				{Resources: pats(tmpl("/svc/items/{id}"), fold(tmpl("/Docs/Guide/{*}")))},
			}},
		}}
	p := mustCompileL7(t, pp, nil)
	c := p.Inbound(netip.MustParseAddr("198.18.9.9"), 80)
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/svc/items/1", true},
		{"/svc/items/abc", true},
		{"/svc/items/", false},
		{"/svc/items", false},
		{"/svc/items/1/2", false},
		{"/svcx/items/1", false},
		{"/sv/items/1", false},
		{"/svc/itemsx/1", false},
		{"/svc/item/1", false},
		{"/SVC/items/1", false},
		{"svc/items/1", false},
		{"//svc/items/1", false},
		{"/docs/guide/x", true},
		{"/DOCS/GUIDE/x/y", true},
		{"/docs/guide/", false},
		{"/docs/guide", false},
		{"/docs/guidex/y", false},
		{"/docsx/guide/y", false},
	} {
		d := c.Message(frame("GET", tc.path))
		if got := d.Verdict == Allow; got != tc.ok {
			t.Errorf("%s: allowed %v, want %v (%+v)", tc.path, got, tc.ok, d)
		}
	}
}

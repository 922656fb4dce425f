package http2

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// TestHuffmanDifferential: the table-driven decoder accepts and rejects
// the same strings as x/net's hpack.HuffmanDecode, with the same output,
// for random strings biased towards long codes and EOS padding, and for
// every string of up to two bytes.
func TestHuffmanDifferential(t *testing.T) {
	check := func(s []byte) {
		t.Helper()
		want, werr := hpack.HuffmanDecodeToString(s)
		got, err := huffmanDecode(make([]byte, 0, 4*len(s)+8), s)
		if (err == nil) != (werr == nil) || (err == nil && string(got) != want) {
			t.Fatalf("%x: got %q, %v; x/net %q, %v", s, got, err, want, werr)
		}
	}
	for a := range 256 {
		check([]byte{byte(a)})
		for b := range 256 {
			check([]byte{byte(a), byte(b)})
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 0, 64)
	for range 200000 {
		buf = buf[:rng.IntN(40)]
		for i := range buf {
			buf[i] = byte(rng.Uint32())
			if rng.IntN(3) == 0 {
				buf[i] = 0xff
			}
		}
		check(buf)
		// A valid encoding with its last byte's padding changed.
		enc := hpack.AppendHuffmanString(buf[:0], string(buf[:min(len(buf), 20)]))
		check(enc)
		if len(enc) > 0 {
			enc[len(enc)-1] ^= 1
			check(enc)
		}
	}
}

// TestHostAndPathCache: the host and the normal path reused from the
// previous request are those of the current request's values, however
// the values alternate (dynamic table hits, literals, host and
// :authority).
func TestHostAndPathCache(t *testing.T) {
	c := newClient(t)
	type req struct{ path, auth, host string }
	reqs := []req{
		{"/a", "A.example:1", ""}, {"/a", "A.example:1", ""}, {"/b/../c", "b.example", ""},
		{"/a", "A.example:1", ""}, {"/a", "", "Other.Example."}, {"/a", "A.example:1", ""},
		{"/a", "A.example:2", ""}, {"/%2e%2e/x", "A.example:2", ""}, {"/a", "a.EXAMPLE:1", ""},
	}
	for _, r := range reqs {
		fields := [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", r.path}}
		if r.auth != "" {
			fields = append(fields, [2]string{":authority", r.auth})
		}
		if r.host != "" {
			fields = append(fields, [2]string{"host", r.host})
		}
		c.request(fields, true, 0)
	}
	got := frames(parseAll(t, NewParser(), l7.DirRequest, c.buf.Bytes(), 0))
	if len(got) != len(reqs) {
		t.Fatalf("got %d frames, want %d", len(got), len(reqs))
	}
	for i, r := range reqs {
		// What a fresh parser makes of this request alone.
		one := newClient(t)
		fields := [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", r.path}}
		if r.auth != "" {
			fields = append(fields, [2]string{":authority", r.auth})
		}
		if r.host != "" {
			fields = append(fields, [2]string{"host", r.host})
		}
		one.request(fields, true, 0)
		want := frames(parseAll(t, NewParser(), l7.DirRequest, one.buf.Bytes(), 0))
		if len(want) != 1 {
			t.Fatalf("request %d alone: %d frames", i, len(want))
		}
		if got[i].resource != want[0].resource || got[i].aux != want[0].aux {
			t.Errorf("request %d: got %q %q, alone %q %q", i, got[i].resource, got[i].aux, want[0].resource, want[0].aux)
		}
	}
}

// TestTableRingNameInPlace: inserting entries whose name is another
// live entry's name in the ring (as literal does for a literal with an
// indexed name) keeps every entry whole and in order, as the ring wraps,
// evicts the entry the name came from, and grows (the name then points
// into the old ring).
func TestTableRingNameInPlace(t *testing.T) {
	var d decoder
	d.reset()
	rng := rand.New(rand.NewPCG(9, 10))
	var model [][2]string // newest first
	size := 0
	for i := range 20000 {
		name := []byte(fmt.Sprintf("name-%d", i))
		if d.n > 0 && rng.IntN(4) != 0 {
			k := 1 + rng.IntN(d.n)
			if rng.IntN(2) == 0 {
				k = d.n // the oldest, the one eviction drops first
			}
			name, _, _ = d.get(k)
		}
		if i == 10000 {
			d.setLimit(3 * defaultTableSize)
			if err := d.setMax(3 * defaultTableSize); err != nil {
				t.Fatal(err)
			}
		}
		value := strings.Repeat(string(rune('a'+i%26)), rng.IntN(700))
		m := [2]string{string(name), value}
		d.insert(name, []byte(value))
		model = append([][2]string{m}, model...)
		size += len(m[0]) + len(m[1]) + 32
		for size > d.max {
			last := model[len(model)-1]
			size -= len(last[0]) + len(last[1]) + 32
			model = model[:len(model)-1]
		}
		if d.n != len(model) || d.size != size {
			t.Fatalf("insert %d: %d entries of %d bytes, want %d of %d", i, d.n, d.size, len(model), size)
		}
		for k, e := range model {
			n, v, ok := d.get(k + 1)
			if !ok || string(n) != e[0] || string(v) != e[1] {
				t.Fatalf("insert %d: entry %d = %q, want %q", i, k+1, n, e[0])
			}
		}
	}
}

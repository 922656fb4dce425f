package dns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// fastCases are queries at the edges of fastQuery's shape: each must give
// the same frame or error through Parse as through slowQuery alone.
func fastCases() [][]byte {
	long63 := strings.Repeat("a", 63)
	// 3×64 + 61 = 253 bytes with dots: the longest name dnsmessage takes.
	longest := long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 60) + "."
	var cs [][]byte
	for _, c := range requestCases {
		if len(c.in) > 2 {
			cs = append(cs, c.in[2:])
		}
	}
	cs = append(cs,
		qDNSSEC,
		query(1, "MiXeD.Example.TEST.", tA),
		query(2, ".", tA, withEDNS(false)),
		query(3, longest, tA),
		query(4, longest[:len(longest)-2]+".", tA),
		query(5, "a.test.", dnsmessage.Type(65280), withEDNS(true)),
	)
	// The same query cut short, with a dot in a label, with a compression
	// pointer, with a second additional, with a non-root OPT, with OPT
	// RDATA past the end, and with trailing bytes.
	q := query(6, "a.example.test.", tA, withEDNS(true))
	for i := headerLen; i < len(q); i++ {
		cs = append(cs, q[:i])
	}
	dot := append([]byte(nil), q...)
	dot[headerLen+1] = '.'
	ptr := append(append([]byte(nil), q[:headerLen]...), 0xC0, 12, 0, 1, 0, 1)
	two := append([]byte(nil), q...)
	two[11] = 2
	owned := append([]byte(nil), q...)
	owned[len(owned)-11] = 1
	past := append([]byte(nil), q...)
	past[len(past)-1] = 9
	cs = append(cs, dot, ptr, two, owned, past, append(append([]byte(nil), q...), 1, 2, 3))
	// Names around dnsmessage's limit (with a dot after each label,
	// shorter than 254 bytes), built by hand: the last label 60 to 63
	// bytes long after three of 63.
	for last := 60; last <= 63; last++ {
		m := append([]byte(nil), q[:headerLen]...)
		m[11] = 0 // no additional
		for _, l := range []int{63, 63, 63, last} {
			m = append(append(m, byte(l)), strings.Repeat("x", l)...)
		}
		cs = append(cs, append(m, 0, 0, 1, 0, 1))
	}
	return cs
}

func TestFastQuery(t *testing.T) {
	for _, msg := range fastCases() {
		checkFast(t, msg)
	}
	for _, name := range l7test.Recordings(t, ".req") {
		for rec := l7test.ReadFile(t, name); len(rec) >= 2 && len(rec) >= 2+int(be16(rec)); rec = rec[2+int(be16(rec)):] {
			checkFast(t, rec[2:2+int(be16(rec))])
		}
	}
	// The recorded queries and the benchmark's take the fast path.
	p := NewParser()
	var f l7.Frame
	if !p.fastQuery(qDNSSEC, &f) {
		t.Errorf("fastQuery(qDNSSEC) = false, want true")
	}
}

// checkFast compares parseQuery (fast path first) with slowQuery.
func checkFast(t *testing.T, msg []byte) {
	t.Helper()
	var fast, slow l7.Frame
	errFast := NewParser().parseQuery(msg, &fast)
	errSlow := NewParser().slowQuery(msg, &slow)
	if errFast != errSlow {
		t.Fatalf("%x: parseQuery: %v, slowQuery: %v", msg, errFast, errSlow)
	}
	if errFast != nil {
		return
	}
	if diff := cmp.Diff(frameView(&slow), frameView(&fast)); diff != "" {
		t.Fatalf("%x: frame (-slow +fast):\n%s", msg, diff)
	}
}

type view struct {
	Verb, Resource, Aux string
	Args                int
	Unordered           bool
	NilResource         bool
}

func frameView(f *l7.Frame) view {
	return view{string(f.Verb), string(f.Resource), string(f.Aux), f.Args, f.Unordered, f.Resource == nil}
}

// FuzzFastQuery checks that fastQuery, where it answers, gives slowQuery's
// frame, and that parseQuery's error is slowQuery's.
func FuzzFastQuery(f *testing.F) {
	for _, msg := range fastCases() {
		f.Add(msg)
	}
	for _, name := range l7test.Recordings(f, ".req") {
		for rec := l7test.ReadFile(f, name); len(rec) >= 2 && len(rec) >= 2+int(be16(rec)); rec = rec[2+int(be16(rec)):] {
			f.Add(rec[2 : 2+int(be16(rec))])
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkFast(t, msg)
	})
}

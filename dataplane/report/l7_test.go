package report

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// httpKey is a message key on port 80 with the given L7 detail.
func httpKey(a *Aggregator, verb, resource, aux string, more ...string) Key {
	k := messageKey(a, ipCart, ipRedis, verb, "", enforce.Allow)
	k.DstPort = 80
	k.Proto = a.Intern("http")
	var m [][]byte
	for _, s := range more {
		m = append(m, []byte(s))
	}
	k.SetL7([]byte(resource), []byte(aux), m)
	return k
}

func TestL7Detail(t *testing.T) {
	a := NewAggregator(100)
	add := func(k Key, n int) {
		for range n {
			kk := k
			a.AddDecision(&kk, enforce.Decision{Verdict: enforce.Allow, Rule: "shop/api/r"}, 10)
		}
	}
	add(httpKey(a, "GET", "/users/1", "api.example.com"), 3)
	add(httpKey(a, "GET", "/users/2", "api.example.com"), 1)
	add(httpKey(a, "GET", "/users/1", "other.example.com"), 1)
	add(httpKey(a, "GET", "", "/users/1"), 1) // resource and aux are not one string
	add(httpKey(a, "SELECT", "users", "shop", "orders", "items"), 2)
	add(httpKey(a, "SELECT", "users", "shop", "items", "orders"), 1) // order matters
	add(httpKey(a, "SELECT", "users", "shop", "orders"), 1)
	add(httpKey(a, "SELECT", "users", "shop", "ab", "c"), 1) // boundaries matter
	add(httpKey(a, "SELECT", "users", "shop", "a", "bc"), 1)
	add(httpKey(a, "GET", "", ""), 1) // no detail
	flows, _ := a.Drain(time.Now())
	type got struct {
		verb, res, aux string
		more           []string
		count          uint64
	}
	var gs []got
	for _, f := range flows {
		gs = append(gs, got{f.Verb, f.Resource, f.Aux, f.MoreResources, f.Count})
	}
	want := []got{
		{"GET", "", "", nil, 1},
		{"GET", "", "/users/1", nil, 1},
		{"GET", "/users/1", "api.example.com", nil, 3},
		{"GET", "/users/1", "other.example.com", nil, 1},
		{"GET", "/users/2", "api.example.com", nil, 1},
		{"SELECT", "users", "shop", []string{"a", "bc"}, 1},
		{"SELECT", "users", "shop", []string{"ab", "c"}, 1},
		{"SELECT", "users", "shop", []string{"items", "orders"}, 1},
		{"SELECT", "users", "shop", []string{"orders"}, 1},
		{"SELECT", "users", "shop", []string{"orders", "items"}, 2},
	}
	if !slices.EqualFunc(gs, want, func(x, y got) bool {
		return x.verb == y.verb && x.res == y.res && x.aux == y.aux && slices.Equal(x.more, y.more) && x.count == y.count
	}) {
		t.Errorf("flows:\n got %+v\nwant %+v", gs, want)
	}
}

func TestSetVerbClearsL7(t *testing.T) {
	a := NewAggregator(10)
	k := httpKey(a, "GET", "/secret", "host")
	k.SetVerb([]byte("PING"), nil)
	a.Add(&k, 1)
	k.SetFrame(&l7.Frame{Verb: []byte("get"), Resource: []byte("user:42")}, false) // a Redis key: not reported
	a.Add(&k, 1)
	flows, _ := a.Drain(time.Now())
	if len(flows) != 2 {
		t.Fatalf("%d flows", len(flows))
	}
	for _, f := range flows {
		if f.Resource != "" || f.Aux != "" || f.MoreResources != nil {
			t.Errorf("flow %s carries detail %q %q %q", f.Verb, f.Resource, f.Aux, f.MoreResources)
		}
	}
}

func TestL7Truncation(t *testing.T) {
	long := strings.Repeat("r", MaxResource+1)
	cut := strings.Repeat("r", MaxResource-len(Truncated)) + Truncated
	var many [][]byte
	for i := range MaxMore + 3 {
		many = append(many, fmt.Appendf(nil, "t%d", i))
	}
	manyWant := make([]string, 0, MaxMore)
	for i := range MaxMore - 1 {
		manyWant = append(manyWant, fmt.Sprint("t", i))
	}
	manyWant = append(manyWant, Truncated)
	overflowFrame := &l7.Frame{Verb: []byte("select")}
	for i := range l7.MaxResources + 1 {
		overflowFrame.AddResource(fmt.Appendf(nil, "t%d", i))
	}
	cases := []struct {
		name     string
		set      func(k *Key) bool
		ok       bool
		res, aux string
		more     []string
	}{
		{"within bounds", func(k *Key) bool {
			return k.SetL7([]byte(strings.Repeat("r", MaxResource)), []byte(strings.Repeat("a", MaxAux)), [][]byte{[]byte(strings.Repeat("m", MaxResource))})
		}, true, strings.Repeat("r", MaxResource), strings.Repeat("a", MaxAux), []string{strings.Repeat("m", MaxResource)}},
		{"long resource", func(k *Key) bool { return k.SetL7([]byte(long), nil, nil) }, false, cut, "", nil},
		{"long aux", func(k *Key) bool { return k.SetL7(nil, []byte(strings.Repeat("a", 500)), nil) },
			false, "", strings.Repeat("a", MaxAux-len(Truncated)) + Truncated, nil},
		{"long further resource", func(k *Key) bool { return k.SetL7([]byte("x"), nil, [][]byte{[]byte("y"), []byte(long)}) },
			false, "x", "", []string{"y", cut}},
		{"too many resources", func(k *Key) bool { return k.SetL7([]byte("x"), nil, many) }, false, "x", "", manyWant},
		{"exactly MaxMore", func(k *Key) bool { return k.SetL7([]byte("x"), nil, many[:MaxMore]) }, true, "x", "",
			append(manyWant[:MaxMore-1:MaxMore-1], fmt.Sprint("t", MaxMore-1))},
		{"frame overflow", func(k *Key) bool { return k.SetFrame(overflowFrame, true) }, false, "t0", "",
			[]string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11", "t12", "t13", "t14", Truncated}},
		{"cut inside a character", func(k *Key) bool {
			return k.SetL7([]byte(strings.Repeat("r", MaxResource-1)+"é"), nil, nil)
		}, false, strings.Repeat("r", MaxResource-len(Truncated)) + Truncated, "", nil},
		{"invalid UTF-8", func(k *Key) bool { return k.SetL7([]byte("/a\xff\xfeb"), nil, nil) }, true, "/a\uFFFDb", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := NewAggregator(10)
			k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
			if ok := c.set(&k); ok != c.ok {
				t.Errorf("ok = %v, want %v", ok, c.ok)
			}
			a.Add(&k, 1)
			flows, _ := a.Drain(time.Now())
			f := flows[0]
			if f.Resource != c.res || f.Aux != c.aux || !slices.Equal(f.MoreResources, c.more) {
				t.Errorf("got %q %q %q\nwant %q %q %q", f.Resource, f.Aux, f.MoreResources, c.res, c.aux, c.more)
			}
			checkBounds(t, f)
		})
	}
	// A cut value and the value it was cut to are distinct flows.
	a := NewAggregator(10)
	k1 := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	k1.SetL7([]byte(long), nil, nil)
	a.Add(&k1, 1)
	k2 := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	k2.SetL7([]byte(long[:MaxResource]), nil, nil)
	a.Add(&k2, 1)
	if a.Len() != 2 {
		t.Errorf("cut and uncut resource share a key")
	}
}

// checkBounds checks a flow's L7 detail against the proto's bounds.
func checkBounds(t *testing.T, f *bulkheadv1.Flow) {
	t.Helper()
	check := func(what, s string, limit int) {
		if len(s) > limit || !utf8.ValidString(s) {
			t.Errorf("%s: %d bytes (at most %d), valid UTF-8 %v", what, len(s), limit, utf8.ValidString(s))
		}
	}
	check("verb", f.Verb, l7.MaxVerb)
	check("sub", f.Sub, l7.MaxVerb)
	check("resource", f.Resource, MaxResource)
	check("aux", f.Aux, MaxAux)
	if len(f.MoreResources) > MaxMore {
		t.Errorf("%d more resources", len(f.MoreResources))
	}
	for i, m := range f.MoreResources {
		check(fmt.Sprint("more[", i, "]"), m, MaxResource)
	}
}

// TestL7BoundsRandom feeds random bytes of random lengths and checks that
// every reported field stays within its bound.
func TestL7BoundsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("ab/é\xff\xc3\x80\xe2\x82")
	str := func(max int) []byte {
		b := make([]byte, rng.IntN(max))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	a := NewAggregator(100000)
	for range 2000 {
		var k Key
		k.SetAddrs(ipCart, ipRedis)
		k.SetVerb(str(2*l7.MaxVerb), str(2*l7.MaxVerb))
		var more [][]byte
		for range rng.IntN(2 * MaxMore) {
			more = append(more, str(2*MaxResource))
		}
		k.SetL7(str(2*MaxResource), str(2*MaxAux), more)
		a.Add(&k, 1)
	}
	flows, _ := a.Drain(time.Now())
	for _, f := range flows {
		checkBounds(t, f)
	}
}

func TestL7SeedsDoNotMatter(t *testing.T) {
	// Two Aggregators (two seeds) report the same flows in the same order.
	run := func() []*bulkheadv1.Flow {
		a := NewAggregator(100)
		a.clock = func() int64 { return 1 }
		for i := range 50 {
			k := httpKey(a, "GET", fmt.Sprint("/p/", i%7), fmt.Sprint("h", i%3))
			a.Add(&k, 1)
		}
		flows, _ := a.Drain(time.Unix(0, 1))
		return flows
	}
	checkFlows(t, run(), run())
}

func TestL7Bound(t *testing.T) {
	a := NewAggregator(3)
	for i := range 5 {
		k := httpKey(a, "GET", fmt.Sprint("/p/", i), "")
		a.Add(&k, 1)
		a.Add(&k, 1)
	}
	flows, dropped := a.Drain(time.Now())
	if len(flows) != 3 || dropped != 4 {
		t.Errorf("Drain = %d flows, %d dropped; want 3, 4", len(flows), dropped)
	}
}

func TestL7AddAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	a := NewAggregator(100)
	proto := a.Intern("mysql")
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "shop/db/from-api"}
	f := l7.Frame{Verb: []byte("select"), Aux: []byte("shop")}
	f.AddResource([]byte("users"))
	f.AddResource([]byte("orders"))
	f.AddResource([]byte("items"))
	long := l7.Frame{Verb: []byte("GET"), Resource: []byte(strings.Repeat("/x", MaxResource)), Aux: []byte("api.example.com")}
	var k Key
	k.SetAddrs(ipCart, ipRedis)
	k.DstPort, k.Proto = 3306, proto
	record := func(f *l7.Frame) {
		k.SetFrame(f, true)
		a.AddDecision(&k, d, 10)
		k.SetL7(f.Resource, f.Aux, f.More[:f.NMore])
		a.Add(&k, 10)
	}
	record(&f) // the first record of a key allocates
	record(&long)
	if n := testing.AllocsPerRun(1000, func() {
		record(&f)
		record(&long)
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
	if a.Len() != 2 {
		t.Errorf("Len() = %d, want 2", a.Len())
	}
}

func BenchmarkAddL7(b *testing.B) {
	a := NewAggregator(DefaultMaxFlows)
	k := httpKey(a, "GET", "/api/v1/users/12345/orders", "api.example.com")
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "shop/api/r"}
	a.AddDecision(&k, d, 1)
	b.ReportAllocs()
	for b.Loop() {
		a.AddDecision(&k, d, 100)
	}
}

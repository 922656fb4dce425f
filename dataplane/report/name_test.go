package report

import (
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// egressKey is an egress connection key to ipRedis:443 named name.
func egressKey(a *Aggregator, name string) Key {
	var k Key
	k.Dir = enforce.Egress
	k.SetAddrs(ipCart, ipRedis)
	k.DstPort = 443
	k.Proto = a.Intern("tls")
	k.SetDstName(name)
	return k
}

func TestDstNameAggregatesApart(t *testing.T) {
	a := NewAggregator(100)
	d := enforce.Decision{Verdict: enforce.Allow}
	add := func(name string, conn bool, n int) {
		k := egressKey(a, name)
		k.Connection = conn
		for range n {
			k.SetVerb(nil, nil) // a new record keeps the connection's name
			a.AddDecision(&k, d, 1)
		}
	}
	add("api.example.com", true, 3)
	add("API.Example.com.", true, 2) // the same name, as Names would hold it
	add("cdn.example.net", true, 1)
	add("", true, 1)
	add("api.example.com", false, 1)
	flows, _ := a.Drain(time.Now())
	type got struct {
		name  string
		conn  bool
		count uint64
	}
	var gs []got
	for _, f := range flows {
		gs = append(gs, got{f.DstName, f.Connection, f.Count})
	}
	want := []got{
		{"", true, 1},
		{"api.example.com", true, 5},
		{"cdn.example.net", true, 1},
		{"api.example.com", false, 1},
	}
	if len(gs) != len(want) {
		t.Fatalf("flows = %+v, want %+v", gs, want)
	}
	for i := range want {
		if gs[i] != want[i] {
			t.Errorf("flow %d = %+v, want %+v", i, gs[i], want[i])
		}
	}
}

func TestSetDstName(t *testing.T) {
	long := strings.Repeat("a.", 126) + "b" // 253 bytes
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"api.example.com", "api.example.com", true},
		{"Api.EXAMPLE.com.", "api.example.com", true},
		{"_srv._tcp.example.com", "_srv._tcp.example.com", true},
		{"", "", true},
		{".", "", true},
		{long, long, true},
		{long + "c", "", false},
		{strings.Repeat("x", 64) + ".com", "", false}, // label over 63
		{"a..b", "", false},
		{"-a.b", "", false},
		{"a b.com", "", false},
		{"caf\xc3\xa9.com", "", false},
		{"*.example.com", "", false},
	} {
		var k Key
		k.SetDstName("old.example.com")
		if ok := k.SetDstName(tc.in); ok != tc.ok || k.DstName() != tc.want {
			t.Errorf("SetDstName(%q) = %v, name %q; want %v, %q", tc.in, ok, k.DstName(), tc.ok, tc.want)
		}
	}
}

func TestDstNameAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	a := NewAggregator(100)
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "shop/web/to-api-example-com-http-80-get"}
	k := egressKey(a, "api.example.com")
	k.Proto = a.Intern("http")
	f := l7.Frame{Verb: []byte("GET"), Resource: []byte("/users/1"), Aux: []byte("api.example.com")}
	name := "api.example.com" // as Names.Lookup hands it out, once per connection
	record := func() {
		k.SetDstName(name)
		k.Connection = true
		k.SetVerb(nil, nil)
		a.AddDecision(&k, d, 0)
		k.Connection = false
		k.SetFrame(&f, true)
		a.AddDecision(&k, d, 10)
	}
	record() // the first records of a key allocate
	if n := testing.AllocsPerRun(1000, record); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
	if a.Len() != 2 {
		t.Errorf("Len() = %d, want 2", a.Len())
	}
	flows, _ := a.Drain(time.Now())
	for _, fl := range flows {
		if fl.DstName != name {
			t.Errorf("flow %v: dst_name %q, want %q", fl.Verb, fl.DstName, name)
		}
	}
}

func BenchmarkAddNamed(b *testing.B) {
	a := NewAggregator(DefaultMaxFlows)
	k := egressKey(a, "api.example.com")
	f := l7.Frame{Verb: []byte("GET"), Resource: []byte("/api/v1/users/12345/orders"), Aux: []byte("api.example.com")}
	k.SetFrame(&f, true)
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "shop/api/r"}
	a.AddDecision(&k, d, 1)
	b.ReportAllocs()
	for b.Loop() {
		a.AddDecision(&k, d, 100)
	}
}

package report

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m) // runs the tests, then fails on leaked goroutines
}

var (
	ipCart  = netip.MustParseAddr("198.18.0.10")
	ipRedis = netip.MustParseAddr("198.18.0.2")
	ipExt   = netip.MustParseAddr("2001:db8::7")
)

// fakeClock returns a clock that the test advances.
func fakeClock(start time.Time) (func() int64, func(time.Duration)) {
	var mu sync.Mutex
	now := start
	return func() int64 {
			mu.Lock()
			defer mu.Unlock()
			return now.UnixNano()
		}, func(d time.Duration) {
			mu.Lock()
			now = now.Add(d)
			mu.Unlock()
		}
}

func messageKey(a *Aggregator, src, dst netip.Addr, verb, sub string, v enforce.Verdict) Key {
	var k Key
	k.SetAddrs(src, dst)
	k.Dir = enforce.Ingress
	k.DstPort = 6379
	k.Proto = a.Intern("redis")
	k.Mode = enforce.Monitor
	k.SetVerb([]byte(verb), []byte(sub))
	k.Verdict = v
	return k
}

func TestKeyLayout(t *testing.T) {
	// 2×16 addresses + 2×MaxVerb verb and sub + 8 L7 hash + 3×2 + 8×1: no
	// padding, so the map hashes the key as one block of memory.
	if got, want := unsafe.Sizeof(packed{}), uintptr(2*16+2*l7.MaxVerb+8+3*2+8); got != want {
		t.Errorf("sizeof(packed) = %d, want %d (padding crept in)", got, want)
	}
}

func TestSetVerb(t *testing.T) {
	long := strings.Repeat("x", l7.MaxVerb+1)
	cases := []struct {
		name, verb, sub string
		ok              bool
		wantVerb        string
		wantSub         string
	}{
		{"upper-cases", "config", "get", true, "CONFIG", "GET"},
		{"mixed case", "hGetAll", "", true, "HGETALL", ""},
		{"exactly MaxVerb", strings.Repeat("a", l7.MaxVerb), "", true, strings.Repeat("A", l7.MaxVerb), ""},
		{"verb too long", long, "", false, strings.Repeat("X", l7.MaxVerb-len(Truncated)) + Truncated, ""},
		{"sub too long", "CONFIG", long, false, "CONFIG", strings.Repeat("X", l7.MaxVerb-len(Truncated)) + Truncated},
		{"invalid UTF-8", "g\xffet", "", true, "G\uFFFDET", ""},
		{"invalid UTF-8 grows past the bound", strings.Repeat("\xffa", l7.MaxVerb/2), "", true, strings.Repeat("\uFFFDA", 15) + Truncated, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var k Key
			k.SetVerb([]byte("SOMETHINGLONGERTHANTHEREST"), []byte("SUBCOMMANDLONGER")) // leftovers must not leak
			if ok := k.SetVerb([]byte(c.verb), []byte(c.sub)); ok != c.ok {
				t.Errorf("SetVerb ok = %v, want %v", ok, c.ok)
			}
			if k.Verb() != c.wantVerb || k.Sub() != c.wantSub {
				t.Errorf("Verb, Sub = %q, %q; want %q, %q", k.Verb(), k.Sub(), c.wantVerb, c.wantSub)
			}
			var fresh Key
			fresh.SetVerb([]byte(c.verb), []byte(c.sub))
			if k.packed != fresh.packed {
				t.Errorf("a reused key differs from a fresh one")
			}
		})
	}
	// Truncated and untruncated fields are distinct keys.
	var a, b Key
	a.SetVerb([]byte(long), nil)
	b.SetVerb([]byte(long[:l7.MaxVerb]), nil)
	if a.packed == b.packed {
		t.Errorf("a truncated verb equals the verb cut at MaxVerb")
	}
}

func TestSetConn(t *testing.T) {
	pp := &bulkheadv1.ProxyPolicy{Segment: "redis", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT}
	pol, err := enforce.Compile(pp, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := pol.Inbound(ipCart, 6379)
	var k Key
	k.SetConn(&in, ipRedis)
	if k.Src() != ipCart || k.Dst() != ipRedis || k.DstPort != 6379 || k.Dir != enforce.Ingress || k.Mode != enforce.Protect {
		t.Errorf("ingress key: %v → %v:%d dir %v mode %v", k.Src(), k.Dst(), k.DstPort, k.Dir, k.Mode)
	}
	out := pol.Outbound(ipExt, 443)
	k.SetConn(&out, ipRedis)
	if k.Src() != ipRedis || k.Dst() != ipExt || k.DstPort != 443 || k.Dir != enforce.Egress {
		t.Errorf("egress key: %v → %v:%d dir %v", k.Src(), k.Dst(), k.DstPort, k.Dir)
	}
	// IPv4-mapped and plain IPv4 are one key.
	var m, p Key
	m.SetAddrs(netip.MustParseAddr("::ffff:198.18.0.10"), ipRedis)
	p.SetAddrs(ipCart, ipRedis)
	if m.packed != p.packed {
		t.Errorf("mapped and plain IPv4 keys differ")
	}
}

func TestAggregate(t *testing.T) {
	a := NewAggregator(10)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock, advance := fakeClock(start)
	a.clock = clock

	get := messageKey(a, ipCart, ipRedis, "get", "", enforce.Allow)
	a.AddDecision(&get, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/from-cart"}, 30)
	advance(time.Second)
	get2 := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow) // same key, other case
	a.AddDecision(&get2, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/from-cart"}, 12)
	flush := messageKey(a, ipExt, ipRedis, "flushall", "", enforce.Violation)
	a.AddDecision(&flush, enforce.Decision{Verdict: enforce.Violation, Reason: enforce.L7}, 20)
	var conn Key
	conn.SetAddrs(ipCart, ipRedis)
	conn.Dir, conn.DstPort, conn.Proto, conn.Mode, conn.Connection = enforce.Ingress, 6379, a.Intern("redis"), enforce.Monitor, true
	a.AddDecision(&conn, enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/from-cart"}, -5)
	if a.Len() != 3 {
		t.Errorf("Len() = %d, want 3", a.Len())
	}

	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(start.Add(d)) }
	want := []*bulkheadv1.Flow{
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.10", DstIp: "198.18.0.2", DstPort: 6379,
			Protocol: "redis", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_MONITOR,
			Rule: "demo/redis/from-cart", Count: 1, Bytes: 0, FirstSeen: ts(time.Second), LastSeen: ts(time.Second), Connection: true},
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.10", DstIp: "198.18.0.2", DstPort: 6379,
			Protocol: "redis", Verb: "GET", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_MONITOR,
			Rule: "demo/redis/from-cart", Count: 2, Bytes: 42, FirstSeen: ts(0), LastSeen: ts(time.Second)},
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "2001:db8::7", DstIp: "198.18.0.2", DstPort: 6379,
			Protocol: "redis", Verb: "FLUSHALL", Verdict: bulkheadv1.Verdict_VERDICT_VIOLATION, Mode: bulkheadv1.Mode_MODE_MONITOR,
			Reason: "l7_not_allowed", Count: 1, Bytes: 20, FirstSeen: ts(time.Second), LastSeen: ts(time.Second)},
	}
	got, dropped := a.Drain(start.Add(2 * time.Second))
	if dropped != 0 {
		t.Errorf("dropped = %d", dropped)
	}
	checkFlows(t, got, want)

	// The window is reset.
	if got, dropped := a.Drain(start.Add(3 * time.Second)); len(got) != 0 || dropped != 0 {
		t.Errorf("second Drain = %d flows, %d dropped", len(got), dropped)
	}
	if a.Len() != 0 {
		t.Errorf("Len() after Drain = %d", a.Len())
	}
	// Reused containers count from zero again.
	a.Add(&get, 1)
	got, _ = a.Drain(start.Add(4 * time.Second))
	if len(got) != 1 || got[0].Count != 1 || got[0].Bytes != 1 {
		t.Errorf("after reuse: %v", got)
	}
}

func TestDrainClampsToNow(t *testing.T) {
	a := NewAggregator(1)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a.clock, _ = fakeClock(start.Add(time.Minute))
	k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	a.Add(&k, 1)
	got, _ := a.Drain(start)
	if !got[0].LastSeen.AsTime().Equal(start) || !got[0].FirstSeen.AsTime().Equal(start) {
		t.Errorf("first, last = %v, %v; want both %v", got[0].FirstSeen.AsTime(), got[0].LastSeen.AsTime(), start)
	}
}

func checkFlows(t *testing.T, got, want []*bulkheadv1.Flow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d flows, want %d:\n%v", len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("flow %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestBound(t *testing.T) {
	a := NewAggregator(3)
	for i := range 5 {
		k := messageKey(a, netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), ipRedis, "GET", "", enforce.Allow)
		a.Add(&k, 1)
		a.Add(&k, 1) // existing keys still count; new keys beyond the bound are dropped
	}
	if a.Len() != 3 {
		t.Errorf("Len() = %d, want 3", a.Len())
	}
	got, dropped := a.Drain(time.Now())
	if len(got) != 3 || dropped != 4 {
		t.Errorf("Drain = %d flows, %d dropped; want 3, 4", len(got), dropped)
	}
	for _, f := range got {
		if f.Count != 2 {
			t.Errorf("flow %s count %d, want 2", f.SrcIp, f.Count)
		}
	}
	if NewAggregator(0).max != DefaultMaxFlows {
		t.Errorf("NewAggregator(0) bound")
	}
}

func TestIntern(t *testing.T) {
	a := NewAggregator(1)
	if a.Intern("") != 0 {
		t.Errorf(`Intern("") != 0`)
	}
	x, y := a.Intern("x"), a.Intern("y")
	if x == 0 || x == y || a.Intern("x") != x {
		t.Errorf("ids x=%d y=%d", x, y)
	}
	for i := len(a.names); i < MaxNames; i++ {
		a.Intern(fmt.Sprint("n", i))
	}
	if got := a.Intern("n-last"); got != MaxNames {
		t.Fatalf("last id = %d, want %d", got, MaxNames)
	}
	if got := a.Intern("one too many"); got != OverflowName {
		t.Errorf("overflow id = %d", got)
	}
	if a.Intern("x") != x {
		t.Errorf("known names keep their ids when full")
	}
	k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	a.AddDecision(&k, enforce.Decision{Verdict: enforce.Allow, Rule: "never seen"}, 1)
	got, _ := a.Drain(time.Now())
	if got[0].Rule != "(overflow)" {
		t.Errorf("rule = %q", got[0].Rule)
	}
}

func TestAddAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	a := NewAggregator(100)
	pol, err := enforce.Compile(&bulkheadv1.ProxyPolicy{Segment: "redis", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_MONITOR}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := pol.Inbound(ipCart, 6379)
	verb, sub := []byte("config"), []byte("get")
	proto := a.Intern("redis")
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/from-cart"}
	var k Key
	fill := func() {
		k.SetConn(&conn, ipRedis)
		k.Proto = proto
		k.SetVerb(verb, sub)
	}
	fill()
	a.AddDecision(&k, d, 10) // the first record of the key allocates
	if n := testing.AllocsPerRun(1000, func() {
		fill()
		a.AddDecision(&k, d, 10)
		a.Add(&k, 10)
		_ = a.Intern("redis")
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// TestConcurrentAdd adds from many goroutines while another drains, and
// checks that no record is lost or counted twice.
func TestConcurrentAdd(t *testing.T) {
	a := NewAggregator(1000)
	const workers, per = 4, 5000
	var total uint64
	var mu sync.Mutex
	stop := make(chan struct{})
	var drainer, adders sync.WaitGroup
	drainer.Go(func() {
		for {
			flows, dropped := a.Drain(time.Now())
			mu.Lock()
			for _, f := range flows {
				total += f.Count
			}
			total += dropped
			mu.Unlock()
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	for w := range workers {
		adders.Go(func() {
			for i := range per {
				k := messageKey(a, netip.AddrFrom4([4]byte{198, 18, byte(w), byte(i % 50)}), ipRedis, "GET", "", enforce.Allow)
				a.Add(&k, 1)
			}
		})
	}
	adders.Wait()
	close(stop)
	drainer.Wait()
	flows, dropped := a.Drain(time.Now())
	for _, f := range flows {
		total += f.Count
	}
	total += dropped
	if total != workers*per {
		t.Errorf("counted %d records, want %d", total, workers*per)
	}
}

func BenchmarkAdd(b *testing.B) {
	a := NewAggregator(DefaultMaxFlows)
	k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	a.Add(&k, 1)
	b.ReportAllocs()
	for b.Loop() {
		a.Add(&k, 100)
	}
}

func BenchmarkAddDecision(b *testing.B) {
	a := NewAggregator(DefaultMaxFlows)
	k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	d := enforce.Decision{Verdict: enforce.Allow, Rule: "demo/redis/from-cart"}
	a.AddDecision(&k, d, 1)
	verb := []byte("get")
	b.ReportAllocs()
	for b.Loop() {
		k.SetVerb(verb, nil)
		a.AddDecision(&k, d, 100)
	}
}

func BenchmarkAddParallel(b *testing.B) {
	a := NewAggregator(DefaultMaxFlows)
	k := messageKey(a, ipCart, ipRedis, "GET", "", enforce.Allow)
	a.Add(&k, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		k := k
		for pb.Next() {
			a.Add(&k, 100)
		}
	})
}

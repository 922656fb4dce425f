package enforce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

func fqdnPeer(s string) *bulkheadv1.Peer {
	return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Fqdn{Fqdn: s}}
}

// clock is a settable time source for Names.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func lookup(t *Names, a netip.Addr) []string {
	var buf [MaxNamesPerAddr]string
	out := slices.Clone(buf[:t.Lookup(a, buf[:])])
	slices.Sort(out)
	return out
}

var (
	ipAPI  = netip.MustParseAddr("198.18.40.1")
	ipAPI2 = netip.MustParseAddr("198.18.40.2")
	ipCDN  = netip.MustParseAddr("198.18.40.3")
	ipAPI6 = netip.MustParseAddr("2001:db8::40")
)

func TestNamesTTL(t *testing.T) {
	clk := newClock()
	tab := NewNames(NamesOptions{MinTTL: 10 * time.Second, MaxTTL: time.Hour, Now: clk.Now})
	tab.Add([]byte("api.example.com"), ipAPI, 30)
	tab.Add([]byte("short.example.com"), ipAPI, 1) // clamped to MinTTL (10s)
	tab.Add([]byte("long.example.com"), netip.AddrFrom16(ipAPI.As16()), 1<<30)
	tab.Add([]byte("v6.example.com"), ipAPI6, 30)
	for _, bad := range [][]byte{nil, {}, []byte(strings.Repeat("a", MaxDNSName+1))} {
		tab.Add(bad, ipAPI2, 30)
	}
	tab.Add([]byte("x.example.com"), netip.Addr{}, 30)

	check := func(when string, a netip.Addr, want ...string) {
		t.Helper()
		if got := lookup(tab, a); !slices.Equal(got, want) {
			t.Errorf("%s: Lookup(%v) = %q, want %q", when, a, got, want)
		}
	}
	check("at once", ipAPI, "api.example.com", "long.example.com", "short.example.com")
	check("at once", ipAPI6, "v6.example.com")
	check("at once", ipAPI2)
	check("mapped form", netip.AddrFrom16(ipAPI.As16()), "api.example.com", "long.example.com", "short.example.com")
	clk.Advance(10 * time.Second)
	check("after 10s", ipAPI, "api.example.com", "long.example.com")
	// A new answer pushes the expiry later, never earlier.
	tab.Add([]byte("api.example.com"), ipAPI, 60)
	tab.Add([]byte("api.example.com"), ipAPI, 15)
	clk.Advance(50 * time.Second)
	check("after 60s", ipAPI, "api.example.com", "long.example.com")
	clk.Advance(25 * time.Second)
	check("after 85s", ipAPI, "long.example.com")
	clk.Advance(time.Hour)
	check("after the maximum TTL", ipAPI)
	if n := tab.Len(); n != 2 {
		t.Errorf("Len() = %d before a sweep, want 2 (expired addresses stay until swept)", n)
	}
	tab.Add([]byte("new.example.com"), ipAPI2, 30) // sweeps: 30s have passed
	if n := tab.Len(); n != 1 {
		t.Errorf("Len() = %d after a sweep, want 1", n)
	}
}

func TestNamesBounds(t *testing.T) {
	clk := newClock()
	tab := NewNames(NamesOptions{MaxAddrs: 16, Now: clk.Now})
	// An address keeps MaxNamesPerAddr names; a new one replaces the one
	// that expires first.
	for i := range MaxNamesPerAddr {
		tab.Add(fmt.Appendf(nil, "n%d.example.com", i), ipCDN, uint32(100+i))
	}
	tab.Add([]byte("late.example.com"), ipCDN, 1000)
	got := lookup(tab, ipCDN)
	if len(got) != MaxNamesPerAddr || slices.Contains(got, "n0.example.com") || !slices.Contains(got, "late.example.com") {
		t.Errorf("names of a full address after one more = %q, want n0 replaced by late", got)
	}
	// A full table evicts the addresses that expire first.
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{198, 18, 41, byte(i)})
		tab.Add([]byte("a.example.com"), a, uint32(100+i))
		if n := tab.Len(); n > 16 {
			t.Fatalf("Len() = %d, over MaxAddrs 16", n)
		}
	}
	if got := lookup(tab, netip.AddrFrom4([4]byte{198, 18, 41, 39})); len(got) != 1 {
		t.Errorf("the newest address was evicted: %q", got)
	}
	if got := lookup(tab, netip.AddrFrom4([4]byte{198, 18, 41, 0})); len(got) != 0 {
		t.Errorf("the address expiring first is still there: %q", got)
	}
}

func TestNamesConcurrent(t *testing.T) {
	tab := NewNames(NamesOptions{MaxAddrs: 64})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var buf [MaxNamesPerAddr]string
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{198, 18, 42, byte(i % 100)})
				tab.Add(fmt.Appendf(nil, "w%d-%d.example.com", w, i%12), a, 30)
				tab.Lookup(a, buf[:])
			}
		})
	}
	wg.Wait()
	if n := tab.Len(); n > 64 {
		t.Errorf("Len() = %d, over MaxAddrs", n)
	}
}

// fqdnFixture: egress rules with FQDN peers of every kind.
func fqdnFixture(mode bulkheadv1.Mode) *bulkheadv1.ProxyPolicy {
	return &bulkheadv1.ProxyPolicy{
		Segment: "app", Namespace: "demo", Mode: mode,
		Egress: []*bulkheadv1.Rule{
			{Name: "demo/app/a-api-exact", Peers: []*bulkheadv1.Peer{fqdnPeer("api.example.com")}, Ports: []*bulkheadv1.Port{port(443, "tcp")}},
			{Name: "demo/app/b-example-wild", Peers: []*bulkheadv1.Peer{fqdnPeer("*.example.com")},
				Ports: []*bulkheadv1.Port{port(443, "tls")}, L7: []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{suffix(".example.com")}}}},
			{Name: "demo/app/c-deep-wild", Peers: []*bulkheadv1.Peer{fqdnPeer("*.eu.example.com"), cidrPeer("198.18.43.0/24")}, Ports: []*bulkheadv1.Port{port(8443, "tcp")}},
			{Name: "demo/app/d-dns", Peers: []*bulkheadv1.Peer{cidrPeer("198.18.44.53/32")}, Ports: []*bulkheadv1.Port{port(53, "dns")},
				L7: []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{exact("api.example.com"), suffix(".example.com")}}}},
			{Name: "demo/app/e-other", Peers: []*bulkheadv1.Peer{fqdnPeer("other.test")}, Ports: []*bulkheadv1.Port{port(443, "tls"), port(80, "http")}},
		},
	}
}

func TestFQDNPeers(t *testing.T) {
	p := mustCompile(t, fqdnFixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	clk := newClock()
	names := NewNames(NamesOptions{Now: clk.Now})
	add := func(name string, a netip.Addr) { names.Add([]byte(name), a, 300) }
	add("api.example.com", ipAPI)
	add("www.example.com", ipAPI2)
	add("example.com", ipCDN) // the wildcard's domain itself
	ipEU := netip.MustParseAddr("198.18.40.4")
	add("x.eu.example.com", ipEU)
	add("other.test", ipAPI6)
	unknown := netip.MustParseAddr("198.18.45.1")
	add("evil.example.com.attacker.test", unknown)

	sni := func(name string) *l7.Frame {
		return &l7.Frame{Dir: l7.DirRequest, Verb: []byte("CLIENT_HELLO"), Resource: []byte(name)}
	}
	for _, tc := range []struct {
		name       string
		dst        netip.Addr
		port       uint16
		frame      *l7.Frame // nil: Connect only
		wantRule   string
		wantReason Reason
	}{
		{"exact name", ipAPI, 443, nil, "demo/app/a-api-exact", None},
		{"exact name, message", ipAPI, 443, sni("anything"), "demo/app/a-api-exact", None},
		{"wildcard admits", ipAPI2, 443, nil, "demo/app/b-example-wild", None},
		{"wildcard rule's L7 allows", ipAPI2, 443, sni("www.example.com"), "demo/app/b-example-wild", None},
		{"wildcard rule's L7 denies", ipAPI2, 443, sni("www.attacker.test"), "", L7},
		{"wildcard is not its domain", ipCDN, 443, nil, "", NoRule},
		{"deeper wildcard and its parent", ipEU, 443, sni("x.eu.example.com"), "demo/app/b-example-wild", None},
		{"deeper wildcard on its port", ipEU, 8443, nil, "demo/app/c-deep-wild", None},
		{"CIDR of the same rule", netip.MustParseAddr("198.18.43.9"), 8443, nil, "demo/app/c-deep-wild", None},
		{"wrong port", ipAPI, 8443, nil, "", NoRule},
		{"IPv6", ipAPI6, 80, nil, "demo/app/e-other", None},
		{"name that only contains an allowed one", unknown, 443, nil, "", NoRule},
		{"no names", netip.MustParseAddr("198.18.46.1"), 443, nil, "", NoRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := p.OutboundNamed(tc.dst, tc.port, names)
			var got Decision
			if tc.frame == nil {
				got = c.Connect()
			} else {
				got = c.Message(tc.frame)
			}
			if w := want(Protect, tc.wantRule, tc.wantReason); got != w {
				t.Errorf("got %+v, want %+v", got, w)
			}
			// Without the table, FQDN peers match nothing: only the
			// CIDR case keeps its rule.
			plain := p.Outbound(tc.dst, tc.port)
			if d := plain.Connect(); d.Rule != "" && !netip.MustParsePrefix("198.18.43.0/24").Contains(tc.dst) {
				t.Errorf("Outbound without names admitted %v by %s", tc.dst, d.Rule)
			}
		})
	}

	// Names learned after the connection opened do not change it; the names
	// it opened with survive their expiry and a policy swap.
	c := p.OutboundNamed(ipAPI, 443, names)
	clk.Advance(time.Hour)
	if late := p.OutboundNamed(ipAPI, 443, names); late.Connect().Verdict != Deny {
		t.Fatalf("a connection after the names expired: %+v, want deny", late.Connect())
	}
	other := mustCompile(t, fqdnFixture(bulkheadv1.Mode_MODE_MONITOR), identities())
	c.Refresh(other)
	if d := c.Connect(); d.Rule != "demo/app/a-api-exact" || c.Mode() != Monitor {
		t.Errorf("after Refresh to a new policy: %+v in %v, want the exact rule in monitor", d, c.Mode())
	}
}

// TestFQDNUnion: a destination with several names is admitted by the union
// of their rules; a message whose resources are covered by rules of
// different names is allowed, as for rules of one class.
func TestFQDNUnion(t *testing.T) {
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "app", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Egress: []*bulkheadv1.Rule{
			{Name: "demo/app/a", Peers: []*bulkheadv1.Peer{fqdnPeer("db-a.test")}, Ports: []*bulkheadv1.Port{port(3306, "http")},
				L7: []*bulkheadv1.L7Rule{{Verbs: []string{"SELECT"}, Resources: []*bulkheadv1.Pattern{exact("t1")}}}},
			{Name: "demo/app/b", Peers: []*bulkheadv1.Peer{fqdnPeer("db-b.test")}, Ports: []*bulkheadv1.Port{port(3306, "http")},
				L7: []*bulkheadv1.L7Rule{{Verbs: []string{"SELECT"}, Resources: []*bulkheadv1.Pattern{exact("t2")}}}},
			{Name: "demo/app/c", Peers: []*bulkheadv1.Peer{cidrPeer("198.18.47.0/24")}, Ports: []*bulkheadv1.Port{port(3306, "http")},
				L7: []*bulkheadv1.L7Rule{{Verbs: []string{"SELECT"}, Resources: []*bulkheadv1.Pattern{exact("t3")}}}},
		},
	}
	p, err := compile(pp, nil, testParsed)
	if err != nil {
		t.Fatal(err)
	}
	names := NewNames(NamesOptions{})
	dst := netip.MustParseAddr("198.18.47.5")
	names.Add([]byte("db-a.test"), dst, 60)
	names.Add([]byte("db-b.test"), dst, 60)
	c := p.OutboundNamed(dst, 3306, names)
	for _, tc := range []struct {
		tables []string
		rule   string
	}{
		{[]string{"t1"}, "demo/app/a"},
		{[]string{"t2"}, "demo/app/b"},
		{[]string{"t3"}, "demo/app/c"},
		{[]string{"t3", "t2", "t1"}, "demo/app/c"},
		{[]string{"t1", "t4"}, ""},
	} {
		f := &l7.Frame{Dir: l7.DirRequest, Verb: []byte("SELECT")}
		for _, tb := range tc.tables {
			f.AddResource([]byte(tb))
		}
		w := want(Protect, tc.rule, None)
		if tc.rule == "" {
			w = want(Protect, "", L7)
		}
		if got := c.Message(f); got != w {
			t.Errorf("SELECT %v: got %+v, want %+v", tc.tables, got, w)
		}
	}
}

func TestFQDNRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(pp *bulkheadv1.ProxyPolicy)
		want string
	}{
		{"ingress", func(pp *bulkheadv1.ProxyPolicy) {
			pp.Ingress = []*bulkheadv1.Rule{{Name: "demo/app/in", Peers: []*bulkheadv1.Peer{fqdnPeer("a.test")}, Ports: []*bulkheadv1.Port{port(80, "tcp")}}}
		}, `ingress[0] "demo/app/in".peers[0].fqdn: fqdn peers are for egress rules only`},
		{"upper case", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer("API.example.com") }, "is not a lower-case DNS name"},
		{"final dot", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer("api.example.com.") }, "is not a lower-case DNS name"},
		{"star alone", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer("*") }, "is not a lower-case DNS name"},
		{"star inside", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer("a.*.com") }, "is not a lower-case DNS name"},
		{"empty", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer("") }, "is not a lower-case DNS name"},
		{"long label", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer(strings.Repeat("a", 64) + ".com") }, "is not a lower-case DNS name"},
		{"too long", func(pp *bulkheadv1.ProxyPolicy) { pp.Egress[0].Peers[0] = fqdnPeer(strings.Repeat("a.", 127) + "com") }, "is not a lower-case DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pp := fqdnFixture(bulkheadv1.Mode_MODE_PROTECT)
			tc.edit(pp)
			_, err := Compile(pp, identities())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestEgressProtocol(t *testing.T) {
	p := mustCompile(t, fqdnFixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	for port, want := range map[uint16]string{443: "", 8443: "tcp", 53: "dns", 80: "http", 22: ""} {
		if got := p.EgressProtocol(port); got != want {
			t.Errorf("EgressProtocol(%d) = %q, want %q", port, got, want)
		}
	}
}

func TestFQDNZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts are not meaningful under -cover or -race")
	}
	p := mustCompile(t, fqdnFixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	other := mustCompile(t, fqdnFixture(bulkheadv1.Mode_MODE_MONITOR), identities())
	names := NewNames(NamesOptions{})
	names.Add([]byte("www.example.com"), ipAPI2, 60)
	names.Add([]byte("api.example.com"), ipAPI2, 60)
	f := &l7.Frame{Dir: l7.DirRequest, Verb: []byte("CLIENT_HELLO"), Resource: []byte("www.example.com")}
	var buf [MaxNamesPerAddr]string
	c := p.OutboundNamed(ipAPI2, 443, names)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Names.Add known", func() { names.Add([]byte("www.example.com"), ipAPI2, 60) }},
		{"Names.Lookup", func() { names.Lookup(ipAPI2, buf[:]) }},
		{"OutboundNamed", func() { cc := p.OutboundNamed(ipAPI2, 443, names); _ = cc.Connect() }},
		{"Message", func() { _ = c.Message(f) }},
		{"Refresh", func() { c.Refresh(other); c.Refresh(p) }},
	} {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
		}
	}
	if d := c.Message(f); d.Rule != "demo/app/a-api-exact" {
		t.Errorf("Message = %+v, want the exact rule (lowest of the two names)", d)
	}
}

// TestFQDNAgainstReference checks FQDN peers (with CIDR, segment and
// namespace peers beside them) against the reference on random egress
// policies and random names of addresses.
func TestFQDNAgainstReference(t *testing.T) {
	fqdns := []string{"a.test", "b.a.test", "*.a.test", "*.b.a.test", "*.test", "c.test", "x.y.test", "*.y.test"}
	hostNames := []string{"a.test", "b.a.test", "c.b.a.test", "y.test", "x.y.test", "c.test", "d.c.test", "test", "other.org"}
	ports := []uint16{443, 8080}
	protos := []string{"http", "tcp", "mysql"}
	values := []string{"/", "/a", "/b/c", "t1", "t2"}
	patterns := []*bulkheadv1.Pattern{exact("/"), prefix("/b/"), exact("t1"), exact("t2"), suffix("c")}
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	for round := range 200 {
		pp := &bulkheadv1.ProxyPolicy{Segment: "self", Namespace: "a", Mode: bulkheadv1.Mode_MODE_PROTECT}
		for i := range 1 + rng.IntN(8) {
			r := randomRule(rng, fmt.Sprintf("a/self/r%02d", rng.IntN(100)*100+i), ports, protos)
			for range rng.IntN(3) {
				r.Peers = append(r.Peers, fqdnPeer(pick(fqdns)))
			}
			if hasProto(r, func(p string) bool { return p != "tcp" }) && rng.IntN(3) > 0 {
				for range 1 + rng.IntN(2) {
					lr := &bulkheadv1.L7Rule{}
					for range rng.IntN(2) {
						lr.Resources = append(lr.Resources, patterns[rng.IntN(len(patterns))])
					}
					r.L7 = append(r.L7, lr)
				}
			}
			pp.Egress = append(pp.Egress, r)
		}
		ids := randomIdentities(rng)
		p, err := compile(pp, ids, testParsed)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		names := NewNames(NamesOptions{})
		ref := &refPolicy{rules: slices.Clone(pp.Egress), ids: ids, names: map[netip.Addr][]string{}}
		slices.SortFunc(ref.rules, func(a, b *bulkheadv1.Rule) int { return strings.Compare(a.Name, b.Name) })
		for _, s := range refAddrs {
			a := netip.MustParseAddr(s)
			for range rng.IntN(4) {
				n := pick(hostNames)
				if !slices.Contains(ref.names[a], n) {
					ref.names[a] = append(ref.names[a], n)
				}
				names.Add([]byte(n), a, 60)
			}
		}
		for _, s := range refAddrs {
			a := netip.MustParseAddr(s)
			for _, port := range ports {
				c := p.OutboundNamed(a, port, names)
				for range 10 {
					f := &l7.Frame{Dir: l7.DirRequest, Verb: []byte("GET")}
					for range rng.IntN(3) {
						f.AddResource([]byte(pick(values)))
					}
					rule, reason := ref.judge(a, port, f)
					if got, w := c.Message(f), want(Protect, rule, reason); got != w {
						t.Fatalf("round %d: %s (%q):%d %q: got %+v, want %+v\npolicy: %v", round, s, ref.names[a], port, f.Resource, got, w, pp)
					}
				}
			}
		}
	}
}

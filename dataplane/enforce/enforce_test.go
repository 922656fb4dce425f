package enforce

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Addresses of the fixture (198.18.0.0/15 only).
var (
	ipSelf     = netip.MustParseAddr("198.18.0.2")
	ipCart     = netip.MustParseAddr("198.18.0.10")
	ipCheckout = netip.MustParseAddr("198.18.0.11")
	ipAdmin    = netip.MustParseAddr("198.18.0.12")
	ipWeb      = netip.MustParseAddr("198.18.1.10") // namespace shop
	ipExt      = netip.MustParseAddr("198.19.0.7")  // in the CIDR peer 198.19.0.0/24
	ipExt6     = netip.MustParseAddr("2001:db8::1") // in the CIDR peer 2001:db8::/64
	ipUnknown  = netip.MustParseAddr("198.19.5.5")
	ipCartV6   = netip.MustParseAddr("::ffff:198.18.0.10")
)

func segPeer(s string) *bulkheadv1.Peer {
	return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Segment{Segment: s}}
}
func nsPeer(s string) *bulkheadv1.Peer {
	return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Namespace{Namespace: s}}
}
func cidrPeer(s string) *bulkheadv1.Peer {
	return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Cidr{Cidr: s}}
}
func port(n uint32, proto string) *bulkheadv1.Port {
	return &bulkheadv1.Port{Port: n, Protocol: proto}
}
func redis(cmds ...string) *bulkheadv1.RedisMatch { return &bulkheadv1.RedisMatch{Commands: cmds} }

// fixture is the policy of the segment demo/redis. Rules are listed out of
// name order on purpose.
func fixture(mode bulkheadv1.Mode) *bulkheadv1.ProxyPolicy {
	return &bulkheadv1.ProxyPolicy{
		Segment:   "redis",
		Namespace: "demo",
		Mode:      mode,
		Revision:  "rev-1",
		Ports:     []*bulkheadv1.Port{port(9121, "tcp"), port(6379, "redis"), port(6380, "redis")},
		Ingress: []*bulkheadv1.Rule{
			{Name: "demo/redis/from-cart", Peers: []*bulkheadv1.Peer{segPeer("demo/cart")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("GET", "set", "config|get")},
			// Also allows GET for cart, and sorts first: GET reports it.
			{Name: "demo/redis/a-cart-readonly", Peers: []*bulkheadv1.Peer{segPeer("demo/cart")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("get")},
			{Name: "demo/redis/from-checkout", Peers: []*bulkheadv1.Peer{segPeer("demo/checkout")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}},
			{Name: "demo/redis/from-shop", Peers: []*bulkheadv1.Peer{nsPeer("shop")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("GET")},
			{Name: "demo/redis/from-ext", Peers: []*bulkheadv1.Peer{cidrPeer("198.19.0.0/24"), cidrPeer("2001:db8::/64")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("PING")},
			{Name: "demo/redis/health", Ports: []*bulkheadv1.Port{port(6380, "redis")}, Redis: redis("ping")},
			{Name: "demo/redis/metrics", Ports: []*bulkheadv1.Port{port(9121, "")}},
			{Name: "demo/redis/admin-config", Peers: []*bulkheadv1.Peer{segPeer("demo/admin")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("CONFIG")},
			{Name: "demo/redis/admin-client-list", Peers: []*bulkheadv1.Peer{segPeer("demo/admin")},
				Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("client|LIST")},
		},
		Egress: []*bulkheadv1.Rule{
			{Name: "demo/redis/to-dns", Peers: []*bulkheadv1.Peer{cidrPeer("198.18.255.0/24")},
				Ports: []*bulkheadv1.Port{port(53, "tcp")}},
		},
	}
}

func identities() []*bulkheadv1.Identity {
	return []*bulkheadv1.Identity{
		{Workload: "redis-0", Namespace: "demo", Segment: "demo/redis", Ips: []string{ipSelf.String()}},
		{Workload: "cart-1", Namespace: "demo", Segment: "demo/cart", Ips: []string{ipCart.String()}},
		{Workload: "checkout-1", Namespace: "demo", Segment: "demo/checkout", Ips: []string{ipCheckout.String()}},
		{Workload: "admin", Namespace: "demo", Segment: "demo/admin", Ips: []string{ipAdmin.String()}},
		{Workload: "web-1", Namespace: "shop", Segment: "shop/web", Ips: []string{ipWeb.String()}},
	}
}

func mustCompile(t testing.TB, pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) *Policy {
	t.Helper()
	p, err := Compile(pp, ids)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func req(verb, sub string) *l7.Frame {
	return &l7.Frame{Dir: l7.DirRequest, Verb: []byte(verb), Sub: []byte(sub)}
}

// want is the decision expected in mode m for rule (or, when rule is "",
// for reason).
func want(m Mode, rule string, reason Reason) Decision {
	if rule != "" {
		return Decision{Verdict: Allow, Rule: rule}
	}
	switch m {
	case Discover:
		return Decision{Verdict: Allow, Reason: reason}
	case Monitor:
		return Decision{Verdict: Violation, Reason: reason}
	}
	return Decision{Verdict: Deny, Enforced: true, Reason: reason}
}

func TestMessageAndConnect(t *testing.T) {
	type tc struct {
		name      string
		peer      netip.Addr
		port      uint16
		verb, sub string
		rule      string // rule expected to allow the message, "" when none
		reason    Reason // when rule is ""
		connRule  string // rule expected to allow the connection, "" when none
	}
	cases := []tc{
		{"allowed command", ipCart, 6379, "SET", "", "demo/redis/from-cart", None, "demo/redis/a-cart-readonly"},
		{"first rule by name wins", ipCart, 6379, "GET", "", "demo/redis/a-cart-readonly", None, "demo/redis/a-cart-readonly"},
		{"mixed case verb", ipCart, 6379, "gEt", "", "demo/redis/a-cart-readonly", None, "demo/redis/a-cart-readonly"},
		{"sub-command rule", ipCart, 6379, "CONFIG", "GET", "demo/redis/from-cart", None, "demo/redis/a-cart-readonly"},
		{"sub-command mixed case", ipCart, 6379, "config", "gEt", "demo/redis/from-cart", None, "demo/redis/a-cart-readonly"},
		{"other sub-command denied", ipCart, 6379, "CONFIG", "SET", "", L7, "demo/redis/a-cart-readonly"},
		{"sub-command rule needs the sub", ipCart, 6379, "CONFIG", "", "", L7, "demo/redis/a-cart-readonly"},
		{"denied command", ipCart, 6379, "FLUSHALL", "", "", L7, "demo/redis/a-cart-readonly"},
		{"empty verb", ipCart, 6379, "", "", "", L7, "demo/redis/a-cart-readonly"},
		{"verb longer than MaxVerb", ipCart, 6379, string(make([]byte, l7.MaxVerb+1)), "", "", L7, "demo/redis/a-cart-readonly"},
		{"rule with no matcher", ipCheckout, 6379, "FLUSHALL", "", "demo/redis/from-checkout", None, "demo/redis/from-checkout"},
		{"namespace peer", ipWeb, 6379, "get", "", "demo/redis/from-shop", None, "demo/redis/from-shop"},
		{"namespace peer denied command", ipWeb, 6379, "SET", "", "", L7, "demo/redis/from-shop"},
		{"CIDR peer", ipExt, 6379, "PING", "", "demo/redis/from-ext", None, "demo/redis/from-ext"},
		{"CIDR peer denied command", ipExt, 6379, "GET", "", "", L7, "demo/redis/from-ext"},
		{"IPv6 CIDR peer", ipExt6, 6379, "ping", "", "demo/redis/from-ext", None, "demo/redis/from-ext"},
		{"unknown peer", ipUnknown, 6379, "GET", "", "", NoRule, ""},
		{"unknown peer, any-peer rule", ipUnknown, 6380, "PING", "", "demo/redis/health", None, "demo/redis/health"},
		{"unknown peer, any-peer rule, other command", ipUnknown, 6380, "GET", "", "", L7, "demo/redis/health"},
		{"known peer, any-peer rule", ipCart, 6380, "Ping", "", "demo/redis/health", None, "demo/redis/health"},
		{"known peer on another's port", ipCart, 9121, "GET", "", "demo/redis/metrics", None, "demo/redis/metrics"},
		{"port without rules", ipCart, 7000, "GET", "", "", NoRule, ""},
		{"peer of no rule", ipSelf, 6379, "GET", "", "", NoRule, ""},
		{"plain command allows every sub", ipAdmin, 6379, "config", "resetstat", "demo/redis/admin-config", None, "demo/redis/admin-client-list"},
		{"plain command without sub", ipAdmin, 6379, "CONFIG", "", "demo/redis/admin-config", None, "demo/redis/admin-client-list"},
		{"sub-command allowed", ipAdmin, 6379, "CLIENT", "list", "demo/redis/admin-client-list", None, "demo/redis/admin-client-list"},
		{"sub-command not allowed", ipAdmin, 6379, "CLIENT", "KILL", "", L7, "demo/redis/admin-client-list"},
		{"IPv4-mapped peer", ipCartV6, 6379, "GET", "", "demo/redis/a-cart-readonly", None, "demo/redis/a-cart-readonly"},
	}
	for _, mode := range []bulkheadv1.Mode{bulkheadv1.Mode_MODE_DISCOVER, bulkheadv1.Mode_MODE_MONITOR, bulkheadv1.Mode_MODE_PROTECT} {
		p := mustCompile(t, fixture(mode), identities())
		m, _ := ModeFromProto(mode)
		for _, c := range cases {
			t.Run(m.String()+"/"+c.name, func(t *testing.T) {
				conn := p.Inbound(c.peer, c.port)
				if got, w := conn.Message(req(c.verb, c.sub)), want(m, c.rule, c.reason); got != w {
					t.Errorf("Message(%q %q) = %+v, want %+v", c.verb, c.sub, got, w)
				}
				if got, w := conn.Connect(), want(m, c.connRule, NoRule); got != w {
					t.Errorf("Connect() = %+v, want %+v", got, w)
				}
				reply := &l7.Frame{Dir: l7.DirReply}
				if got := conn.Message(reply); got != (Decision{Verdict: Allow}) {
					t.Errorf("Message(reply) = %+v, want plain Allow", got)
				}
			})
		}
	}
}

func TestConnPeer(t *testing.T) {
	p := mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	c := p.Inbound(ipCartV6, 6379)
	if seg, ns := c.PeerSegment(); seg != "demo/cart" || ns != "demo" {
		t.Errorf("PeerSegment() = %q, %q; want demo/cart, demo", seg, ns)
	}
	if c.Peer() != ipCartV6 || c.Port() != 6379 || c.Direction() != Ingress || c.Mode() != Protect || c.Policy() != p {
		t.Errorf("Conn accessors: peer %v port %d dir %v mode %v", c.Peer(), c.Port(), c.Direction(), c.Mode())
	}
	u := p.Inbound(ipUnknown, 6379)
	if seg, ns := u.PeerSegment(); seg != "" || ns != "" {
		t.Errorf("unknown peer: PeerSegment() = %q, %q", seg, ns)
	}
}

func TestOutbound(t *testing.T) {
	p := mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	dns := netip.MustParseAddr("198.18.255.53")
	dc := p.Outbound(dns, 53)
	if got, w := dc.Connect(), (Decision{Verdict: Allow, Rule: "demo/redis/to-dns"}); got != w {
		t.Errorf("Outbound(dns, 53).Connect() = %+v, want %+v", got, w)
	}
	c := p.Outbound(ipCart, 53)
	if got, w := c.Connect(), want(Protect, "", NoRule); got != w {
		t.Errorf("Outbound(cart, 53).Connect() = %+v, want %+v", got, w)
	}
	if c.Direction() != Egress {
		t.Errorf("Direction() = %v", c.Direction())
	}
	// Ingress rules do not leak into egress.
	oc := p.Outbound(ipCart, 6379)
	if got := oc.Connect(); got.Verdict != Deny {
		t.Errorf("Outbound(cart, 6379).Connect() = %+v, want Deny", got)
	}
}

func TestPolicyAccessors(t *testing.T) {
	p := mustCompile(t, fixture(bulkheadv1.Mode_MODE_MONITOR), identities())
	if p.Mode() != Monitor || p.Revision() != "rev-1" || p.Segment() != "demo/redis" || p.Namespace() != "demo" {
		t.Errorf("mode %v revision %q segment %q namespace %q", p.Mode(), p.Revision(), p.Segment(), p.Namespace())
	}
	for port, w := range map[uint16]string{6379: "redis", 9121: "tcp", 7000: ""} {
		if got := p.Protocol(port); got != w {
			t.Errorf("Protocol(%d) = %q, want %q", port, got, w)
		}
	}
	wantPorts := []Port{{6379, "redis"}, {6380, "redis"}, {9121, "tcp"}}
	if got := p.Ports(); !slices.Equal(got, wantPorts) {
		t.Errorf("Ports() = %v, want %v", got, wantPorts)
	}
	if seg, ns, ok := p.Identity(ipWeb); seg != "shop/web" || ns != "shop" || !ok {
		t.Errorf("Identity(web) = %q %q %v", seg, ns, ok)
	}
	if _, _, ok := p.Identity(ipUnknown); ok {
		t.Errorf("Identity(unknown) found")
	}
	names := p.RuleNames(Ingress)
	if !slices.IsSorted(names) || len(names) != 9 || names[0] != "demo/redis/a-cart-readonly" {
		t.Errorf("RuleNames(Ingress) = %v", names)
	}

	// A qualified segment is taken as is.
	pp := fixture(bulkheadv1.Mode_MODE_MONITOR)
	pp.Segment = "demo/redis"
	if got := mustCompile(t, pp, nil).Segment(); got != "demo/redis" {
		t.Errorf("Segment() = %q", got)
	}
}

func TestNoPolicyFailsClosed(t *testing.T) {
	var e Engine
	p := e.Load()
	if p != nil {
		t.Fatalf("Load() before Store = %v", p)
	}
	c := p.Inbound(ipCart, 6379)
	deny := Decision{Verdict: Deny, Enforced: true, Reason: NoRule}
	if got := c.Connect(); got != deny {
		t.Errorf("Connect() without policy = %+v", got)
	}
	if got := c.Message(req("GET", "")); got != deny {
		t.Errorf("Message() without policy = %+v", got)
	}
	var zero Conn
	zero.Refresh(nil)
	if got := zero.Message(req("GET", "")); got != deny {
		t.Errorf("zero Conn Message() = %+v", got)
	}
	// Once a policy arrives, Refresh picks it up.
	e.Store(mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities()))
	c.Refresh(e.Load())
	if got := c.Message(req("GET", "")); got.Verdict != Allow {
		t.Errorf("after Store and Refresh: %+v", got)
	}
	if got := c.Judge(Malformed); got != (Decision{Verdict: Deny, Enforced: true, Reason: Malformed}) {
		t.Errorf("Judge(Malformed) = %+v", got)
	}
}

func TestRefresh(t *testing.T) {
	protect := mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	mon := fixture(bulkheadv1.Mode_MODE_MONITOR)
	mon.Ingress = append(mon.Ingress, &bulkheadv1.Rule{Name: "demo/redis/cart-flush",
		Peers: []*bulkheadv1.Peer{segPeer("demo/cart")}, Ports: []*bulkheadv1.Port{port(6379, "redis")}, Redis: redis("FLUSHALL")})
	monitor := mustCompile(t, mon, identities())

	var e Engine
	e.Store(protect)
	c := e.Load().Inbound(ipCart, 6379)
	if got := c.Message(req("FLUSHALL", "")); got.Verdict != Deny || !got.Enforced {
		t.Fatalf("protect: %+v", got)
	}
	if got := c.Message(req("CONFIG", "SET")); got.Verdict != Deny {
		t.Fatalf("protect: %+v", got)
	}
	e.Store(monitor)
	c.Refresh(e.Load())
	if c.Policy() != monitor || c.Mode() != Monitor {
		t.Fatalf("Refresh did not re-derive")
	}
	if got, w := c.Message(req("FLUSHALL", "")), (Decision{Verdict: Allow, Rule: "demo/redis/cart-flush"}); got != w {
		t.Errorf("new rule: %+v, want %+v", got, w)
	}
	if got, w := c.Message(req("CONFIG", "SET")), (Decision{Verdict: Violation, Reason: L7}); got != w {
		t.Errorf("monitor: %+v, want %+v", got, w)
	}
	c.Refresh(nil) // keeps the last policy
	if c.Policy() != monitor {
		t.Errorf("Refresh(nil) changed the policy")
	}
}

func TestCompileRejects(t *testing.T) {
	type tc struct {
		name   string
		mutate func(pp *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity)
		want   string // substring of the error
	}
	ing := func(pp *bulkheadv1.ProxyPolicy) *bulkheadv1.Rule { return pp.Ingress[0] }
	cases := []tc{
		{"mode unspecified", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Mode = 0 }, "mode: MODE_UNSPECIFIED"},
		{"mode unknown", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Mode = 9 }, "mode: 9"},
		{"empty namespace", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Namespace = "" }, "namespace: \"\""},
		{"empty segment", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Segment = "" }, "segment: \"\""},
		{"segment of another namespace", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Segment = "shop/redis" }, "segment: \"shop/redis\""},
		{"declared port 0", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ports[0].Port = 0 }, "ports[0].port: 0 is not a port"},
		{"declared port too big", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ports[0].Port = 65536 }, "ports[0].port: 65536 is not a port"},
		{"declared port twice", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ports[1].Port = 9121 }, "ports[1].port: 9121 repeats ports[0]"},
		{"declared unknown protocol", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ports[0].Protocol = "gopher" }, "ports[0].protocol: unknown protocol \"gopher\""},
		{"nil declared port", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ports[2] = nil }, "ports[2]: nil port"},
		{"rule port 0", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Ports[0].Port = 0 }, "ingress[0] \"demo/redis/from-cart\".ports[0].port: 0 is not a port"},
		{"rule port too big", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Egress[0].Ports[0].Port = 70000 }, "egress[0] \"demo/redis/to-dns\".ports[0].port: 70000"},
		{"rule unknown protocol", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Ports[0].Protocol = "http9" }, "ports[0].protocol: unknown protocol \"http9\""},
		{"rule without ports", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Ports = nil }, "ports: at least one port"},
		{"rule port twice", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			ing(pp).Ports = append(ing(pp).Ports, port(6379, "tcp"))
		}, "ports[1].port: port 6379 listed twice"},
		{"bad CIDR", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			ing(pp).Peers[0] = cidrPeer("198.18.0.0/33")
		}, "peers[0].cidr: bad CIDR \"198.18.0.0/33\""},
		{"CIDR without length", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Peers[0] = cidrPeer("198.18.0.1") }, "peers[0].cidr: bad CIDR"},
		{"mapped CIDR shorter than /96", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			ing(pp).Peers[0] = cidrPeer("::ffff:198.18.0.0/80")
		}, "mixes IPv4-mapped"},
		{"peer oneof unset", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Peers[0] = &bulkheadv1.Peer{} }, "peers[0]: no segment, namespace, cidr or fqdn set"},
		{"nil peer", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Peers[0] = nil }, "peers[0]: no segment, namespace, cidr or fqdn set"},
		{"peer segment without namespace", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Peers[0] = segPeer("cart") }, "peers[0].segment: \"cart\""},
		{"empty peer namespace", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Peers[0] = nsPeer("") }, "peers[0].namespace: \"\""},
		{"empty rule name", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ingress[3].Name = "" }, "ingress[3].name: empty rule name"},
		{"duplicate rule name", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ingress[4].Name = pp.Ingress[2].Name }, "ingress[4].name: \"demo/redis/from-checkout\" repeats ingress[2]"},
		{"rule name with newline", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Ingress[0].Name = "a\nb" }, "is not a rule name"},
		{"nil rule", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { pp.Egress = append(pp.Egress, nil) }, "egress[1]: nil rule"},
		{"too many rules", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			pp.Egress = make([]*bulkheadv1.Rule, MaxRules+1)
		}, "egress: 65537 rules, at most 65536"},
		{"command longer than MaxVerb", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			ing(pp).Redis = redis(string(slices.Repeat([]byte("A"), l7.MaxVerb+1)))
		}, "redis.commands[0]: \"AAAA"},
		{"sub-command longer than MaxVerb", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) {
			ing(pp).Redis = redis("config|" + string(slices.Repeat([]byte("A"), l7.MaxVerb+1)))
		}, "sub-command longer than 64 bytes"},
		{"empty command", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis("GET", "") }, "redis.commands[1]: \"\": empty command name"},
		{"empty sub-command", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis("config|") }, "empty sub-command"},
		{"two bars", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis("a|b|c") }, "more than one '|'"},
		{"command with space", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis("config get") }, "without spaces"},
		{"command with non-ASCII", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis("g\xc3\xa9t") }, "printable ASCII"},
		{"empty matcher", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Redis = redis() }, "redis.commands: at least one command"},
		{"matcher without redis port", func(pp *bulkheadv1.ProxyPolicy, _ *[]*bulkheadv1.Identity) { ing(pp).Ports[0].Protocol = "tcp" }, "redis: redis matcher on a rule with no redis port"},
		{"identity IP unparsable", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { (*ids)[1].Ips = []string{"198.18.0.300"} }, "identities[1] \"demo/cart-1\".ips[0]: \"198.18.0.300\" is not an IP address"},
		{"identity IP with zone", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { (*ids)[1].Ips = []string{"fe80::1%eth0"} }, "is not an IP address"},
		{"same IP two segments", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) {
			(*ids)[2].Ips = append((*ids)[2].Ips, "::ffff:"+ipCart.String())
		}, "identities[2] \"demo/checkout-1\".ips[1]: 198.18.0.10 is also in identities[1] with segment \"demo/cart\""},
		{"identity segment unqualified", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { (*ids)[1].Segment = "cart" }, "identities[1] \"demo/cart-1\".segment: \"cart\""},
		{"identity segment in another namespace", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { (*ids)[1].Segment = "shop/cart" }, ".segment: \"shop/cart\" is not \"demo/<segment>\""},
		{"identity without namespace", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { (*ids)[1].Namespace = "" }, ".namespace: \"\""},
		{"nil identity", func(_ *bulkheadv1.ProxyPolicy, ids *[]*bulkheadv1.Identity) { *ids = append(*ids, nil) }, "identities[5]: nil identity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pp, ids := fixture(bulkheadv1.Mode_MODE_PROTECT), identities()
			c.mutate(pp, &ids)
			p, err := Compile(pp, ids)
			if err == nil {
				t.Fatalf("Compile accepted it")
			}
			if p != nil {
				t.Errorf("Compile returned a policy with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not contain %q", err, c.want)
			}
		})
	}
	t.Run("nil policy", func(t *testing.T) {
		if _, err := Compile(nil, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Compile(nil) = %v", err)
		}
	})
	t.Run("many problems are capped", func(t *testing.T) {
		pp := fixture(bulkheadv1.Mode_MODE_PROTECT)
		for i := range 30 {
			pp.Ingress = append(pp.Ingress, &bulkheadv1.Rule{Name: "x", Ports: []*bulkheadv1.Port{port(uint32(i+1), "tcp")}})
		}
		_, err := Compile(pp, nil)
		if err == nil || !strings.Contains(err.Error(), "; and 9 more") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("valid fixture", func(t *testing.T) {
		mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), identities())
	})
	t.Run("same IP twice with one segment", func(t *testing.T) {
		ids := identities()
		ids = append(ids, &bulkheadv1.Identity{Workload: "cart-again", Namespace: "demo", Segment: "demo/cart", Ips: []string{ipCart.String()}})
		mustCompile(t, fixture(bulkheadv1.Mode_MODE_PROTECT), ids)
	})
}

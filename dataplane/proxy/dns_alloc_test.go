package proxy

import (
	"log/slog"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// TestDNSDecideAllocs: judging and reporting a query (allowed, or denied
// with its REFUSED reply) and learning the addresses of an answer allocate
// nothing per query once the query's buffers exist.
func TestDNSDecideAllocs(t *testing.T) {
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "app", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
		Egress: []*bulkheadv1.Rule{{
			Name:  "demo/app/dns",
			Ports: []*bulkheadv1.Port{{Port: 53, Protocol: "dns"}},
			L7:    []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Suffix{Suffix: ".allowed.test"}}}}},
		}},
	}
	pol, err := enforce.Compile(pp, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := &enforce.Engine{}
	eng.Store(pol)
	names := enforce.NewNames(enforce.NamesOptions{})
	d := NewDNS(DNSConfig{Upstream: netip.MustParseAddrPort("198.18.0.53:53"), Engine: eng, Names: names,
		Aggregator: report.NewAggregator(0), Metrics: metrics.New(nil), Logger: slog.New(slog.DiscardHandler)})
	q := d.queries.Get().(*dnsQuery)
	q.from = netip.MustParseAddrPort("198.18.0.10:40000")
	set := func(name string) {
		b := dnsmessage.NewBuilder(q.qbuf[:0], dnsmessage.Header{ID: 1, RecursionDesired: true})
		_ = b.StartQuestions()
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		msg, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		q.n = len(msg)
	}
	answer := func() int {
		b := dnsmessage.NewBuilder(q.rbuf[:0], dnsmessage.Header{ID: 1, Response: true, RecursionAvailable: true})
		_ = b.StartQuestions()
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("www.allowed.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		_ = b.StartAnswers()
		_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("www.allowed.test."), Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: [4]byte{198, 18, 0, 80}})
		msg, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return len(msg)
	}
	for _, tc := range []struct {
		name string
		act  int
	}{{"www.allowed.test.", dnsForward}, {"blocked.test.", dnsAnswer}} {
		set(tc.name)
		if act, _ := d.decide(q); act != tc.act {
			t.Fatalf("%s: decide = %d, want %d", tc.name, act, tc.act)
		}
		if n := testing.AllocsPerRun(100, func() { d.decide(q) }); n != 0 {
			t.Errorf("%s: decide allocates %v times per query", tc.name, n)
		}
	}
	set("www.allowed.test.")
	d.decide(q)
	n := answer()
	if !d.answered(q, n) {
		t.Fatal("answer refused")
	}
	var buf [enforce.MaxNamesPerAddr]string
	if got := buf[:names.Lookup(netip.MustParseAddr("198.18.0.80"), buf[:])]; len(got) != 1 || got[0] != "www.allowed.test" {
		t.Fatalf("names learned: %q", got)
	}
	if a := testing.AllocsPerRun(100, func() { d.answered(q, n) }); a != 0 {
		t.Errorf("answered allocates %v times per answer", a)
	}
}

func TestTruncated(t *testing.T) {
	d := NewDNS(DNSConfig{Upstream: netip.MustParseAddrPort("198.18.0.53:53"), Engine: &enforce.Engine{}, Logger: slog.New(slog.DiscardHandler)})
	q := d.queries.Get().(*dnsQuery)
	b := dnsmessage.NewBuilder(q.qbuf[:0], dnsmessage.Header{ID: 77, RecursionDesired: true, CheckingDisabled: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("big.example.test."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET})
	_ = b.StartAdditionals()
	var rh dnsmessage.ResourceHeader
	_ = rh.SetEDNS0(4096, dnsmessage.RCodeSuccess, true)
	_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	msg, _ := b.Finish()
	if err := q.parser.ParseDatagram(l7.DirRequest, msg, &q.req); err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(truncated(nil, &q.req)); err != nil {
		t.Fatal(err)
	}
	if m.ID != 77 || !m.Response || !m.Truncated || !m.RecursionDesired || !m.CheckingDisabled || m.RCode != dnsmessage.RCodeSuccess ||
		len(m.Questions) != 1 || m.Questions[0].Name.String() != "big.example.test." || m.Questions[0].Type != dnsmessage.TypeTXT ||
		len(m.Answers)+len(m.Authorities)+len(m.Additionals) != 0 {
		t.Errorf("truncated reply: %+v", m)
	}
}

package capture

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
)

func TestOutboundRules(t *testing.T) {
	o := Outbound{
		Port: 15001, DNSPort: 15053, Mark: 0xb4d,
		ExcludePorts:        []uint16{15010},
		ExcludeDestinations: []netip.Prefix{netip.MustParsePrefix("198.18.203.9/32"), netip.MustParsePrefix("2001:db8::/64")},
	}
	want4 := `*nat
:BULKHEAD_OUTBOUND - [0:0]
-F BULKHEAD_OUTBOUND
-A BULKHEAD_OUTBOUND -m mark --mark 0xb4d -j RETURN
-A BULKHEAD_OUTBOUND -o lo -j RETURN
-A BULKHEAD_OUTBOUND -p tcp --dport 15010 -j RETURN
-A BULKHEAD_OUTBOUND -d 198.18.203.9/32 -j RETURN
-A BULKHEAD_OUTBOUND -p udp --dport 53 -j REDIRECT --to-ports 15053
-A BULKHEAD_OUTBOUND -p tcp -j REDIRECT --to-ports 15001
COMMIT
`
	if diff := cmp.Diff(want4, outboundRules(o, false)); diff != "" {
		t.Errorf("IPv4 rules (-want +got):\n%s", diff)
	}
	want6 := strings.Replace(want4, "198.18.203.9/32", "2001:db8::/64", 1)
	if diff := cmp.Diff(want6, outboundRules(o, true)); diff != "" {
		t.Errorf("IPv6 rules (-want +got):\n%s", diff)
	}
	o.DNSPort = 0
	if got := outboundRules(o, false); strings.Contains(got, "udp") {
		t.Errorf("DNS port 0 still redirects UDP:\n%s", got)
	}
}

func TestValidateOutbound(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Outbound
		want string // "" = valid
	}{
		{"none", Outbound{}, ""},
		{"all", Outbound{Port: 15001, DNSPort: 15053, Mark: 1, ExcludePorts: []uint16{15010}}, ""},
		{"dns only", Outbound{DNSPort: 15053, Mark: 1}, ""},
		{"no mark", Outbound{Port: 15001}, "needs the proxy's mark or its excluded uid"},
		{"inbound port", Outbound{Port: 15006, Mark: 1}, "is the inbound proxy port"},
		{"exclusions alone", Outbound{ExcludePorts: []uint16{1}}, "without an outbound or DNS port"},
		{"port 0", Outbound{Port: 15001, Mark: 1, ExcludePorts: []uint16{0}}, "excluded outbound port 0"},
		{"bad prefix", Outbound{Port: 15001, Mark: 1, ExcludeDestinations: []netip.Prefix{{}}}, "invalid excluded destination"},
		{"too many", Outbound{Port: 15001, Mark: 1, ExcludePorts: make([]uint16, maxExcludes+1)}, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{ProxyPort: 15006, Outbound: tc.o}
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOutboundRedirect: in the proxy's namespace (the workload's, in a
// pod), Install with outbound capture sends a new TCP connection to the
// peer to the outbound listener with the peer as original destination,
// and a DNS datagram to the DNS port, whose answer the workload receives
// from the address it asked (conntrack reverses the redirect). A socket
// with the mark, an excluded port, an excluded destination and loopback
// reach their destination directly. Install without outbound, and Remove,
// take it away.
func TestOutboundRedirect(t *testing.T) {
	requireNetAdmin(t)
	proxyNS, peerNS := testNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const mark = 0xb4d
	cfg := Config{ProxyPort: proxyPort, Outbound: Outbound{
		Port: 15001, DNSPort: 15053, Mark: mark, ExcludePorts: []uint16{9998},
	}}
	for i := range 2 {
		if err := inNS(proxyNS, func() error { return Install(ctx, cfg) }); err != nil {
			t.Fatalf("Install #%d: %v", i+1, err)
		}
	}
	want := []string{
		":BULKHEAD_OUTBOUND - [0:0]",
		"-A OUTPUT -j BULKHEAD_OUTBOUND",
		"-A BULKHEAD_OUTBOUND -m mark --mark 0xb4d -j RETURN",
		"-A BULKHEAD_OUTBOUND -o lo -j RETURN",
		"-A BULKHEAD_OUTBOUND -p tcp -m tcp --dport 9998 -j RETURN",
		"-A BULKHEAD_OUTBOUND -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053",
		"-A BULKHEAD_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",
	}
	if diff := cmp.Diff(want, chainLines(t, proxyNS, "iptables-save", OutboundChain)); diff != "" {
		t.Errorf("iptables-save after Install (-want +got):\n%s", diff)
	}
	if ip6NatWorks(t, proxyNS) {
		if diff := cmp.Diff(want, chainLines(t, proxyNS, "ip6tables-save", OutboundChain)); diff != "" {
			t.Errorf("ip6tables-save after Install (-want +got):\n%s", diff)
		}
	}

	outLn := listen(t, proxyNS, "0.0.0.0:15001")
	peerLn := listen(t, peerNS, "0.0.0.0:9999")
	peerExcluded := listen(t, peerNS, "0.0.0.0:9998")
	loLn := listen(t, proxyNS, "127.0.0.1:9997")

	// Captured: lands on the outbound listener.
	c := dial(t, ctx, proxyNS, peerIP+":9999")
	got := accept(t, outLn)
	echo(t, c, got)
	if dst, err := OriginalDst(got); err != nil || dst != netip.MustParseAddrPort(peerIP+":9999") {
		t.Errorf("OriginalDst = %v, %v; want %s:9999", dst, err, peerIP)
	}
	// Marked (the proxy's own upstream): reaches the peer.
	var mc net.Conn
	err := inNS(proxyNS, func() (err error) {
		d := net.Dialer{Timeout: timeout, Control: MarkControl(mark)}
		mc, err = d.DialContext(ctx, "tcp4", peerIP+":9999")
		return err
	})
	if err != nil {
		t.Fatalf("marked dial: %v", err)
	}
	t.Cleanup(func() { mc.Close() })
	echo(t, mc, accept(t, peerLn))
	// Excluded port and loopback: not captured.
	echo(t, dial(t, ctx, proxyNS, peerIP+":9998"), accept(t, peerExcluded))
	echo(t, dial(t, ctx, proxyNS, "127.0.0.1:9997"), accept(t, loLn))

	// DNS: the datagram to peer:53 arrives at 127.0.0.1:15053; the answer
	// from there reaches the client from peer:53.
	var dnsLn, client *net.UDPConn
	if err := inNS(proxyNS, func() (err error) {
		if dnsLn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:15053"))); err != nil {
			return err
		}
		client, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(peerIP+":53")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsLn.Close(); client.Close() })
	_ = dnsLn.SetDeadline(time.Now().Add(timeout))
	_ = client.SetDeadline(time.Now().Add(timeout))
	if _, err := client.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := dnsLn.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "query" {
		t.Fatalf("DNS port read %q, %v; want the query", buf[:n], err)
	}
	if from.Addr() != netip.MustParseAddr(proxyIP) {
		t.Errorf("query from %v, want the workload's address %s", from, proxyIP)
	}
	if _, err := dnsLn.WriteToUDPAddrPort([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	// A connected UDP socket only accepts datagrams from peer:53.
	n, err = client.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Errorf("client read %q, %v; want the answer from %s:53", buf[:n], err, peerIP)
	}

	// Install without outbound removes the outbound chain, keeps inbound.
	if err := inNS(proxyNS, func() error { return Install(ctx, Config{ProxyPort: proxyPort}) }); err != nil {
		t.Fatal(err)
	}
	if got := chainLines(t, proxyNS, "iptables-save", OutboundChain); len(got) != 0 {
		t.Errorf("after Install without outbound: %q", got)
	}
	if got := chainLines(t, proxyNS, "iptables-save", Chain); len(got) == 0 {
		t.Error("after Install without outbound the inbound chain is gone")
	}
	if err := inNS(proxyNS, func() error { return Install(ctx, cfg) }); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := inNS(proxyNS, func() error { return Remove(ctx) }); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if got := chainLines(t, proxyNS, save, "BULKHEAD_"); len(got) != 0 {
			t.Errorf("%s after Remove still shows %q", save, got)
		}
	}
}

// chainLines returns the lines of `<save> -t nat` in ns that mention s.
func chainLines(t *testing.T, ns netns.NsHandle, save, s string) []string {
	t.Helper()
	var lines []string
	for _, l := range natLines(t, ns, save) {
		if strings.Contains(l, s) {
			lines = append(lines, l)
		}
	}
	return lines
}

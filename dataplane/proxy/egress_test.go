package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/capture"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/all"
)

// Addresses of the egress tests: the workload is 127.0.0.1; its DNS server
// (dnsmasq) listens on 127.0.53.1:53, its allowed HTTPS server on
// 127.0.0.60 (allowed.test), and 127.0.0.61 (blocked.test) is a server no
// rule lets it reach.
var (
	dnsIP     = netip.MustParseAddr("127.0.53.1")
	allowedIP = netip.MustParseAddr("127.0.0.60")
	blockedIP = netip.MustParseAddr("127.0.0.61")
)

// egressPolicy: the DNS server may be asked about allowed.test and names
// below it; allowed.test may be reached on port 443 with TLS for its own
// name; nothing else. mode is the segment's.
func egressPolicy(t testing.TB, mode bulkheadv1.Mode) *enforce.Policy {
	t.Helper()
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "app", Namespace: "demo", Mode: mode, Revision: "test",
		Egress: []*bulkheadv1.Rule{{
			Name:  "demo/app/dns",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Cidr{Cidr: dnsIP.String() + "/32"}}},
			Ports: []*bulkheadv1.Port{{Port: 53, Protocol: "dns"}},
			L7: []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{
				{Kind: &bulkheadv1.Pattern_Exact{Exact: "allowed.test"}},
				{Kind: &bulkheadv1.Pattern_Suffix{Suffix: ".allowed.test"}},
				{Kind: &bulkheadv1.Pattern_Exact{Exact: "big.test"}},
			}}},
		}, {
			Name:  "demo/app/https",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Fqdn{Fqdn: "allowed.test"}}},
			Ports: []*bulkheadv1.Port{{Port: 443, Protocol: "tls"}},
			L7:    []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Exact{Exact: "allowed.test"}}}}},
		}},
	}
	ids := []*bulkheadv1.Identity{{Workload: "app", Namespace: "demo", Segment: "demo/app", Ips: []string{"127.0.0.1"}}}
	pol, err := enforce.Compile(pp, ids)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return pol
}

// startDnsmasq runs dnsmasq on dnsIP:53 (UDP and TCP) answering for
// allowed.test (and below) with allowedIP, blocked.test with blockedIP and
// big.test with a TXT record of about 650 bytes, TTL 300. It is stopped,
// with the children it forks for TCP connections, when the test ends.
func startDnsmasq(t *testing.T) netip.AddrPort {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatalf("dnsmasq not installed: %v", err)
	}
	addr := netip.AddrPortFrom(dnsIP, 53)
	cmd := exec.Command("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+dnsIP.String(), "--port=53", "--pid-file=", "--user=root",
		"--local=/test/", "--local-ttl=300",
		"--address=/allowed.test/"+allowedIP.String(), "--address=/blocked.test/"+blockedIP.String(),
		"--txt-record=big.test,"+strings.Repeat("a", 200)+","+strings.Repeat("b", 200)+","+strings.Repeat("c", 200))
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	if err := waitDNS(addr); err != nil {
		t.Fatalf("dnsmasq did not come up on %v: %v\n%s", addr, err, out.String())
	}
	return addr
}

// syncBuf is a bytes.Buffer safe for a process's two output streams.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitDNS(addr netip.AddrPort) error {
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		var m *dnsmessage.Message
		if m, err = exchange(addr, query(1, "allowed.test", dnsmessage.TypeA, false)); err == nil && m.RCode == dnsmessage.RCodeSuccess {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// query builds a DNS query, with EDNS when edns.
func query(id uint16, name string, typ dnsmessage.Type, edns bool) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: typ, Class: dnsmessage.ClassINET})
	if edns {
		_ = b.StartAdditionals()
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	msg, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return msg
}

// exchange sends msg to addr over UDP and parses the answer.
func exchange(addr netip.AddrPort, msg []byte) (*dnsmessage.Message, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		return nil, err
	}
	return &m, nil
}

// dnsHarness is a DNSProxy in front of dnsmasq, with its own engine, names
// table, aggregator and metrics.
type dnsHarness struct {
	addr   netip.AddrPort // the proxy's socket
	engine *enforce.Engine
	names  *enforce.Names
	agg    *report.Aggregator
	reg    *prometheus.Registry
}

func newDNSHarness(t *testing.T, upstream netip.AddrPort, pol *enforce.Policy, lim proxy.DNSLimits) *dnsHarness {
	t.Helper()
	h := &dnsHarness{engine: &enforce.Engine{}, names: enforce.NewNames(enforce.NamesOptions{}), agg: report.NewAggregator(0), reg: prometheus.NewRegistry()}
	if pol != nil {
		h.engine.Store(pol)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	h.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
	d := proxy.NewDNS(proxy.DNSConfig{
		Conns: []*net.UDPConn{c}, Upstream: upstream, Engine: h.engine, Names: h.names, Aggregator: h.agg,
		Metrics: metrics.New(h.reg), Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Mark: capture.DefaultMark, Limits: lim,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Start did not return after its context ended")
		}
	})
	return h
}

func (h *dnsHarness) flows() []*bulkheadv1.Flow {
	f, _ := h.agg.Drain(time.Now())
	return f
}

func (h *dnsHarness) lookup(a netip.Addr) []string {
	var buf [enforce.MaxNamesPerAddr]string
	return buf[:h.names.Lookup(a, buf[:])]
}

// dig runs dig against the proxy and returns its output.
func (h *dnsHarness) dig(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args = append([]string{"@" + h.addr.Addr().String(), "-p", strconv.Itoa(int(h.addr.Port())), "+tries=1", "+time=2"}, args...)
	out, err := exec.CommandContext(ctx, "dig", args...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "timed out") {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestDNSProxyProtect(t *testing.T) {
	upstream := startDnsmasq(t)
	h := newDNSHarness(t, upstream, egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT), proxy.DNSLimits{})

	// Allowed: answered by dnsmasq, and its address learned with the name.
	out := h.dig(t, "allowed.test")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "allowed.test.\t\t300\tIN\tA\t"+allowedIP.String()) {
		t.Fatalf("dig allowed.test through the proxy:\n%s", out)
	}
	if got := h.lookup(allowedIP); len(got) != 1 || got[0] != "allowed.test" {
		t.Errorf("names of %v = %q, want allowed.test", allowedIP, got)
	}
	// Below an allowed suffix.
	if out := h.dig(t, "www.allowed.test"); !strings.Contains(out, "status: NOERROR") {
		t.Errorf("dig www.allowed.test:\n%s", out)
	}
	// Denied: REFUSED with the Extended DNS Error Blocked, from the proxy.
	out = h.dig(t, "blocked.test")
	if !strings.Contains(out, "status: REFUSED") || !strings.Contains(out, "EDE: 15 (Blocked)") {
		t.Errorf("dig blocked.test through the proxy:\n%s", out)
	}
	if got := h.lookup(blockedIP); len(got) != 0 {
		t.Errorf("a refused name was learned: %q", got)
	}
	// Without EDNS: a plain REFUSED.
	m, err := exchange(h.addr, query(7, "blocked.test", dnsmessage.TypeA, false))
	if err != nil || m.RCode != dnsmessage.RCodeRefused || m.ID != 7 || len(m.Additionals) != 0 {
		t.Errorf("query without EDNS: %+v, %v; want REFUSED, ID 7, no OPT", m, err)
	}

	flows := h.flows()
	for _, want := range []struct {
		resource string
		verdict  bulkheadv1.Verdict
		rule     string
	}{
		{"allowed.test", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/app/dns"},
		{"www.allowed.test", bulkheadv1.Verdict_VERDICT_ALLOW, "demo/app/dns"},
		{"blocked.test", bulkheadv1.Verdict_VERDICT_DENY, ""},
	} {
		f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetResource() == want.resource })
		if f == nil {
			t.Errorf("no flow for %s:%s", want.resource, flowString(flows))
			continue
		}
		if f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS || f.GetSrcIp() != "127.0.0.1" || f.GetDstIp() != dnsIP.String() ||
			f.GetDstPort() != 53 || f.GetProtocol() != "dns" || f.GetVerb() != "A" || f.GetVerdict() != want.verdict || f.GetRule() != want.rule {
			t.Errorf("flow of %s: %v", want.resource, f)
		}
	}
}

func TestDNSProxyMonitorAndDiscover(t *testing.T) {
	upstream := startDnsmasq(t)
	for _, mode := range []bulkheadv1.Mode{bulkheadv1.Mode_MODE_MONITOR, bulkheadv1.Mode_MODE_DISCOVER} {
		t.Run(mode.String(), func(t *testing.T) {
			h := newDNSHarness(t, upstream, egressPolicy(t, mode), proxy.DNSLimits{})
			out := h.dig(t, "blocked.test")
			if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, blockedIP.String()) {
				t.Fatalf("dig blocked.test in %v:\n%s", mode, out)
			}
			if got := h.lookup(blockedIP); len(got) != 1 {
				t.Errorf("names of %v = %q, want blocked.test", blockedIP, got)
			}
			want := bulkheadv1.Verdict_VERDICT_VIOLATION
			if mode == bulkheadv1.Mode_MODE_DISCOVER {
				want = bulkheadv1.Verdict_VERDICT_ALLOW
			}
			flows := h.flows()
			f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetResource() == "blocked.test" })
			if f == nil || f.GetVerdict() != want || f.GetReason() != "l7_not_allowed" || f.GetMode() != mode {
				t.Errorf("flow of blocked.test: %v, want %v l7_not_allowed:%s", f, want, flowString(flows))
			}
		})
	}
}

// TestDNSProxyBadQueries: malformed and oversized queries are dropped and
// reported; a proxy without a policy refuses at once; an answer larger
// than the limit becomes an empty answer with TC set.
func TestDNSProxyBadQueries(t *testing.T) {
	upstream := startDnsmasq(t)
	h := newDNSHarness(t, upstream, egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT), proxy.DNSLimits{MaxMessage: 512, Timeout: time.Second})

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, msg := range map[string][]byte{
		"garbage":    []byte("hello, this is not DNS at all"),
		"truncated":  query(9, "allowed.test", dnsmessage.TypeA, true)[:20],
		"over limit": append(query(10, "allowed.test", dnsmessage.TypeA, false), make([]byte, 600)...),
	} {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1024)
		if n, err := c.Read(buf); err == nil {
			t.Errorf("%s: answered %x, want it dropped", name, buf[:n])
		}
	}
	flows := h.flows()
	reasons := map[string]int{}
	for _, f := range flows {
		if f.GetVerdict() == bulkheadv1.Verdict_VERDICT_DENY {
			reasons[f.GetReason()] += int(f.GetCount())
		}
	}
	if reasons["malformed"] != 2 || reasons["limit"] != 1 {
		t.Errorf("bad queries reported as %v, want 2 malformed and 1 limit:%s", reasons, flowString(flows))
	}

	// An answer over MaxMessage (dnsmasq's big.test is about 650 bytes).
	m, err := exchange(h.addr, query(11, "big.test", dnsmessage.TypeTXT, true))
	if err != nil || !m.Truncated || m.RCode != dnsmessage.RCodeSuccess || m.ID != 11 || len(m.Answers) != 0 ||
		len(m.Questions) != 1 || m.Questions[0].Name.String() != "big.test." {
		t.Errorf("big answer: %+v, %v; want an empty NOERROR answer with TC", m, err)
	}
	if out := h.dig(t, "+ignore", "big.test", "TXT"); !strings.Contains(out, "flags: qr tc rd ra") {
		t.Errorf("dig of the big answer:\n%s", out)
	}

	// No policy: refused at once.
	h2 := newDNSHarness(t, upstream, nil, proxy.DNSLimits{})
	if m, err := exchange(h2.addr, query(12, "allowed.test", dnsmessage.TypeA, true)); err != nil || m.RCode != dnsmessage.RCodeRefused {
		t.Errorf("without a policy: %+v, %v; want REFUSED", m, err)
	}
}

// TestDNSProxyLimits: queries beyond MaxQueries are dropped while the
// upstream is silent; an unanswered query is dropped after Timeout.
func TestDNSProxyLimits(t *testing.T) {
	silent, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dnsIP, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	up := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	h := newDNSHarness(t, up, egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT), proxy.DNSLimits{MaxQueries: 1, Timeout: 500 * time.Millisecond})
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(h.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for id := range uint16(3) {
		if _, err := c.Write(query(20+id, "allowed.test", dnsmessage.TypeA, false)); err != nil {
			t.Fatal(err)
		}
	}
	// The first reaches the silent upstream, the others are dropped.
	_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, _, err := silent.ReadFromUDPAddrPort(buf)
	if err != nil || binary.BigEndian.Uint16(buf[:n]) != 20 {
		t.Fatalf("upstream got %x, %v; want query 20", buf[:n], err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := silent.ReadFromUDPAddrPort(buf); err == nil {
		t.Errorf("upstream got a second query %x while MaxQueries is 1", buf[:n])
	}
	if got := counter(t, h.reg, "bulkhead_proxy_connections_total", "verdict", "overload"); got != 2 {
		t.Errorf("overload count = %v, want 2", got)
	}
	// After the timeout the slot is free again.
	time.Sleep(600 * time.Millisecond)
	if _, err := c.Write(query(30, "allowed.test", dnsmessage.TypeA, false)); err != nil {
		t.Fatal(err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := silent.ReadFromUDPAddrPort(buf); err != nil || binary.BigEndian.Uint16(buf[:n]) != 30 {
		t.Errorf("after the timeout the upstream got %x, %v; want query 30", buf[:n], err)
	}
}

// counter returns the value of a counter with the given labels in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	h := &harness{t: t, reg: reg}
	return h.counter(name, labels...)
}

// tlsServer runs a TLS server on addr:443 with a certificate for
// allowed.test; each connection gets "hello\n" after the handshake.
func tlsServer(t *testing.T, addr netip.Addr) netip.AddrPort {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "allowed.test"}, DNSNames: []string{"allowed.test", "other.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ln, err := tls.Listen("tcp", netip.AddrPortFrom(addr, 443).String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = c.Write([]byte("hello\n"))
					_, _ = io.Copy(io.Discard, c)
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// TestOutboundProxy: the workload's own connections through the outbound
// proxy, judged by its egress rules in protect mode. The DNS proxy's answer
// for allowed.test lets a connection to its address through (the FQDN
// peer), where the TLS ClientHello must ask for allowed.test; an address no
// name rule covers is refused; in monitor mode it passes and is reported.
func TestOutboundProxy(t *testing.T) {
	upstream := startDnsmasq(t)
	dh := newDNSHarness(t, upstream, egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT), proxy.DNSLimits{})
	allowedSrv := tlsServer(t, allowedIP)
	blockedSrv := tlsServer(t, blockedIP)

	// The proxy takes each connection for one to the server the test names
	// (as SO_ORIGINAL_DST would after the outbound redirect).
	var mu sync.Mutex
	var target netip.AddrPort
	h := newHarnessAt(t, allowedSrv, func(t testing.TB, _ netip.AddrPort) *enforce.Policy {
		return egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT)
	}, func(c *proxy.Config) {
		c.Outbound = true
		c.Mark = capture.DefaultMark
		c.Names = dh.names
		c.NameServers = []netip.Addr{dnsIP}
		c.Protocols = all.Protocols()
		c.OriginalDst = func(*net.TCPConn) (netip.AddrPort, error) {
			mu.Lock()
			defer mu.Unlock()
			return target, nil
		}
	})
	connect := func(dst netip.AddrPort, sni string) (string, error) {
		mu.Lock()
		target = dst
		mu.Unlock()
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		buf := make([]byte, 6)
		_, err = io.ReadFull(tc, buf)
		return string(buf), err
	}

	// Before any DNS answer, allowed.test's address is unknown: refused.
	if got, err := connect(allowedSrv, "allowed.test"); err == nil {
		t.Fatalf("connection before the name was resolved: %q, want refused", got)
	}
	if out := dhDig(t, dh, "allowed.test"); !strings.Contains(out, "status: NOERROR") {
		t.Fatalf("dig allowed.test:\n%s", out)
	}
	if got, err := connect(allowedSrv, "allowed.test"); err != nil || got != "hello\n" {
		t.Errorf("allowed name, allowed SNI: %q, %v; want hello", got, err)
	}
	if got, err := connect(allowedSrv, "other.test"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("allowed name, other SNI: %q, %v; want a TLS access_denied alert", got, err)
	}
	// blocked.test is refused by the DNS proxy, so its address stays
	// unknown; connecting to it anyway is refused.
	if out := dhDig(t, dh, "blocked.test"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("dig blocked.test:\n%s", out)
	}
	if got, err := connect(blockedSrv, "allowed.test"); err == nil {
		t.Errorf("connection to an address no rule allows: %q, want refused", got)
	}

	flows := h.flows()
	for _, want := range []struct {
		dst     netip.Addr
		conn    bool
		verdict bulkheadv1.Verdict
		rule    string
		name    string // dst_name: the name the address was resolved from
	}{
		{allowedIP, true, bulkheadv1.Verdict_VERDICT_ALLOW, "demo/app/https", "allowed.test"},
		{blockedIP, true, bulkheadv1.Verdict_VERDICT_DENY, "", ""},
	} {
		f := findFlow(flows, func(f *bulkheadv1.Flow) bool {
			return f.GetDstIp() == want.dst.String() && f.GetConnection() == want.conn && f.GetVerdict() == want.verdict
		})
		if f == nil || f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS || f.GetSrcIp() != "127.0.0.1" || f.GetDstPort() != 443 || f.GetRule() != want.rule || f.GetDstName() != want.name {
			t.Errorf("connection flow to %v: %v:%s", want.dst, f, flowString(flows))
		}
	}
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetResource() == "other.test" }); f == nil ||
		f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || f.GetProtocol() != "tls" || f.GetVerb() != "CLIENT_HELLO" {
		t.Errorf("ClientHello for other.test: %v", f)
	}

	// Monitor: the same connection passes and is a violation.
	h.engine.Store(egressPolicy(t, bulkheadv1.Mode_MODE_MONITOR))
	if got, err := connect(blockedSrv, "blocked.test"); err != nil || got != "hello\n" {
		t.Errorf("monitor mode, address no rule allows: %q, %v; want hello", got, err)
	}
	flows = h.flows()
	if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetDstIp() == blockedIP.String() && f.GetConnection() }); f == nil ||
		f.GetVerdict() != bulkheadv1.Verdict_VERDICT_VIOLATION || f.GetReason() != "no_rule" {
		t.Errorf("monitor flow: %v:%s", f, flowString(flows))
	}
}

func dhDig(t *testing.T, h *dnsHarness, name string) string {
	t.Helper()
	return h.dig(t, name)
}

// TestOutboundDNSOverTCP: DNS over TCP from the workload goes through the
// outbound proxy as DNS (sniffed, or declared by the egress rule on port
// 53): judged per query, and the answers of a trusted nameserver teach the
// names table; those of another server are relayed, not learned.
func TestOutboundDNSOverTCP(t *testing.T) {
	upstream := startDnsmasq(t)
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			names := enforce.NewNames(enforce.NamesOptions{})
			h := newHarnessAt(t, upstream, func(t testing.TB, _ netip.AddrPort) *enforce.Policy {
				return egressPolicy(t, bulkheadv1.Mode_MODE_PROTECT)
			}, func(c *proxy.Config) {
				c.Outbound = true
				c.Mark = capture.DefaultMark
				c.Names = names
				if trusted {
					c.NameServers = []netip.Addr{dnsIP}
				}
				c.Protocols = all.Protocols()
			})
			host, port, _ := net.SplitHostPort(h.addr)
			dig := func(name string) string {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				out, _ := exec.CommandContext(ctx, "dig", "@"+host, "-p", port, "+tcp", "+tries=1", "+time=2", name).CombinedOutput()
				return string(out)
			}
			if out := dig("allowed.test"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, allowedIP.String()) {
				t.Fatalf("dig +tcp allowed.test:\n%s", out)
			}
			if out := dig("blocked.test"); !strings.Contains(out, "status: REFUSED") || !strings.Contains(out, "EDE: 15 (Blocked)") {
				t.Errorf("dig +tcp blocked.test:\n%s", out)
			}
			var buf [enforce.MaxNamesPerAddr]string
			got := buf[:names.Lookup(allowedIP, buf[:])]
			if trusted && (len(got) != 1 || got[0] != "allowed.test") || !trusted && len(got) != 0 {
				t.Errorf("names of %v = %q (trusted nameserver %v)", allowedIP, got, trusted)
			}
			if n := names.Lookup(blockedIP, buf[:]); n != 0 {
				t.Errorf("a refused name was learned: %q", buf[:n])
			}
			flows := h.flows()
			if f := findFlow(flows, func(f *bulkheadv1.Flow) bool { return f.GetResource() == "blocked.test" }); f == nil ||
				f.GetProtocol() != "dns" || f.GetVerdict() != bulkheadv1.Verdict_VERDICT_DENY || f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS {
				t.Errorf("flow of blocked.test over TCP: %v:%s", f, flowString(flows))
			}
		})
	}
}

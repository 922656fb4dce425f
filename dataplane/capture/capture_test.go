package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const (
	proxyIP   = "198.18.200.1"
	peerIP    = "198.18.200.2"
	proxyPort = 15006
	timeout   = 5 * time.Second
)

func TestChainRules(t *testing.T) {
	cfg := Config{
		ProxyPort:    15006,
		ExcludePorts: []uint16{15090, 22},
		ExcludeSources: []netip.Prefix{
			netip.MustParsePrefix("198.18.201.7/24"),
			netip.MustParsePrefix("2001:db8::/32"),
			netip.MustParsePrefix("::ffff:198.18.202.0/120"),
		},
	}
	want4 := `*nat
:BULKHEAD_INBOUND - [0:0]
-F BULKHEAD_INBOUND
-A BULKHEAD_INBOUND -i lo -j RETURN
-A BULKHEAD_INBOUND -p tcp --dport 15090 -j RETURN
-A BULKHEAD_INBOUND -p tcp --dport 22 -j RETURN
-A BULKHEAD_INBOUND -s 198.18.201.0/24 -j RETURN
-A BULKHEAD_INBOUND -s 198.18.202.0/24 -j RETURN
-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports 15006
COMMIT
`
	if diff := cmp.Diff(want4, chainRules(cfg, false)); diff != "" {
		t.Errorf("IPv4 rules (-want +got):\n%s", diff)
	}
	want6 := strings.Replace(strings.Replace(want4,
		"-A BULKHEAD_INBOUND -s 198.18.201.0/24 -j RETURN\n", "-A BULKHEAD_INBOUND -s 2001:db8::/32 -j RETURN\n", 1),
		"-A BULKHEAD_INBOUND -s 198.18.202.0/24 -j RETURN\n", "", 1)
	if diff := cmp.Diff(want6, chainRules(cfg, true)); diff != "" {
		t.Errorf("IPv6 rules (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"ok", Config{ProxyPort: 15006, ExcludePorts: []uint16{15090}}, ""},
		{"no proxy port", Config{}, "no proxy port"},
		{"port 0 excluded", Config{ProxyPort: 15006, ExcludePorts: []uint16{0}}, "excluded port 0"},
		{"proxy port excluded", Config{ProxyPort: 15006, ExcludePorts: []uint16{15006}}, "proxy port 15006 excluded"},
		{"bad prefix", Config{ProxyPort: 15006, ExcludeSources: []netip.Prefix{{}}}, "invalid excluded source"},
		{"too many", Config{ProxyPort: 15006, ExcludePorts: make([]uint16, maxExcludes+1)}, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
			if tc.want != "" {
				if err := Install(context.Background(), tc.cfg); err == nil {
					t.Errorf("Install accepted an invalid config")
				}
			}
		})
	}
}

// TestInstallRedirectRemove: in a namespace pair joined by a veth, Install
// (twice, after an Install with another config) leaves exactly one jump and
// the expected chain; a connection from the peer to port 9999 lands on the
// proxy's listener with 9999 as its original destination; an excluded port
// is not redirected; Remove (twice) leaves no trace.
func TestInstallRedirectRemove(t *testing.T) {
	requireNetAdmin(t)
	proxyNS, peerNS := testNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := Config{ProxyPort: proxyPort, ExcludePorts: []uint16{9998, 15090}}
	for i, c := range []Config{{ProxyPort: 15001, ExcludePorts: []uint16{7}}, cfg, cfg} {
		if err := inNS(proxyNS, func() error { return Install(ctx, c) }); err != nil {
			t.Fatalf("Install #%d: %v", i+1, err)
		}
	}
	want4 := []string{
		":BULKHEAD_INBOUND - [0:0]",
		"-A PREROUTING -p tcp -j BULKHEAD_INBOUND",
		"-A BULKHEAD_INBOUND -i lo -j RETURN",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 9998 -j RETURN",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
		"-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports 15006",
	}
	if diff := cmp.Diff(want4, bulkheadLines(t, proxyNS, "iptables-save")); diff != "" {
		t.Errorf("iptables-save after Install (-want +got):\n%s", diff)
	}
	if v6 := ip6NatWorks(t, proxyNS); v6 {
		if diff := cmp.Diff(want4, bulkheadLines(t, proxyNS, "ip6tables-save")); diff != "" {
			t.Errorf("ip6tables-save after Install (-want +got):\n%s", diff)
		}
	} else {
		t.Log("ip6tables has no nat table here; only IPv4 checked")
	}

	proxyLn := listen(t, proxyNS, "0.0.0.0:15006")
	excludedLn := listen(t, proxyNS, "0.0.0.0:9998")

	// Redirected: 9999 has no listener of its own.
	client := dial(t, ctx, peerNS, proxyIP+":9999")
	conn := accept(t, proxyLn)
	dst, err := OriginalDst(conn)
	if err != nil {
		t.Fatalf("OriginalDst: %v", err)
	}
	if want := netip.MustParseAddrPort(proxyIP + ":9999"); dst != want {
		t.Errorf("OriginalDst = %v, want %v", dst, want)
	}
	if got := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != netip.MustParseAddr(peerIP) {
		t.Errorf("redirected connection from %v, want %s", got, peerIP)
	}
	echo(t, client, conn)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := OriginalDst(conn); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("OriginalDst: %v allocations, want at most 1 (the RawConn)", n)
	}

	// Excluded: reaches its own listener.
	client2 := dial(t, ctx, peerNS, proxyIP+":9998")
	conn2 := accept(t, excludedLn)
	echo(t, client2, conn2)
	if dst, err := OriginalDst(conn2); err != nil || dst != netip.MustParseAddrPort(proxyIP+":9998") {
		t.Errorf("OriginalDst of the excluded connection = %v, %v; want its own destination", dst, err)
	}

	for i := range 2 {
		if err := inNS(proxyNS, func() error { return Remove(ctx) }); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if got := bulkheadLines(t, proxyNS, save); len(got) != 0 {
			t.Errorf("%s after Remove still shows %q", save, got)
		}
	}
	// Without the redirect, 9999 is refused.
	err = inNS(peerNS, func() error {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", proxyIP+":9999")
		if err == nil {
			c.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial 9999 after Remove: %v, want connection refused", err)
	}
}

// TestRemoveAbsent: Remove in a namespace without Bulkhead's rules is fine.
func TestRemoveAbsent(t *testing.T) {
	requireNetAdmin(t)
	ns := newNS(t)
	if err := inNS(ns, func() error { return Remove(context.Background()) }); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

// TestOriginalDstErrors: a connection in a namespace without the redirect
// has no original destination (ENOENT: conntrack does not track it); a
// closed connection is an error too.
func TestOriginalDstErrors(t *testing.T) {
	requireNetAdmin(t)
	proxyNS, peerNS := testNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln := listen(t, proxyNS, proxyIP+":9000")
	client := dial(t, ctx, peerNS, proxyIP+":9000")
	conn := accept(t, ln)
	echo(t, client, conn)
	if dst, err := OriginalDst(conn); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("OriginalDst of a connection never redirected = %v, %v; want ENOENT", dst, err)
	}
	conn.Close()
	if _, err := OriginalDst(conn); err == nil {
		t.Error("OriginalDst of a closed connection succeeded")
	}
}

// TestOriginalDstIPv6 takes the IP6T_SO_ORIGINAL_DST path: inside a fresh
// namespace, an OUTPUT REDIRECT on loopback (::1, which leaves nothing)
// sends port 9999 to the proxy port.
func TestOriginalDstIPv6(t *testing.T) {
	requireNetAdmin(t)
	ns := newNS(t)
	if !ip6NatWorks(t, ns) {
		t.Fatal("ip6tables has no nat table on this host; the IPv6 path cannot be tested")
	}
	err := inNS(ns, func() error {
		out, err := exec.Command("ip6tables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "::1",
			"--dport", "9999", "-j", "REDIRECT", "--to-ports", "15006").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ip6tables: %v", err)
	}
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp6", "[::1]:15006"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var client net.Conn
	if err := inNS(ns, func() (err error) {
		client, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp6", "[::1]:9999")
		return err
	}); err != nil {
		t.Fatalf("dial [::1]:9999: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	conn := accept(t, ln.(*net.TCPListener))
	echo(t, client, conn)
	if dst, err := OriginalDst(conn); err != nil || dst != netip.MustParseAddrPort("[::1]:9999") {
		t.Errorf("OriginalDst = %v, %v; want [::1]:9999", dst, err)
	}
}

func TestUnsupported(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&exec.Error{Name: "ip6tables", Err: exec.ErrNotFound}, true},
		{&cmdError{stderr: "ip6tables v1.8.4 (legacy): can't initialize ip6tables table `nat': Table does not exist (do you need to insmod?)"}, true},
		{&cmdError{stderr: "ip6tables-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: Protocol not supported"}, true},
		{&cmdError{stderr: "ip6tables-restore: line 3 failed"}, false},
		{errors.New("other"), false},
	} {
		if got := unsupported(tc.err); got != tc.want {
			t.Errorf("unsupported(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// requireNetAdmin fails (never skips) when the test cannot do its work.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("capture tests need root (network namespaces, iptables); run them as root")
	}
	for _, bin := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install the iptables package (CI does)", bin)
		}
	}
}

// onNewThread runs fn on a locked OS thread that is thrown away when fn
// returns, so a namespace switch inside fn never reaches other goroutines.
func onNewThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

// inNS runs fn in the network namespace ns. Sockets created by fn stay in
// ns; commands it runs inherit ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	return onNewThread(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		return fn()
	})
}

// newNS creates an unnamed network namespace with lo up; it goes away when
// the test ends and its sockets are closed.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	if err := onNewThread(func() (err error) { ns, err = netns.New(); return err }); err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h := nlHandle(t, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// testNetwork builds two namespaces joined by a veth: the proxy side at
// 198.18.200.1/30 and the peer at 198.18.200.2/30.
func testNetwork(t *testing.T) (proxy, peer netns.NsHandle) {
	t.Helper()
	return testNetworkAt(t, proxyIP+"/30", peerIP+"/30")
}

// testNetworkAt is testNetwork with the given addresses (CIDR notation).
func testNetworkAt(t *testing.T, proxyAddr, peerAddr string) (proxy, peer netns.NsHandle) {
	t.Helper()
	proxy, peer = newNS(t), newNS(t)
	hp, hq := nlHandle(t, proxy), nlHandle(t, peer)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bh-proxy"}, PeerName: "bh-peer", PeerNamespace: netlink.NsFd(int(peer))}
	if err := hp.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		link, addr string
	}{{hp, "bh-proxy", proxyAddr}, {hq, "bh-peer", peerAddr}} {
		l, err := side.h.LinkByName(side.link)
		if err != nil {
			t.Fatalf("%s: %v", side.link, err)
		}
		a, err := netlink.ParseAddr(side.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := side.h.AddrAdd(l, a); err != nil {
			t.Fatalf("%s: add %s: %v", side.link, side.addr, err)
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", side.link, err)
		}
	}
	return proxy, peer
}

// bulkheadLines returns the lines of `<save> -t nat` in ns that mention
// Bulkhead's inbound chain.
func bulkheadLines(t *testing.T, ns netns.NsHandle, save string) []string {
	t.Helper()
	var lines []string
	for _, l := range natLines(t, ns, save) {
		if strings.Contains(l, Chain) {
			lines = append(lines, l)
		}
	}
	return lines
}

// natLines returns the lines of `<save> -t nat` in ns, trimmed.
func natLines(t *testing.T, ns netns.NsHandle, save string) []string {
	t.Helper()
	var out []byte
	err := inNS(ns, func() (err error) {
		out, err = exec.Command(save, "-t", "nat").CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", save, err, out)
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

// ip6NatWorks reports whether ip6tables can use the nat table in ns.
func ip6NatWorks(t *testing.T, ns netns.NsHandle) bool {
	t.Helper()
	return inNS(ns, func() error { return exec.Command("ip6tables", "-w", "-t", "nat", "-S").Run() }) == nil
}

func listen(t *testing.T, ns netns.NsHandle, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func dial(t *testing.T, ctx context.Context, ns netns.NsHandle, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := inNS(ns, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		c, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accept(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	if err := ln.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept on %v: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo checks that bytes flow from client to server.
func echo(t *testing.T, client net.Conn, server *net.TCPConn) {
	t.Helper()
	if err := client.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	if err := server.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := server.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
}

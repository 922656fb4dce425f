package capture

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
)

// The namespace pair of the tests in this file: 198.18.210.0/30 (owner
// exclusion) and 198.18.210.4/30 (Envoy ports), used nowhere else.
const (
	ownerProxyIP = "198.18.210.1"
	ownerPeerIP  = "198.18.210.2"
	envoyProxyIP = "198.18.210.5"
	envoyPeerIP  = "198.18.210.6"
	// proxyUID is the proxy's user (the injector's default); workloadUID
	// another one.
	proxyUID    = 1337
	workloadUID = 1000
)

func uid(u uint32) *uint32 { return &u }

func TestOutboundRulesOwner(t *testing.T) {
	o := Outbound{Port: 15001, DNSPort: 15053, ExcludeUID: uid(1337), ExcludePorts: []uint16{15010}}
	want := `*nat
:BULKHEAD_OUTBOUND - [0:0]
-F BULKHEAD_OUTBOUND
-A BULKHEAD_OUTBOUND -m owner --uid-owner 1337 -j RETURN
-A BULKHEAD_OUTBOUND -o lo -j RETURN
-A BULKHEAD_OUTBOUND -p tcp --dport 15010 -j RETURN
-A BULKHEAD_OUTBOUND -p udp --dport 53 -j REDIRECT --to-ports 15053
-A BULKHEAD_OUTBOUND -p tcp -j REDIRECT --to-ports 15001
COMMIT
`
	for _, v6 := range []bool{false, true} {
		if diff := cmp.Diff(want, outboundRules(o, v6)); diff != "" {
			t.Errorf("v6=%v rules (-want +got):\n%s", v6, diff)
		}
	}
	// Both: the owner first, then the mark.
	o.Mark = 0xb4d
	got := outboundRules(o, false)
	owner, mark := strings.Index(got, "--uid-owner 1337"), strings.Index(got, "--mark 0xb4d")
	if owner < 0 || mark < 0 || owner > mark {
		t.Errorf("with a mark and a uid, want the owner rule then the mark rule:\n%s", got)
	}
}

func TestChainRulesEnvoy(t *testing.T) {
	cfg := Config{ProxyPort: 15006, ExcludePorts: []uint16{15090}, EnvoyPorts: []uint16{8080, 9090}, EnvoyPort: 15016}
	want := `*nat
:BULKHEAD_INBOUND - [0:0]
-F BULKHEAD_INBOUND
-A BULKHEAD_INBOUND -i lo -j RETURN
-A BULKHEAD_INBOUND -p tcp --dport 15090 -j RETURN
-A BULKHEAD_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15016
-A BULKHEAD_INBOUND -p tcp --dport 9090 -j REDIRECT --to-ports 15016
-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports 15006
COMMIT
`
	if diff := cmp.Diff(want, chainRules(cfg, false)); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	cfg.EnvoyPorts = nil
	if got := chainRules(cfg, false); strings.Contains(got, "15016") {
		t.Errorf("no envoy ports, still redirected to envoy:\n%s", got)
	}
}

func TestValidateOwnerAndEnvoy(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"uid only", Config{ProxyPort: 15006, Outbound: Outbound{Port: 15001, ExcludeUID: uid(1337)}}, ""},
		{"uid and mark", Config{ProxyPort: 15006, Outbound: Outbound{Port: 15001, DNSPort: 15053, ExcludeUID: uid(1337), Mark: 1}}, ""},
		{"uid 0", Config{ProxyPort: 15006, Outbound: Outbound{DNSPort: 15053, ExcludeUID: uid(0)}}, ""},
		{"neither uid nor mark", Config{ProxyPort: 15006, Outbound: Outbound{Port: 15001}}, "mark or its excluded uid"},
		{"uid -1", Config{ProxyPort: 15006, Outbound: Outbound{Port: 15001, ExcludeUID: uid(1<<32 - 1)}}, "not a user id"},
		{"uid without outbound", Config{ProxyPort: 15006, Outbound: Outbound{ExcludeUID: uid(1337)}}, "without an outbound or DNS port"},
		{"envoy", Config{ProxyPort: 15006, ExcludePorts: []uint16{15090}, EnvoyPorts: []uint16{8080, 9090}, EnvoyPort: 15016}, ""},
		{"envoy port alone", Config{ProxyPort: 15006, EnvoyPort: 15016}, ""},
		{"envoy ports without port", Config{ProxyPort: 15006, EnvoyPorts: []uint16{8080}}, "without an envoy port"},
		{"envoy port is proxy port", Config{ProxyPort: 15006, EnvoyPorts: []uint16{8080}, EnvoyPort: 15006}, "is the proxy port"},
		{"envoy port 0 listed", Config{ProxyPort: 15006, EnvoyPorts: []uint16{0}, EnvoyPort: 15016}, "port 0"},
		{"excluded and envoy", Config{ProxyPort: 15006, ExcludePorts: []uint16{15090, 8080}, EnvoyPorts: []uint16{8080}, EnvoyPort: 15016}, "both excluded and sent to envoy"},
		{"envoy twice", Config{ProxyPort: 15006, EnvoyPorts: []uint16{8080, 8080}, EnvoyPort: 15016}, "listed twice"},
		{"too many envoy", Config{ProxyPort: 15006, EnvoyPorts: make([]uint16, maxExcludes+1), EnvoyPort: 15016}, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOutboundOwnerExclusion: with the proxy's uid excluded and no mark,
// a process of another user (the workload) that connects out, or sends a
// DNS datagram, lands on the proxy's outbound listener (DNS port), while a
// process running as the proxy's user, without any capability, reaches
// the peer directly: the proxy's own upstream connections do not loop.
func TestOutboundOwnerExclusion(t *testing.T) {
	requireNetAdmin(t)
	bash := lookBash(t)
	proxyNS, peerNS := testNetworkAt(t, ownerProxyIP+"/30", ownerPeerIP+"/30")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := Config{ProxyPort: proxyPort, Outbound: Outbound{Port: 15001, DNSPort: 15053, ExcludeUID: uid(proxyUID)}}
	if err := inNS(proxyNS, func() error { return Install(ctx, cfg) }); err != nil {
		t.Fatalf("Install: %v", err)
	}
	want := []string{
		":BULKHEAD_OUTBOUND - [0:0]",
		"-A OUTPUT -j BULKHEAD_OUTBOUND",
		"-A BULKHEAD_OUTBOUND -m owner --uid-owner 1337 -j RETURN",
		"-A BULKHEAD_OUTBOUND -o lo -j RETURN",
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
	peerDNS := listenUDP(t, peerNS, "0.0.0.0:53")
	proxyDNS := listenUDP(t, proxyNS, "127.0.0.1:15053")

	// TCP. Each process sends its uid, waits for a line back and exits.
	tcp := `exec 3<>/dev/tcp/` + ownerPeerIP + `/9999 || exit 1; printf 'uid %s' "$(id -u)" >&3; read -r -t 5 line <&3; [ "$line" = ok ]`
	for _, tc := range []struct {
		uid uint32
		ln  *net.TCPListener
	}{{workloadUID, outLn}, {proxyUID, peerLn}} {
		p := startAs(t, proxyNS, bash, tc.uid, tcp)
		c := accept(t, tc.ln)
		_ = c.SetDeadline(time.Now().Add(timeout))
		buf := make([]byte, 16)
		n, err := io.ReadAtLeast(c, buf, len("uid ")+len(strconv.Itoa(int(tc.uid))))
		if got, want := string(buf[:n]), "uid "+strconv.Itoa(int(tc.uid)); err != nil || got != want {
			t.Errorf("on %v: read %q, %v; want %q", tc.ln.Addr(), got, err, want)
		}
		if tc.ln == outLn {
			if dst, err := OriginalDst(c); err != nil || dst != netip.MustParseAddrPort(ownerPeerIP+":9999") {
				t.Errorf("OriginalDst of the workload's connection = %v, %v; want %s:9999", dst, err, ownerPeerIP)
			}
		}
		if _, err := c.Write([]byte("ok\n")); err != nil {
			t.Fatal(err)
		}
		p.wait(t)
	}

	// DNS over UDP: the workload's datagram goes to the DNS port, the
	// proxy user's to the nameserver.
	udp := `printf 'uid %s' "$(id -u)" >/dev/udp/` + ownerPeerIP + `/53`
	for _, tc := range []struct {
		uid uint32
		ln  *net.UDPConn
	}{{workloadUID, proxyDNS}, {proxyUID, peerDNS}} {
		startAs(t, proxyNS, bash, tc.uid, udp).wait(t)
		_ = tc.ln.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 64)
		n, err := tc.ln.Read(buf)
		if got, want := string(buf[:n]), "uid "+strconv.Itoa(int(tc.uid)); err != nil || got != want {
			t.Errorf("on %v: read %q, %v; want %q", tc.ln.LocalAddr(), got, err, want)
		}
	}
	if err := inNS(proxyNS, func() error { return Remove(ctx) }); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// TestEnvoyRedirect: connections to the Envoy ports land on EnvoyPort,
// others on ProxyPort, and both keep their original destination.
func TestEnvoyRedirect(t *testing.T) {
	requireNetAdmin(t)
	proxyNS, peerNS := testNetworkAt(t, envoyProxyIP+"/30", envoyPeerIP+"/30")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := Config{ProxyPort: proxyPort, ExcludePorts: []uint16{15090}, EnvoyPorts: []uint16{8080, 9090}, EnvoyPort: DefaultEnvoyPort}
	if err := inNS(proxyNS, func() error { return Install(ctx, cfg) }); err != nil {
		t.Fatalf("Install: %v", err)
	}
	want := []string{
		":BULKHEAD_INBOUND - [0:0]",
		"-A PREROUTING -p tcp -j BULKHEAD_INBOUND",
		"-A BULKHEAD_INBOUND -i lo -j RETURN",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15016",
		"-A BULKHEAD_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 15016",
		"-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports 15006",
	}
	if diff := cmp.Diff(want, bulkheadLines(t, proxyNS, "iptables-save")); diff != "" {
		t.Errorf("iptables-save after Install (-want +got):\n%s", diff)
	}
	proxyLn := listen(t, proxyNS, "0.0.0.0:15006")
	envoyLn := listen(t, proxyNS, "0.0.0.0:15016")
	for _, tc := range []struct {
		port int
		ln   *net.TCPListener
	}{{8080, envoyLn}, {9090, envoyLn}, {7070, proxyLn}} {
		dst := netip.MustParseAddrPort(envoyProxyIP + ":" + strconv.Itoa(tc.port))
		c := dial(t, ctx, peerNS, dst.String())
		got := accept(t, tc.ln)
		echo(t, c, got)
		if od, err := OriginalDst(got); err != nil || od != dst {
			t.Errorf("port %d: OriginalDst = %v, %v; want %v", tc.port, od, err, dst)
		}
	}
	// Without Envoy ports, 8080 goes to the proxy again.
	cfg.EnvoyPorts = nil
	if err := inNS(proxyNS, func() error { return Install(ctx, cfg) }); err != nil {
		t.Fatalf("Install without envoy ports: %v", err)
	}
	echo(t, dial(t, ctx, peerNS, envoyProxyIP+":8080"), accept(t, proxyLn))
	if err := inNS(proxyNS, func() error { return Remove(ctx) }); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

func lookBash(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash not found (its /dev/tcp and /dev/udp make the test's clients): %v", err)
	}
	return p
}

// proc is a process started by startAs.
type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// startAs starts `bash -c script` in ns as uid (and gid) uid, without
// capabilities (a non-root user keeps none across exec).
func startAs(t *testing.T, ns netns.NsHandle, bash string, uid uint32, script string) *proc {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bash, "-c", script)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if err := inNS(ns, cmd.Start); err != nil {
		t.Fatalf("start bash as %d: %v", uid, err)
	}
	p := &proc{cmd: cmd, out: &out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// wait fails the test unless the process exits 0 within the timeout.
func (p *proc) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("uid %d: %v: %s", p.cmd.SysProcAttr.Credential.Uid, err, p.out)
		}
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("uid %d: did not exit: %s", p.cmd.SysProcAttr.Credential.Uid, p.out)
	}
}

func listenUDP(t *testing.T, ns netns.NsHandle, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := inNS(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/capture"
)

// The pod and its peer in TestOutboundOwnerExcluded: 198.18.211.0/30, used
// nowhere else. The peer runs the control plane, redis-server and dnsmasq.
const (
	ownerPodIP  = "198.18.211.1"
	ownerPeerIP = "198.18.211.2"
	// ownerAnswer is what dnsmasq answers for allowed.test.
	ownerAnswer = "198.18.211.9"
	// ownerProxyUID runs the agent (the injector's default), without any
	// capability; ownerWorkloadUID runs the workload's clients.
	ownerProxyUID    = 1337
	ownerWorkloadUID = 1000
	// envChildXDS, set in the environment of a re-executed test binary,
	// makes TestOwnerExcludedChild run the agent against that address.
	envChildXDS = "BULKHEAD_TEST_AGENT_XDS"
)

// TestOutboundOwnerExcluded runs the proxy as the injected sidecar does: as
// user 1337 with no capability and no mark, behind `init --outbound
// --exclude-uid 1337`, in a network namespace whose peer (over a veth)
// holds the control plane, a redis-server and dnsmasq. It shows that the
// proxy's own traffic is not redirected (its control-plane connection
// delivers a policy, its upstream connections and DNS forwarding reach the
// peer without looping back to it) while the workload's, run as another
// user, is redirected and judged: PING is allowed and answered by the real
// server, SET denied with Redis's own error; allowed.test resolves,
// denied.test is REFUSED; the egress flows reach the control plane.
func TestOutboundOwnerExcluded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, iptables, other users); run it as root")
	}
	for _, bin := range []string{"iptables", "redis-server", "redis-cli", "dnsmasq", "dig"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found (iptables, redis-server, redis-tools, dnsmasq, bind9-dnsutils; CI installs them): %v", bin, err)
		}
	}
	pod, peer := vethPair(t, ownerPodIP+"/30", ownerPeerIP+"/30")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The peer: redis-server, dnsmasq, the control plane.
	startIn(t, peer, "redis-server", "--port", "6379", "--bind", ownerPeerIP, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--loglevel", "warning")
	startIn(t, peer, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+ownerPeerIP, "--port=53", "--pid-file=", "--user=root", "--local=/test/",
		"--address=/allowed.test/"+ownerAnswer, "--address=/denied.test/"+ownerAnswer)
	var ln net.Listener
	if err := inNetNS(peer, func() (err error) { ln, err = net.Listen("tcp4", ownerPeerIP+":15010"); return err }); err != nil {
		t.Fatal(err)
	}
	peerNet := &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Cidr{Cidr: ownerPeerIP + "/32"}}
	pol := &bulkheadv1.ProxyPolicy{
		Segment: "app", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT, Revision: "rev-1",
		Egress: []*bulkheadv1.Rule{{
			Name:  "demo/app/redis",
			Peers: []*bulkheadv1.Peer{peerNet},
			Ports: []*bulkheadv1.Port{{Port: 6379, Protocol: "redis"}},
			Redis: &bulkheadv1.RedisMatch{Commands: []string{"PING", "GET"}},
		}, {
			Name:  "demo/app/dns",
			Peers: []*bulkheadv1.Peer{peerNet},
			Ports: []*bulkheadv1.Port{{Port: 53, Protocol: "dns"}},
			L7:    []*bulkheadv1.L7Rule{{Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Exact{Exact: "allowed.test"}}}}},
		}},
	}
	cp := startControlPlaneOn(t, ln, pol, &bulkheadv1.Identity{Workload: "app", Namespace: "demo", Segment: "demo/app", Ips: []string{ownerPodIP}})

	// The pod: the redirect, then the agent as 1337.
	uid := uint32(ownerProxyUID)
	ic := capture.Config{ProxyPort: 15006, ExcludePorts: []uint16{15090}, Outbound: capture.Outbound{
		Port: capture.DefaultOutboundPort, DNSPort: capture.DefaultDNSPort, ExcludeUID: &uid,
	}}
	if err := inNetNS(pod, func() error { return capture.Install(ctx, ic) }); err != nil {
		t.Fatalf("capture: %v", err)
	}
	startAgentAs(t, pod, ownerProxyUID, cp.addr)
	waitFor(t, "the agent's first policy over its unredirected control-plane connection", func() bool {
		return readyIn(pod, "127.0.0.1:15090")
	})

	// The workload.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"allowed redis command", []string{"redis-cli", "-h", ownerPeerIP, "-p", "6379", "PING"}, "PONG"},
		{"denied redis command", []string{"redis-cli", "-h", ownerPeerIP, "-p", "6379", "SET", "k", "v"}, "ERR bulkhead:"},
		{"allowed name", []string{"dig", "+short", "+tries=1", "+time=3", "@" + ownerPeerIP, "allowed.test", "A"}, ownerAnswer},
		{"denied name", []string{"dig", "+tries=1", "+time=3", "@" + ownerPeerIP, "denied.test", "A"}, "status: REFUSED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runIn(pod, ownerWorkloadUID, tc.args...)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Errorf("%s: %v\n%s\nwant %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
	waitFor(t, "the workload's egress flows at the control plane", func() bool {
		var ping, set, allowed, denied bool
		for _, f := range cp.flows() {
			if f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS {
				continue
			}
			allow := f.GetVerdict() == bulkheadv1.Verdict_VERDICT_ALLOW
			deny := f.GetVerdict() == bulkheadv1.Verdict_VERDICT_DENY
			switch {
			case f.GetProtocol() == "redis" && strings.EqualFold(f.GetVerb(), "PING"):
				ping = ping || allow
			case f.GetProtocol() == "redis" && strings.EqualFold(f.GetVerb(), "SET"):
				set = set || deny
			case f.GetProtocol() == "dns" && strings.EqualFold(f.GetResource(), "allowed.test"):
				allowed = allowed || allow
			case f.GetProtocol() == "dns" && strings.EqualFold(f.GetResource(), "denied.test"):
				denied = denied || deny
			}
		}
		return ping && set && allowed && denied
	})
}

// TestOwnerExcludedChild is the agent of TestOutboundOwnerExcluded, in a
// re-executed test binary running as the proxy's user; it does nothing
// unless that test started it.
func TestOwnerExcludedChild(t *testing.T) {
	xds := os.Getenv(envChildXDS)
	if xds == "" {
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(status)) {
		if f := strings.Fields(l); len(f) == 2 && (f[0] == "CapEff:" || f[0] == "CapPrm:") && strings.Trim(f[1], "0") != "" {
			t.Fatalf("the agent has capabilities: %s", l)
		}
	}
	if os.Geteuid() != ownerProxyUID {
		t.Fatalf("running as %d, want %d", os.Geteuid(), ownerProxyUID)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = Run(ctx, Config{
		Node:           node,
		XDSAddr:        xds,
		InboundAddr:    ":15006",
		AdminAddr:      "127.0.0.1:15090",
		CacheDir:       "-",
		ReportInterval: 50 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Trust:          Trust{Insecure: true},
		Outbound: Outbound{
			Enabled:     true,
			Addr:        ":15001",
			DNSAddrs:    []string{"127.0.0.1:15053"},
			DNSUpstream: ownerPeerIP,
			Unmarked:    true,
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// startAgentAs runs TestOwnerExcludedChild from a copy of this test binary
// (one uid may read) in ns as uid, with no capability (a non-root user
// keeps none across exec). It is stopped with SIGTERM when the test ends
// and must then exit cleanly.
func startAgentAs(t *testing.T, ns netns.NsHandle, uid uint32, xds string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bulkhead-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "agent.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestOwnerExcludedChild$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{envChildXDS + "=" + xds, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out syncWriter
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if err := inNetNS(ns, cmd.Start); err != nil {
		t.Fatalf("start the agent as %d: %v", uid, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent as %d: %v\n%s", uid, err, out.String())
			}
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("agent as %d did not stop on SIGTERM\n%s", uid, out.String())
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
}

// syncWriter collects a process's two output streams.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// startIn starts a server in ns (as root), killed with its process group
// when the test ends, and waits until it listens.
func startIn(t *testing.T, ns netns.NsHandle, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out syncWriter
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := inNetNS(ns, cmd.Start); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	port := map[string]string{"redis-server": "6379", "dnsmasq": "53"}[name]
	waitFor(t, name, func() bool {
		return inNetNS(ns, func() error {
			c, err := net.DialTimeout("tcp4", ownerPeerIP+":"+port, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
}

// runIn runs a command in ns as uid and returns its output.
func runIn(ns netns.NsHandle, uid uint32, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var out []byte
	err := inNetNS(ns, func() (err error) { out, err = cmd.CombinedOutput(); return err })
	return string(out), err
}

// readyIn reports whether GET /readyz on addr in ns answers 200.
func readyIn(ns netns.NsHandle, addr string) bool {
	var ok bool
	_ = inNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		ok = err == nil && strings.Contains(line, " 200 ")
		return err
	})
	return ok
}

// inNetNS runs fn on a fresh locked OS thread in ns; the thread is thrown
// away afterwards. Sockets fn opens stay in ns, processes it starts run
// there.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// vethPair makes two network namespaces (lo up) joined by a veth with the
// given addresses; they go away when the test ends.
func vethPair(t *testing.T, addrA, addrB string) (a, b netns.NsHandle) {
	t.Helper()
	newNS := func() netns.NsHandle {
		var ns netns.NsHandle
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			var err error
			ns, err = netns.New()
			errc <- err
		}()
		if err := <-errc; err != nil {
			t.Fatalf("new network namespace: %v", err)
		}
		t.Cleanup(func() { ns.Close() })
		return ns
	}
	a, b = newNS(), newNS()
	ha, err := netlink.NewHandleAt(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bh-pod"}, PeerName: "bh-peer", PeerNamespace: netlink.NsFd(int(b))}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		link, addr string
	}{{ha, "bh-pod", addrA}, {hb, "bh-peer", addrB}, {ha, "lo", ""}, {hb, "lo", ""}} {
		l, err := side.h.LinkByName(side.link)
		if err != nil {
			t.Fatalf("%s: %v", side.link, err)
		}
		if side.addr != "" {
			ad, err := netlink.ParseAddr(side.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := side.h.AddrAdd(l, ad); err != nil {
				t.Fatalf("%s: add %s: %v", side.link, side.addr, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", side.link, err)
		}
	}
	return a, b
}

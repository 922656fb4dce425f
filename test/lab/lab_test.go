package lab

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// needRoot fails tests that build namespaces when they cannot (skipped
// only in -short mode): a missing prerequisite is something to install,
// not a pass.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("network-namespace test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces; run make test as root, or go test -short")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (see .ci/run for the packages): %v", tool, err)
		}
	}
}

func newLab(t *testing.T, prefix, subnet string) *Lab {
	t.Helper()
	l, err := New(t.Context(), Options{Prefix: prefix, Subnet: netip.MustParsePrefix(subnet), Grace: time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func TestOptionsValidated(t *testing.T) {
	ok := netip.MustParsePrefix("198.18.7.0/24")
	for name, o := range map[string]Options{
		"empty prefix":   {Subnet: ok},
		"long prefix":    {Prefix: "abcdefghijk", Subnet: ok},
		"dash in prefix": {Prefix: "bh-1", Subnet: ok},
		"upper prefix":   {Prefix: "BH", Subnet: ok},
		"no subnet":      {Prefix: "bh"},
		"outside 198.18": {Prefix: "bh", Subnet: netip.MustParsePrefix("10.0.0.0/24")},
		"too wide":       {Prefix: "bh", Subnet: netip.MustParsePrefix("198.0.0.0/8")},
		"host bits":      {Prefix: "bh", Subnet: netip.MustParsePrefix("198.18.7.1/24")},
		"too narrow":     {Prefix: "bh", Subnet: netip.MustParsePrefix("198.18.7.0/30")},
		"ipv6":           {Prefix: "bh", Subnet: netip.MustParsePrefix("2001:db8::/64")},
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := New(t.Context(), o); err == nil {
				l.Close()
				t.Fatalf("New(%+v) succeeded, want an error", o)
			}
		})
	}
}

func TestLab(t *testing.T) {
	needRoot(t, "redis-server", "redis-cli")
	ctx := t.Context()
	l := newLab(t, "bhlab", "198.18.254.0/24")

	a, err := l.AddHost("alpha")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("beta")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddHost("alpha"); err == nil {
		t.Error("a second host alpha was accepted")
	}
	for _, bad := range []string{"Bad-Name", "sw", "root", "br0", "", "abcdefghijklm"} {
		if _, err := l.AddHost(bad); err == nil {
			t.Errorf("host name %q was accepted", bad)
		}
	}
	if got, want := l.HostAddr(), netip.MustParseAddr("198.18.254.1"); got != want {
		t.Errorf("HostAddr = %v, want %v", got, want)
	}
	if got, want := a.Addr(), netip.MustParseAddr("198.18.254.2"); got != want {
		t.Errorf("alpha.Addr = %v, want %v", got, want)
	}
	if got, want := b.Addr(), netip.MustParseAddr("198.18.254.3"); got != want {
		t.Errorf("beta.Addr = %v, want %v", got, want)
	}
	if l.Host("beta") != b || l.Host("gamma") != nil {
		t.Error("Host lookup is wrong")
	}

	t.Run("namespace layout", func(t *testing.T) {
		out, err := a.Run(ctx, "ip", "-o", "-4", "addr", "show")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "eth0    inet 198.18.254.2/24") || !strings.Contains(string(out), "lo    inet 127.0.0.1/8") {
			t.Errorf("alpha's addresses:\n%s", out)
		}
		out, err = a.Run(ctx, "ip", "route", "show", "default")
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("alpha has a default route: %s", out)
		}
		// Nothing is routed off the lab.
		_, err = a.DialContext(ctx, "tcp", "198.19.0.1:80")
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("dial off the lab from alpha: %v, want network unreachable", err)
		}
		fwd, err := os.ReadFile("/proc/sys/net/ipv4/conf/bhlab-h/forwarding")
		if err != nil || strings.TrimSpace(string(fwd)) != "0" {
			t.Errorf("forwarding on bhlab-h = %q, %v; want 0", fwd, err)
		}
	})

	t.Run("redis across the bridge", func(t *testing.T) {
		srv, err := b.Start(ctx, "redis-server", "--bind", b.Addr().String(), "--port", "6379",
			"--save", "", "--appendonly", "no", "--protected-mode", "no")
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := WaitTCP(wctx, a, netip.AddrPortFrom(b.Addr(), 6379)); err != nil {
			t.Fatalf("%v\nredis-server: %s", err, srv.Tail(10))
		}
		out, err := a.Run(ctx, "redis-cli", "-h", b.Addr().String(), "PING")
		if err != nil || strings.TrimSpace(string(out)) != "PONG" {
			t.Errorf("redis-cli PING from alpha = %q, %v; want PONG", out, err)
		}
		// The machine reaches the workloads too.
		if err := WaitTCP(wctx, nil, netip.AddrPortFrom(b.Addr(), 6379)); err != nil {
			t.Error(err)
		}
		// redis-server is bound to beta's eth0 address only: not on lo.
		if _, err := b.Run(ctx, "redis-cli", "-h", "127.0.0.1", "PING"); err == nil {
			t.Error("redis-cli to 127.0.0.1 in beta succeeded; redis-server should be bound to eth0 only")
		}
		srv.Stop()
		if exited, _ := srv.Exited(); !exited {
			t.Error("redis-server still runs after Stop")
		}
		if srv.Err() == nil {
			t.Error("Err of a stopped process is nil")
		}
	})

	t.Run("machine reachable from a workload", func(t *testing.T) {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(l.HostAddr(), 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hello\n"))
				c.Close()
			}
		}()
		c, err := a.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 16)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		if string(buf[:n]) != "hello\n" {
			t.Errorf("read %q from the machine, want hello", buf[:n])
		}
		if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != a.Addr() {
			t.Errorf("connection came from %v, want alpha's %v", got, a.Addr())
		}
	})

	t.Run("run error carries output", func(t *testing.T) {
		_, err := a.Run(ctx, "sh", "-c", "echo something went wrong >&2; exit 3")
		if err == nil || !strings.Contains(err.Error(), "something went wrong") {
			t.Errorf("Run error = %v, want the command's output in it", err)
		}
	})

	// A process left running is stopped by Close; every name goes.
	sleeper, err := a.Start(ctx, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	hostSleeper, err := l.Root().Start(ctx, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	dir := l.Dir()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, p := range []*Proc{sleeper, hostSleeper} {
		if exited, _ := p.Exited(); !exited {
			t.Errorf("pid %d still runs after Close", p.Pid())
		}
	}
	assertGone(t, "bhlab")
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab dir %s still exists: %v", dir, err)
	}
	if _, err := a.Start(ctx, "true"); err == nil {
		t.Error("Start after Close succeeded")
	}
	// Every process waiter and namespace thread is gone.
	goleak.VerifyNone(t)
}

// TestSweepAfterCrash leaves a lab running, as a crashed run would, and
// checks that the next New with the same prefix removes it all.
func TestSweepAfterCrash(t *testing.T) {
	needRoot(t)
	ctx := t.Context()
	old, err := New(ctx, Options{Prefix: "bhsweep", Subnet: netip.MustParsePrefix("198.18.253.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	h, err := old.AddHost("w")
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Start(ctx, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	oldDir := old.Dir()
	// A crashed run's processes run in their namespace: wait until `ip
	// netns exec` has entered it and exec'd sleep.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/comm")
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep did not start: %s", p.Tail(5))
		}
	}

	l := newLab(t, "bhsweep", "198.18.253.0/24")
	if _, err := os.Stat(oldDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the crashed run's dir %s survived the sweep: %v", oldDir, err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Error("the crashed run's process survived the sweep")
	}
	if _, err := os.Stat("/var/run/netns/bhsweep-w"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the crashed run's namespace survived the sweep: %v", err)
	}
	if _, err := l.AddHost("w"); err != nil {
		t.Fatalf("AddHost after sweep: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, "bhsweep")

	// A kept dir is not a leftover.
	kept, err := New(ctx, Options{Prefix: "bhsweep", Subnet: netip.MustParsePrefix("198.18.253.0/24"), KeepDir: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Close(); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(kept.Dir())
	if err := Sweep("bhsweep"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept.Dir()); err != nil {
		t.Errorf("Sweep removed the kept dir: %v", err)
	}
}

func TestSubnetInUse(t *testing.T) {
	needRoot(t)
	newLab(t, "bhsub", "198.18.252.0/24")
	if l, err := New(t.Context(), Options{Prefix: "bhsubb", Subnet: netip.MustParsePrefix("198.18.252.0/24")}); err == nil {
		l.Close()
		t.Fatal("a second lab on the same subnet was accepted")
	}
	assertGone(t, "bhsubb")
}

func assertGone(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			t.Errorf("namespace left behind: %s", line)
		}
	}
	links, err := listLinks()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if strings.HasPrefix(link.Attrs().Name, prefix+"-") {
			t.Errorf("link left behind: %s", link.Attrs().Name)
		}
	}
}

package agent

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/capture"
)

func TestDNSUpstream(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k8s := write("k8s", "search demo.svc.cluster.local svc.cluster.local\n# comment\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n")
	none := write("none", "search x\n")
	for _, tc := range []struct {
		name string
		o    Outbound
		want string // "" = error
	}{
		{"first nameserver", Outbound{ResolvConf: k8s}, "10.96.0.10:53"},
		{"flag wins", Outbound{ResolvConf: k8s, DNSUpstream: "198.18.0.53"}, "198.18.0.53:53"},
		{"flag with port", Outbound{DNSUpstream: "198.18.0.53:5353"}, "198.18.0.53:5353"},
		{"IPv6", Outbound{DNSUpstream: "2001:db8::53"}, "[2001:db8::53]:53"},
		{"no nameserver", Outbound{ResolvConf: none}, ""},
		{"no file", Outbound{ResolvConf: filepath.Join(dir, "missing")}, ""},
		{"bad flag", Outbound{DNSUpstream: "dns.example"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dnsUpstream(tc.o)
			if tc.want == "" {
				if err == nil {
					t.Errorf("dnsUpstream = %v, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Errorf("dnsUpstream = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestRunOutbound: with Outbound on, Run also serves the outbound listener
// and the DNS proxy, judged by the same policy (here: no egress rule, in
// protect mode, so a query is refused and a connection reset), and its
// control-plane connection carries the mark.
func TestRunOutbound(t *testing.T) {
	redis := startRedis(t)
	cp := startControlPlane(t, protectPolicy(redis.Port()), cart)
	dnsPort := freePort(t)
	cfg := Config{
		Node:           node,
		XDSAddr:        cp.addr,
		InboundAddr:    "127.0.0.1:" + strconv.Itoa(freePort(t)),
		AdminAddr:      "127.0.0.1:" + strconv.Itoa(freePort(t)),
		CacheDir:       "-",
		ReportInterval: 50 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OriginalDst:    func(*net.TCPConn) (netip.AddrPort, error) { return redis, nil },
		Trust:          Trust{Insecure: true}, // the fake control plane is plaintext; trust_test.go covers TLS
		Outbound: Outbound{
			Enabled:     true,
			Addr:        "127.0.0.1:" + strconv.Itoa(freePort(t)),
			DNSAddrs:    []string{"127.0.0.1:" + strconv.Itoa(dnsPort)},
			DNSUpstream: "127.0.0.1:1",
			Mark:        capture.DefaultMark,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	r := &running{cfg: cfg, stop: stop}
	waitFor(t, "a policy from the control plane over the marked connection", func() bool {
		code, err := r.get("/readyz")
		return err == nil && code == 200
	})

	// DNS: no egress rule allows the query: REFUSED by the proxy.
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 5, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("example.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(dnsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	var m dnsmessage.Message
	if err == nil {
		err = m.Unpack(buf[:n])
	}
	if err != nil || m.ID != 5 || m.RCode != dnsmessage.RCodeRefused {
		t.Errorf("DNS answer %+v, %v; want REFUSED", m.Header, err)
	}

	// TCP: the outbound listener refuses a connection no egress rule allows.
	oc, err := net.DialTimeout("tcp", cfg.Outbound.Addr, 2*time.Second)
	if err == nil {
		_ = oc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = oc.Write([]byte("PING\r\n"))
		n, err = oc.Read(buf)
		oc.Close()
		if n > 0 || err == nil {
			t.Errorf("outbound connection answered %q, %v; want it reset", buf[:n], err)
		}
	}
	waitFor(t, "egress flows reported", func() bool {
		var dns, tcp bool
		for _, f := range cp.flows() {
			if f.GetDirection() == bulkheadv1.Direction_DIRECTION_EGRESS && f.GetVerdict() == bulkheadv1.Verdict_VERDICT_DENY {
				dns = dns || f.GetProtocol() == "dns" && strings.EqualFold(f.GetResource(), "example.test")
				tcp = tcp || f.GetConnection()
			}
		}
		return dns && tcp
	})
	stop()
}

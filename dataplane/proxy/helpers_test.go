package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/redis"
)

// Test addresses: the client "cart" connects from 127.0.0.1, a known
// workload; 127.0.0.2 is an unknown peer.
var (
	cartIP    = netip.MustParseAddr("127.0.0.1")
	strangeIP = netip.MustParseAddr("127.0.0.2")
)

// startRedis runs a redis-server on a free loopback port for the test and
// returns its address.
func startRedis(t testing.TB) netip.AddrPort {
	t.Helper()
	var lastErr error
	for range 5 {
		port := freePort(t)
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		if lastErr = waitRedis(addr); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			return addr
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Fatalf("redis-server did not come up: %v", lastErr)
	return netip.AddrPort{}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitRedis waits until redis answers PING at addr.
func waitRedis(addr netip.AddrPort) error {
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			_ = c.Close()
			if err == nil && string(buf) == "+PONG\r\n" {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("PING answered %q", buf)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// spec describes a test policy: the workload's Redis port, the mode, the
// commands the client segment demo/cart may run, and whether the port is
// declared (else it is sniffed) and with which protocol.
type spec struct {
	mode     bulkheadv1.Mode
	port     uint16
	commands []string
	// undeclared: leave the port out of ProxyPolicy.ports.
	undeclared bool
	// protocol of the port, "redis" by default.
	protocol string
}

func compile(t testing.TB, s spec) *enforce.Policy {
	t.Helper()
	proto := s.protocol
	if proto == "" {
		proto = "redis"
	}
	pp := &bulkheadv1.ProxyPolicy{
		Segment:   "redis",
		Namespace: "demo",
		Mode:      s.mode,
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/redis/from-cart",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: uint32(s.port), Protocol: proto}},
		}},
		Revision: "test",
	}
	if len(s.commands) > 0 {
		pp.Ingress[0].Redis = &bulkheadv1.RedisMatch{Commands: s.commands}
	}
	if !s.undeclared {
		pp.Ports = []*bulkheadv1.Port{{Port: uint32(s.port), Protocol: proto}}
	}
	ids := []*bulkheadv1.Identity{
		{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{cartIP.String()}},
	}
	pol, err := enforce.Compile(pp, ids)
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return pol
}

// harness is a running proxy in front of a real redis-server (or of another
// real server, newHarnessAt).
type harness struct {
	t      *testing.T
	redis  netip.AddrPort // the server's address
	engine *enforce.Engine
	agg    *report.Aggregator
	reg    *prometheus.Registry
	addr   string // the proxy's listener
	// stop ends the proxy and waits for Start to return; idempotent.
	stop func()
}

type harnessOpt func(*proxy.Config)

// policyFn builds a test policy for the redis server at r.
type policyFn func(t testing.TB, r netip.AddrPort) *enforce.Policy

// newHarness starts redis and a proxy whose OriginalDst says every
// connection was meant for redis; pol builds the initial policy from the
// redis address (nil: no policy).
func newHarness(t *testing.T, pol policyFn, opts ...harnessOpt) *harness {
	t.Helper()
	return newHarnessAt(t, startRedis(t), pol, opts...)
}

// newHarnessAt is newHarness in front of the server at upstream (h.redis
// is then that server's address).
func newHarnessAt(t *testing.T, upstream netip.AddrPort, pol policyFn, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, redis: upstream, engine: &enforce.Engine{}, agg: report.NewAggregator(0), reg: prometheus.NewRegistry()}
	if pol != nil {
		h.engine.Store(pol(t, h.redis))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	cfg := proxy.Config{
		Listener:    ln,
		Engine:      h.engine,
		Protocols:   []l7.Protocol{redis.Protocol()},
		Aggregator:  h.agg,
		Metrics:     metrics.New(h.reg),
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits:      proxy.Limits{DrainTimeout: 2 * time.Second},
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) { return h.redis, nil },
	}
	for _, o := range opts {
		o(&cfg)
	}
	p := proxy.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
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
	}
	t.Cleanup(h.stop)
	return h
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// dial connects to the proxy from src (cartIP when invalid).
func (h *harness) dial(src netip.Addr) *net.TCPConn {
	h.t.Helper()
	if !src.IsValid() {
		src = cartIP
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatalf("dial proxy: %v", err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// expectRefused connects from src and expects the proxy to close or reset
// the connection without a word (the reset may arrive while connecting).
func (h *harness) expectRefused(src netip.Addr) {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write(cmd("PING"))
	waitClosed(h.t, c)
}

// cmd encodes a command as a RESP multibulk request.
func cmd(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// replyReader splits a connection's bytes into whole Redis replies with the
// real parser.
type replyReader struct {
	c   net.Conn
	p   *redis.Parser
	buf []byte
}

func newReplyReader(c net.Conn) *replyReader { return &replyReader{c: c, p: redis.NewParser()} }

// next returns the next whole reply, raw.
func (r *replyReader) next() (string, error) {
	var f l7.Frame
	for {
		if len(r.buf) > 0 {
			op, n, err := r.p.Parse(l7.DirReply, r.buf, &f)
			if err != nil {
				return "", err
			}
			if op != l7.OpMore {
				s := string(r.buf[:n])
				r.buf = r.buf[n:]
				if op == l7.OpSkip {
					continue
				}
				return s, nil
			}
		}
		tmp := make([]byte, 64<<10)
		n, err := r.c.Read(tmp)
		r.buf = append(r.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return "", err
		}
	}
}

func (r *replyReader) mustNext(t *testing.T) string {
	t.Helper()
	s, err := r.next()
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return s
}

// roundTrip sends one request and returns its reply.
func roundTrip(t *testing.T, c net.Conn, r *replyReader, req []byte) string {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	return r.mustNext(t)
}

// isDeny reports whether a reply is the proxy's Redis denial.
func isDeny(reply string) bool { return strings.HasPrefix(reply, "-ERR bulkhead: ") }

// waitClosed waits until the peer closes or resets c; it fails if c
// delivers data or stays open.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if n > 0 {
		t.Fatalf("got %q, want the connection closed", buf[:n])
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open: %v", err)
	}
}

// counter returns the value of a counter or gauge with the given labels.
func (h *harness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m.GetLabel(), labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func matchLabels(got []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		ok := false
		for _, l := range got {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// flows drains the aggregator.
func (h *harness) flows() []*bulkheadv1.Flow {
	f, _ := h.agg.Drain(time.Now())
	return f
}

// findFlow returns the first flow matching pred.
func findFlow(flows []*bulkheadv1.Flow, pred func(*bulkheadv1.Flow) bool) *bulkheadv1.Flow {
	for _, f := range flows {
		if pred(f) {
			return f
		}
	}
	return nil
}

func flowString(flows []*bulkheadv1.Flow) string {
	var b bytes.Buffer
	for _, f := range flows {
		fmt.Fprintf(&b, "\n  conn=%v %s %s|%s %s reason=%q rule=%q count=%d", f.GetConnection(), f.GetProtocol(),
			f.GetVerb(), f.GetSub(), f.GetVerdict(), f.GetReason(), f.GetRule(), f.GetCount())
	}
	return b.String()
}

package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/bulkhead-io/bulkhead/dataplane/capture"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/all"
)

// Defaults of Outbound.
const (
	DefaultOutboundAddr = ":15001"
	DefaultResolvConf   = "/etc/resolv.conf"
)

// DefaultDNSAddrs are the DNS proxy's sockets: loopback, where capture's
// UDP/53 redirect sends the workload's queries (the IPv6 one only where
// the namespace has ::1).
var DefaultDNSAddrs = []string{"127.0.0.1:15053", "[::1]:15053"}

// Outbound configures the workload's egress side: the outbound proxy and the
// DNS proxy. The zero value runs neither.
type Outbound struct {
	// Enabled runs them.
	Enabled bool
	// Addr is the outbound proxy's listener (DefaultOutboundAddr).
	Addr string
	// DNSAddrs are the DNS proxy's UDP sockets (DefaultDNSAddrs). Of the
	// defaults, one that cannot be bound (no IPv6) is skipped; an address
	// given that cannot be bound is an error.
	DNSAddrs []string
	// DNSUpstream is the nameserver queries are forwarded to, "ip" or
	// "ip:port". Empty: the first nameserver of ResolvConf, port 53 —
	// where the workload sends its queries.
	DNSUpstream string
	// ResolvConf is read for the default upstream (DefaultResolvConf).
	ResolvConf string
	// Mark is the SO_MARK of the proxy's own sockets, which the outbound
	// redirect leaves alone (capture.DefaultMark): upstream connections,
	// DNS forwarding and the control-plane connection. It must equal
	// `init --mark`. With Unmarked it must be 0.
	Mark uint32
	// Unmarked runs the egress side without a mark (Mark 0, no
	// CAP_NET_ADMIN needed): the redirect leaves the proxy's own user
	// alone instead (`init --exclude-uid <the proxy's uid>`), which is how
	// the injected sidecar runs. Its sockets, the control-plane
	// connection's included, are then the proxy user's, not marked.
	Unmarked bool
	// Names shapes the table of names learned from DNS answers.
	Names enforce.NamesOptions
	// DNSLimits bound the DNS proxy.
	DNSLimits proxy.DNSLimits
}

func (o Outbound) withDefaults() Outbound {
	if !o.Enabled {
		return o
	}
	if o.Addr == "" {
		o.Addr = DefaultOutboundAddr
	}
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.Mark == 0 && !o.Unmarked {
		o.Mark = capture.DefaultMark
	}
	return o
}

// outbound is the egress side while it runs: its sockets, opened before
// anything starts so that a bad address fails Run at once.
type outbound struct {
	a        *agent
	ln       net.Listener
	dns      []*net.UDPConn
	upstream netip.AddrPort
	names    *enforce.Names
}

// startOutbound opens the egress side's sockets; nothing when disabled.
func (a *agent) startOutbound(ctx context.Context) (*outbound, error) {
	o := a.cfg.Outbound
	out := &outbound{a: a}
	if !o.Enabled {
		return out, nil
	}
	if o.Unmarked && o.Mark != 0 {
		return nil, fmt.Errorf("agent: outbound: mark %#x given with unmarked (the proxy's user is excluded instead)", o.Mark)
	}
	up, err := dnsUpstream(o)
	if err != nil {
		return nil, fmt.Errorf("agent: dns upstream: %w", err)
	}
	out.upstream = up
	out.names = enforce.NewNames(o.Names)
	out.ln, err = proxy.Listen(ctx, o.Addr)
	if err != nil {
		return nil, fmt.Errorf("agent: listen on outbound address %s: %w", o.Addr, err)
	}
	addrs, defaults := o.DNSAddrs, len(o.DNSAddrs) == 0
	if defaults {
		addrs = DefaultDNSAddrs
	}
	for _, s := range addrs {
		ap, err := netip.ParseAddrPort(s)
		var c *net.UDPConn
		if err == nil {
			c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		}
		if err != nil {
			if defaults && len(out.dns) > 0 {
				a.log.Info("dns proxy: address skipped", "addr", s, "err", err)
				continue
			}
			out.close()
			return nil, fmt.Errorf("agent: dns proxy on %s: %w", s, err)
		}
		out.dns = append(out.dns, c)
	}
	return out, nil
}

// run starts the outbound proxy and the DNS proxy in g.
func (out *outbound) run(g *errgroup.Group, ctx context.Context, agg *report.Aggregator) {
	if out.ln == nil {
		return
	}
	a, o := out.a, out.a.cfg.Outbound
	px := proxy.New(proxy.Config{
		Listener:      out.ln,
		Outbound:      true,
		Mark:          o.Mark,
		OwnerExcluded: o.Unmarked,
		Names:         out.names,
		NameServers:   []netip.Addr{out.upstream.Addr()},
		Engine:        a.engine,
		Protocols:     all.Protocols(),
		Aggregator:    agg,
		Metrics:       a.met,
		Logger:        a.log,
		Limits:        a.cfg.Limits,
		OriginalDst:   a.cfg.OriginalDst,
	})
	dp := proxy.NewDNS(proxy.DNSConfig{
		Conns:      out.dns,
		Upstream:   out.upstream,
		Engine:     a.engine,
		Names:      out.names,
		Aggregator: agg,
		Metrics:    a.met,
		Logger:     a.log,
		Mark:       o.Mark,
		Limits:     o.DNSLimits,
	})
	g.Go(func() error { return px.Start(ctx) })
	g.Go(func() error { return dp.Start(ctx) })
}

// close releases the sockets of an egress side that will not run.
func (out *outbound) close() {
	if out == nil {
		return
	}
	if out.ln != nil {
		_ = out.ln.Close()
	}
	for _, c := range out.dns {
		_ = c.Close()
	}
}

// dnsUpstream is the nameserver DNS queries go to: DNSUpstream, else the
// first nameserver of ResolvConf, port 53 unless given.
func dnsUpstream(o Outbound) (netip.AddrPort, error) {
	s := o.DNSUpstream
	if s == "" {
		var err error
		if s, err = firstNameserver(o.ResolvConf); err != nil {
			return netip.AddrPort{}, err
		}
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

// firstNameserver returns the first "nameserver" of a resolv.conf.
func firstNameserver(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "", fmt.Errorf("no nameserver in %s (set the DNS upstream)", path)
}

// controlPlaneDial returns the gRPC target and dial options for the control
// plane. With outbound capture, the connection (and the name lookup of its
// address) carries the mark, so that the redirect does not send the
// proxy's own control-plane traffic through the workload's egress policy;
// unmarked (Outbound.Unmarked), the redirect leaves the proxy's user alone
// and the dial is a plain one.
func controlPlaneDial(cfg Config) (string, []grpc.DialOption) {
	if !cfg.Outbound.Enabled || cfg.Outbound.Mark == 0 {
		return cfg.XDSAddr, nil
	}
	control := capture.MarkControl(cfg.Outbound.Mark)
	d := &net.Dialer{
		Control: control,
		Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return (&net.Dialer{Control: control, Timeout: 5 * time.Second}).DialContext(ctx, network, address)
		}},
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	// passthrough: the address reaches the dialer as written, resolved
	// by the marked resolver rather than gRPC's own.
	return "passthrough:///" + cfg.XDSAddr, []grpc.DialOption{grpc.WithContextDialer(dial)}
}

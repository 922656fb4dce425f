package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/capture"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Defaults of Limits; a zero field takes its default.
const (
	DefaultAddr         = ":15006"
	DefaultOutboundAddr = ":15001"
	DefaultMaxConns     = 8192
	DefaultMaxMessage   = 64 << 20
	DefaultIdleTimeout  = time.Hour
	DefaultDialTimeout  = 5 * time.Second
	DefaultSniffTimeout = 200 * time.Millisecond
	DefaultDrainTimeout = 10 * time.Second
	// DefaultMessageTimeout, DefaultMessageMinRate and
	// DefaultFirstMessageTimeout are the slowloris bounds (see Limits).
	DefaultMessageTimeout      = 10 * time.Second
	DefaultMessageMinRate      = 1 << 10
	DefaultFirstMessageTimeout = 30 * time.Second

	// initialBuffer is the size each direction's buffer of an L7
	// connection starts with; it doubles on demand up to MaxMessage.
	initialBuffer = 4 << 10
)

// Limits bound what one proxy and one connection may use. The zero value
// means every default.
type Limits struct {
	// MaxConns is the most connections handled at once; beyond it new
	// connections are reset and counted as overload. Default 8192.
	MaxConns int
	// MaxMessage is the per-connection, per-direction buffer ceiling: the
	// largest single L7 message (request or reply) the proxy will hold.
	// A protocol with a smaller l7.Protocol.MaxMessage uses its own. A
	// longer message closes the connection as over the limit. Default 64
	// MiB, the Redis parser's own limit; buffers grow to it only on demand.
	MaxMessage int
	// IdleTimeout closes an L7 connection on which neither side has sent
	// anything for that long. Default 1h; negative disables it. L4
	// (spliced) connections have no idle timeout and rely on TCP.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting to the original destination. Default 5s.
	DialTimeout time.Duration
	// SniffTimeout bounds waiting for the first bytes on a port without a
	// declared protocol: the client's, or the workload's when a configured
	// protocol is ServerFirst. A connection on which neither side says
	// anything in time is treated as L4. Default 200ms.
	SniffTimeout time.Duration
	// DrainTimeout is how long Start lets open connections finish after
	// its context is done before it closes them. Default 10s.
	DrainTimeout time.Duration
	// MessageTimeout bounds a request that has begun (slowloris): once the
	// first bytes of a request are held by the proxy, the whole request
	// must arrive within MessageTimeout, plus one second for every
	// MessageMinRate bytes of it received so far (the rule of Apache's
	// mod_reqtimeout: a large message streamed at a fair rate is not cut,
	// one dribbled a byte at a time is). A request over the bound is a
	// limit violation: reported (deny in protect mode), counted as
	// limit="message_timeout", and the client is reset. It applies to the
	// client's direction of L7 connections only, and only to bytes the
	// proxy holds (an incomplete frame); a body the parser streams
	// through (l7.OpSkip) counts as progress with each read and is bound
	// by IdleTimeout. Default 10s; negative disables it.
	MessageTimeout time.Duration
	// MessageMinRate is the rate in bytes per second above which a long
	// request earns more time under MessageTimeout. Default 1 KiB/s.
	MessageMinRate int
	// FirstMessageTimeout closes an L7 connection whose client has sent
	// nothing that long after the proxy connected it to the workload
	// (clients of server-first protocols answer the greeting at once).
	// It is reported and counted as
	// limit="first_message_timeout", and the client is reset. Clients
	// that open pools of connections ahead of use send their handshake
	// (HELLO, a startup message, ApiVersions) at once, so the default is
	// generous: 30s; negative disables it.
	FirstMessageTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultMaxMessage
	}
	if l.MaxMessage < initialBuffer {
		l.MaxMessage = initialBuffer
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.DialTimeout <= 0 {
		l.DialTimeout = DefaultDialTimeout
	}
	if l.SniffTimeout <= 0 {
		l.SniffTimeout = DefaultSniffTimeout
	}
	if l.DrainTimeout <= 0 {
		l.DrainTimeout = DefaultDrainTimeout
	}
	if l.MessageTimeout == 0 {
		l.MessageTimeout = DefaultMessageTimeout
	}
	if l.MessageMinRate <= 0 {
		l.MessageMinRate = DefaultMessageMinRate
	}
	if l.FirstMessageTimeout == 0 {
		l.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	return l
}

// Config is what a Proxy needs. Engine is required; every other field has a
// documented zero value.
type Config struct {
	// Listener is the listener (the REDIRECT target). Start takes
	// ownership and closes it. When nil, Start listens on Addr.
	Listener net.Listener
	// Addr is the address to listen on when Listener is nil. Default
	// ":15006" (":15001" with Outbound).
	Addr string
	// Outbound makes this the outbound proxy: the listener receives the
	// workload's own connections (capture's OUTPUT redirect), which are
	// judged by the egress rules (enforce.Policy.OutboundNamed) under the
	// segment's mode, and whose protocol is the one the egress rules give
	// the destination port (sniffed when they give none or several).
	Outbound bool
	// Mark is the SO_MARK of the proxy's upstream connections
	// (capture.MarkControl), which the outbound redirect leaves alone.
	// Required with Outbound (or the upstream connection would be
	// redirected to the proxy again) unless OwnerExcluded; 0 otherwise:
	// no mark.
	Mark uint32
	// OwnerExcluded says that the outbound redirect leaves the proxy's
	// own user alone (capture.Outbound.ExcludeUID): an outbound proxy
	// may then run without a mark (and without CAP_NET_ADMIN).
	OwnerExcluded bool
	// Names, on an outbound proxy, is the table of DNS names of addresses
	// that FQDN peers are matched against. The outbound proxy adds the
	// answers of DNS-over-TCP replies from NameServers to it (the UDP ones
	// come through DNSProxy). Nil: FQDN peers match nothing.
	Names *enforce.Names
	// NameServers are the resolvers whose DNS-over-TCP answers feed Names
	// (the DNS proxy's upstream): answers from other servers are relayed
	// but not learned, so that a server the workload may reach cannot
	// vouch for a name it does not serve.
	NameServers []netip.Addr
	// Engine holds the current compiled policy. Required.
	Engine *enforce.Engine
	// Protocols are the L7 protocols the proxy can parse, by name for
	// declared ports and in order for sniffing (protocols/all.Protocols()).
	// Nil: everything is L4.
	Protocols []l7.Protocol
	// Aggregator receives a flow per judged connection and message. Nil:
	// flows are not recorded.
	Aggregator *report.Aggregator
	// Metrics counts connections, messages and bytes. Nil: unregistered
	// metrics are used.
	Metrics *metrics.Metrics
	// Logger. Nil: slog.Default().
	Logger *slog.Logger
	// Limits; zero fields take their defaults.
	Limits Limits
	// OriginalDst returns a redirected connection's original destination.
	// Nil: capture.OriginalDst (SO_ORIGINAL_DST). Tests that run without
	// iptables set it to return the address of the real server.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
}

// Proxy is the inbound transparent proxy. Build it with New and run it with
// Start.
type Proxy struct {
	cfg     Config
	lim     Limits
	engine  *enforce.Engine
	agg     *report.Aggregator
	met     *metrics.Metrics
	log     *slog.Logger
	origDst func(*net.TCPConn) (netip.AddrPort, error)
	protos  []l7.Protocol
	// serverFirst: some protocol is ServerFirst, so sniffing also reads
	// the workload's first bytes.
	serverFirst bool
	// dialer dials upstream (with the mark, when set).
	dialer net.Dialer
	// parker holds the reply sides of idle connections (park.go); set by
	// Start, nil before or when the kernel refused its epoll instance.
	parker *parker

	active atomic.Int64
	wg     sync.WaitGroup // connection handlers

	mu     sync.Mutex
	conns  map[*tracked]struct{}
	closed bool // forced close started; new connections are closed at once
}

// tracked is one handled connection, so that shutdown can close what is
// left after the drain timeout.
type tracked struct {
	mu       sync.Mutex
	client   *net.TCPConn
	upstream *net.TCPConn
}

func (t *tracked) setUpstream(c *net.TCPConn) {
	t.mu.Lock()
	t.upstream = c
	t.mu.Unlock()
}

func (t *tracked) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.client.Close()
	if t.upstream != nil {
		_ = t.upstream.Close()
	}
}

// New builds a Proxy. It starts nothing.
func New(cfg Config) *Proxy {
	p := &Proxy{
		cfg:     cfg,
		lim:     cfg.Limits.withDefaults(),
		engine:  cfg.Engine,
		agg:     cfg.Aggregator,
		met:     cfg.Metrics,
		log:     cfg.Logger,
		origDst: cfg.OriginalDst,
		protos:  cfg.Protocols,
		conns:   make(map[*tracked]struct{}),
	}
	if p.met == nil {
		p.met = metrics.New(nil)
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.origDst == nil {
		p.origDst = capture.OriginalDst
	}
	for _, pr := range p.protos {
		p.serverFirst = p.serverFirst || pr.ServerFirst
	}
	p.dialer.Control = capture.MarkControl(cfg.Mark)
	p.dialer.KeepAlive = -1 // armed late: keepalive.go
	return p
}

// Start accepts and handles connections until ctx is done. Then it stops
// accepting, lets open connections finish for Limits.DrainTimeout, closes
// the rest and returns once every goroutine it started has stopped. It
// returns nil after a shutdown through ctx, or the error that stopped the
// listener.
func (p *Proxy) Start(ctx context.Context) error {
	if p.engine == nil {
		return errors.New("proxy: config has no engine")
	}
	if p.cfg.Outbound && p.cfg.Mark == 0 && !p.cfg.OwnerExcluded {
		return errors.New("proxy: an outbound proxy needs a mark or its user excluded from the redirect (its upstream connections would be redirected to it again)")
	}
	ln := p.cfg.Listener
	if ln == nil {
		addr := p.cfg.Addr
		if addr == "" {
			addr = DefaultAddr
			if p.cfg.Outbound {
				addr = DefaultOutboundAddr
			}
		}
		var err error
		ln, err = Listen(ctx, addr)
		if err != nil {
			return fmt.Errorf("proxy: listen on %s: %w", addr, err)
		}
	}
	p.log.Info("proxy listening", "addr", ln.Addr().String(), "outbound", p.cfg.Outbound)
	stopParker := p.startParker()
	defer stopParker()

	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = ln.Close()
	}()

	err := p.accept(ctx, ln)
	close(stop)
	watch.Wait()
	p.drain()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// accept runs the accept loop until the listener fails or is closed.
func (p *Proxy) accept(ctx context.Context, ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off
				// as net/http does rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("proxy accept", "err", err, "retry_in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			_ = c.Close()
			continue
		}
		if p.active.Add(1) > int64(p.lim.MaxConns) {
			p.active.Add(-1)
			p.met.Connection(metrics.ConnOverload)
			p.met.Limit(metrics.LimitConns).Inc()
			reset(tc)
			continue
		}
		t := &tracked{client: tc}
		if !p.track(t) {
			p.active.Add(-1)
			reset(tc)
			continue
		}
		p.met.Active().Inc()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if s, d := p.handle(ctx, t, ln.Addr()); s == nil || !s.run(d) {
				p.endConn(t)
			}
		}()
	}
}

func (p *Proxy) track(t *tracked) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[t] = struct{}{}
	return true
}

func (p *Proxy) untrack(t *tracked) {
	p.mu.Lock()
	delete(p.conns, t)
	p.mu.Unlock()
	t.close()
}

// drain waits for the handlers up to the drain timeout, then closes every
// connection left and waits for the handlers to return.
func (p *Proxy) drain() {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(p.lim.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	p.mu.Lock()
	p.closed = true
	left := make([]*tracked, 0, len(p.conns))
	for c := range p.conns {
		left = append(left, c)
	}
	p.mu.Unlock()
	p.log.Info("proxy drain timeout, closing connections", "open", len(left))
	for _, c := range left {
		c.close()
	}
	if p.parker != nil {
		// Parked sides see their sockets closed only once resumed.
		p.parker.wakeAll()
	}
	<-done
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED…), which the net package still marks Temporary.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// reset closes c with an RST rather than a FIN, so that the client sees a
// refused connection rather than an orderly end.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/dataplane/capture"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/dns"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Defaults of DNSLimits; a zero field takes its default.
const (
	DefaultDNSAddr       = "127.0.0.1:15053"
	DefaultDNSMaxQueries = 256
	DefaultDNSTimeout    = 5 * time.Second
	// DefaultDNSMaxMessage is the largest query or answer relayed over
	// UDP, in bytes: above the 1232 bytes resolvers offer by default
	// (DNS flag day 2020), below the 65535 a datagram may hold.
	DefaultDNSMaxMessage = 4096
	// minDNSMaxMessage is what every DNS client may send and receive
	// over UDP (RFC 1035).
	minDNSMaxMessage = 512
)

// dnsPort is the port the outbound redirect captures DNS on; queries are
// judged as sent to the upstream's address on this port.
const dnsPort = 53

// DNSLimits bound the DNS proxy. The zero value means every default.
type DNSLimits struct {
	// MaxQueries is the most queries forwarded at once; a query beyond it
	// is dropped (the client retries) and counted as overload. Default
	// 256.
	MaxQueries int
	// Timeout bounds waiting for the upstream's answer; a query not
	// answered in time is dropped (the client retries). Default 5s.
	Timeout time.Duration
	// MaxMessage is the largest query relayed (a longer one is dropped as
	// over the limit) and the largest answer (a longer one is replaced by
	// an empty answer with TC set, so that the client asks again over
	// TCP, which the outbound proxy carries). 512 to 65535; default 4096.
	MaxMessage int
}

func (l DNSLimits) withDefaults() DNSLimits {
	if l.MaxQueries <= 0 {
		l.MaxQueries = DefaultDNSMaxQueries
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultDNSTimeout
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultDNSMaxMessage
	}
	l.MaxMessage = min(max(l.MaxMessage, minDNSMaxMessage), dns.MaxMessage)
	return l
}

// DNSConfig is what a DNSProxy needs. Conns, Upstream and Engine are
// required; every other field has a documented zero value.
type DNSConfig struct {
	// Conns are the sockets the workload's queries arrive on: the target
	// of capture's UDP/53 redirect, bound to the loopback address
	// ("127.0.0.1:15053", "[::1]:15053") so that answers leave from the
	// address the redirect rewrote and conntrack turns it back into the
	// one the workload asked. Start owns and closes them.
	Conns []*net.UDPConn
	// Upstream is the nameserver queries are forwarded to: the one the
	// workload would have asked (its /etc/resolv.conf's). A redirected
	// datagram's original destination is not known to the proxy, so every
	// query goes there, and is judged as a query to Upstream's address on
	// port 53.
	Upstream netip.AddrPort
	// Engine holds the current compiled policy. Required.
	Engine *enforce.Engine
	// Names receives the addresses of the answers relayed (with their
	// TTLs), for FQDN peers; it is also what egress queries are judged
	// with. Nil: nothing is learned.
	Names *enforce.Names
	// Aggregator receives a flow per query. Nil: none.
	Aggregator *report.Aggregator
	// Metrics counts queries. Nil: unregistered metrics.
	Metrics *metrics.Metrics
	// Logger. Nil: slog.Default().
	Logger *slog.Logger
	// Mark is the SO_MARK of the forwarding sockets (capture.MarkControl),
	// so that the redirect leaves them alone. 0: none (tests, or the
	// redirect leaves the proxy's own user alone: capture.Outbound.ExcludeUID).
	Mark uint32
	// Limits; zero fields take their defaults.
	Limits DNSLimits
}

// DNSProxy is the workload's DNS-over-UDP proxy: every query is parsed
// (protocols/dns), judged by the egress rules under the segment's mode
// (dns matchers on port 53: names and types), answered with REFUSED and
// the Extended DNS Error "Blocked" when denied, else forwarded to Upstream
// from a fresh socket (a random source port per query, like a stub
// resolver) and its answer relayed; the answer's addresses go into Names.
// Each query is reported as an egress flow. Bad queries (malformed, over
// the size limit) are dropped and reported. Build it with NewDNS and run it
// with Start.
//
// Parsing, judging and reporting a query allocate nothing; forwarding it
// costs a socket (and a goroutine) per query.
type DNSProxy struct {
	cfg      DNSConfig
	lim      DNSLimits
	upstream string // Upstream, as DialContext wants it
	dialer   net.Dialer
	log      *slog.Logger
	met      *metrics.Metrics
	pm       *metrics.Protocol
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	proto    uint16 // "dns", interned in the Aggregator
	onAnswer func(name []byte, addr netip.Addr, ttl uint32)

	sem     chan struct{} // a token per query in flight
	queries sync.Pool     // *dnsQuery
	wg      sync.WaitGroup
}

// dnsQuery is one query in flight and its buffers, pooled.
type dnsQuery struct {
	conn   *net.UDPConn // the socket it came in on, where its answer goes
	from   netip.AddrPort
	qbuf   []byte // MaxMessage+1: a longer query shows as a full buffer
	rbuf   []byte // MaxMessage+1, the answer
	out    []byte // a deny or truncated reply
	n      int    // query length
	parser dns.Parser
	req    l7.Frame
	rep    l7.Frame
	key    report.Key
}

// NewDNS builds a DNSProxy. It starts nothing.
func NewDNS(cfg DNSConfig) *DNSProxy {
	d := &DNSProxy{
		cfg:      cfg,
		lim:      cfg.Limits.withDefaults(),
		upstream: cfg.Upstream.String(),
		log:      cfg.Logger,
		met:      cfg.Metrics,
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.met == nil {
		d.met = metrics.New(nil)
	}
	d.pm = d.met.Protocol(dns.Name)
	d.bytesIn, d.bytesOut = d.met.BytesIn(), d.met.BytesOut()
	if cfg.Aggregator != nil {
		d.proto = cfg.Aggregator.Intern(dns.Name)
	}
	if cfg.Names != nil {
		d.onAnswer = cfg.Names.Add
	}
	d.dialer.Control = capture.MarkControl(cfg.Mark)
	d.sem = make(chan struct{}, d.lim.MaxQueries)
	size := d.lim.MaxMessage + 1
	d.queries.New = func() any {
		return &dnsQuery{qbuf: make([]byte, size), rbuf: make([]byte, size), out: make([]byte, 0, minDNSMaxMessage)}
	}
	return d
}

// Start serves queries until ctx is done, then closes its sockets, ends the
// queries in flight and returns nil once every goroutine it started has
// stopped; or it returns the error that stopped a socket.
func (d *DNSProxy) Start(ctx context.Context) error {
	if d.cfg.Engine == nil || len(d.cfg.Conns) == 0 || !d.cfg.Upstream.IsValid() {
		for _, c := range d.cfg.Conns {
			_ = c.Close()
		}
		return errors.New("proxy: dns: config needs an engine, sockets and an upstream")
	}
	for _, c := range d.cfg.Conns {
		d.log.Info("dns proxy listening", "addr", c.LocalAddr().String(), "upstream", d.upstream)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(d.cfg.Conns))
	var readers sync.WaitGroup
	for _, c := range d.cfg.Conns {
		readers.Go(func() {
			err := d.read(ctx, c)
			if err != nil {
				cancel()
			}
			errc <- err
		})
	}
	<-ctx.Done()
	for _, c := range d.cfg.Conns {
		_ = c.Close() // wakes the readers
	}
	readers.Wait()
	d.wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// read receives queries on c until it is closed.
func (d *DNSProxy) read(ctx context.Context, c *net.UDPConn) error {
	q := d.queries.Get().(*dnsQuery)
	defer func() { d.queries.Put(q) }()
	for {
		n, from, err := c.ReadFromUDPAddrPort(q.qbuf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				continue
			}
			return fmt.Errorf("proxy: dns: read: %w", err)
		}
		d.bytesIn.Add(float64(n))
		if n > d.lim.MaxMessage {
			// Over the limit: dropped, as a UDP message we cannot
			// hold whole.
			q.conn, q.n = c, 0
			q.from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			d.pm.Malformed.Inc()
			d.recordBad(q, enforce.Limit)
			continue
		}
		select {
		case d.sem <- struct{}{}:
		default:
			d.met.Connection(metrics.ConnOverload)
			continue
		}
		q.conn, q.n = c, n
		q.from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		d.wg.Add(1)
		go d.serve(ctx, q)
		q = d.queries.Get().(*dnsQuery)
	}
}

// serve judges one query and answers, forwards or drops it.
func (d *DNSProxy) serve(ctx context.Context, q *dnsQuery) {
	defer func() {
		<-d.sem
		d.queries.Put(q)
		d.wg.Done()
	}()
	switch act, reply := d.decide(q); act {
	case dnsAnswer:
		d.reply(q, reply)
	case dnsForward:
		d.forward(ctx, q)
	}
}

// What decide says to do with a query.
const (
	dnsDrop    = iota // a bad query: dropped, reported
	dnsAnswer         // denied (or no policy): answer with the reply given
	dnsForward        // allowed or reported only: forward it
)

// decide parses, judges and reports the query in q. A reply it returns is
// in q.out. It allocates nothing.
func (d *DNSProxy) decide(q *dnsQuery) (int, []byte) {
	pol := d.cfg.Engine.Load()
	if err := q.parser.ParseDatagram(l7.DirRequest, q.qbuf[:q.n], &q.req); err != nil {
		d.pm.Malformed.Inc()
		reason := enforce.Malformed
		if errors.Is(err, l7.ErrTooLong) {
			reason = enforce.Limit
		}
		d.recordBad(q, reason)
		d.log.Debug("proxy: dns: dropping a bad query", "src", q.from.String(), "err", err)
		return dnsDrop, nil
	}
	if pol == nil {
		// No policy: fail closed, but at once rather than by timeout.
		d.met.Connection(metrics.ConnNoPolicy)
		q.out = dns.DenyDatagram(q.out[:0], &q.req, metrics.ConnNoPolicy)
		return dnsAnswer, q.out
	}
	conn := pol.OutboundNamed(d.cfg.Upstream.Addr(), dnsPort, d.cfg.Names)
	dec := conn.Message(&q.req)
	d.record(q, &conn, dec)
	if dec.Verdict == enforce.Deny && dec.Enforced {
		q.out = dns.DenyDatagram(q.out[:0], &q.req, dec.Reason.String())
		return dnsAnswer, q.out
	}
	return dnsForward, nil
}

// answered parses the upstream's answer of n bytes in q.rbuf and learns its
// addresses; false for a malformed answer, which is dropped. It allocates
// nothing for names already known.
func (d *DNSProxy) answered(q *dnsQuery, n int) bool {
	if err := q.parser.ParseDatagram(l7.DirReply, q.rbuf[:n], &q.rep); err != nil {
		d.pm.Malformed.Inc()
		d.log.Info("proxy: dns: dropping a bad answer", "upstream", d.upstream, "err", err)
		return false
	}
	if d.onAnswer != nil {
		q.parser.Answers(d.onAnswer)
	}
	return true
}

// forward sends the query upstream and relays the answer.
func (d *DNSProxy) forward(ctx context.Context, q *dnsQuery) {
	dctx, cancel := context.WithTimeout(ctx, d.lim.Timeout)
	defer cancel()
	uc, err := d.dialer.DialContext(dctx, "udp", d.upstream)
	if err != nil {
		d.met.Connection(metrics.ConnDialError)
		d.log.Debug("proxy: dns: dial upstream", "upstream", d.upstream, "err", err)
		return
	}
	defer uc.Close()
	stop := context.AfterFunc(dctx, func() { _ = uc.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	deadline, _ := dctx.Deadline()
	_ = uc.SetReadDeadline(deadline)
	if _, err := uc.Write(q.qbuf[:q.n]); err != nil {
		d.log.Debug("proxy: dns: write upstream", "upstream", d.upstream, "err", err)
		return
	}
	id := binary.BigEndian.Uint16(q.qbuf)
	for {
		n, err := uc.Read(q.rbuf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				d.log.Debug("proxy: dns: no answer in time", "upstream", d.upstream, "name", string(q.req.Resource))
			}
			return
		}
		if n < 2 || binary.BigEndian.Uint16(q.rbuf) != id {
			continue // not the answer to this query (a late one): the socket is ours
		}
		if n > d.lim.MaxMessage {
			q.out = truncated(q.out[:0], &q.req)
			d.reply(q, q.out)
			return
		}
		if d.answered(q, n) {
			d.reply(q, q.rbuf[:n])
		}
		return
	}
}

// reply sends b to the query's client, from the socket the query came in on.
func (d *DNSProxy) reply(q *dnsQuery, b []byte) {
	if _, err := q.conn.WriteToUDPAddrPort(b, q.from); err != nil {
		d.log.Debug("proxy: dns: answer the client", "dst", q.from.String(), "err", err)
		return
	}
	d.bytesOut.Add(float64(len(b)))
}

// record counts a judged query and reports it as an egress flow.
func (d *DNSProxy) record(q *dnsQuery, c *enforce.Conn, dec enforce.Decision) {
	switch dec.Verdict {
	case enforce.Allow:
		d.pm.Allow.Inc()
	case enforce.Violation:
		d.pm.Violation.Inc()
	default:
		d.pm.Deny.Inc()
	}
	if dec.Verdict == enforce.Deny && dec.Enforced {
		d.pm.Denials(dec.Reason.String()).Inc()
	}
	if agg := d.cfg.Aggregator; agg != nil {
		q.key.SetConn(c, q.from.Addr())
		q.key.Proto = d.proto
		q.key.Connection = false
		q.key.SetFrame(&q.req, true)
		agg.AddDecision(&q.key, dec, q.n)
	}
}

// recordBad reports a query the proxy drops unjudged (reason Malformed or
// Limit): a violation, or a denial in protect mode.
func (d *DNSProxy) recordBad(q *dnsQuery, reason enforce.Reason) {
	agg := d.cfg.Aggregator
	if agg == nil {
		return
	}
	conn := d.cfg.Engine.Load().Outbound(d.cfg.Upstream.Addr(), dnsPort)
	dec := conn.Judge(reason)
	if dec.Verdict == enforce.Allow {
		dec.Verdict = enforce.Violation
	}
	q.key.SetConn(&conn, q.from.Addr())
	q.key.Proto = d.proto
	q.key.Connection = false
	q.key.SetVerb(nil, nil)
	agg.AddDecision(&q.key, dec, q.n)
}

// truncated appends to dst an empty answer to the query of f with TC set,
// so that the client asks again over TCP: DenyDatagram's reply (the query's
// ID, opcode, RD and CD, the question) with NOERROR, TC and no records.
func truncated(dst []byte, f *l7.Frame) []byte {
	start := len(dst)
	dst = dns.DenyDatagram(dst, f, "")
	m := dst[start:]
	if len(m) < 12 {
		return dst
	}
	m[2] |= 0x02  // TC
	m[3] &^= 0x0F // RCODE NOERROR (RA and CD stay as DenyDatagram set them)
	qd := binary.BigEndian.Uint16(m[4:])
	clear(m[6:12]) // no answer, authority or additional records
	end := 12
	if qd == 1 {
		// The question: the name (labels, no compression in our own
		// reply), then type and class.
		for end < len(m) && m[end] != 0 {
			end += 1 + int(m[end])
		}
		end += 1 + 4
	}
	if end > len(m) {
		return dst
	}
	return dst[:start+end]
}

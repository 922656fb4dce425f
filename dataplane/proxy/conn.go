package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// protoTCP is the protocol name of L4-only connections.
const protoTCP = "tcp"

// handle judges one accepted connection and connects it to its original
// destination. It returns the session to run with its connect-time
// decision, or nil when the connection was refused and closed. The caller
// runs the session after handle returned, so that the stack that dialling
// grew is not under the one an idle connection keeps.
func (p *Proxy) handle(ctx context.Context, t *tracked, self net.Addr) (*session, enforce.Decision) {
	client := t.client
	dst, err := p.origDst(client)
	if err != nil {
		p.met.Connection(metrics.ConnError)
		p.log.Warn("proxy: original destination", "src", client.RemoteAddr().String(), "err", err)
		reset(client)
		return nil, enforce.Decision{}
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if local := addrPort(client.LocalAddr()); dst == local || dst == addrPort(self) {
		// Not redirected: dialling the destination would reach us again.
		p.met.Connection(metrics.ConnLoop)
		p.log.Debug("proxy: connection not redirected, closing", "src", client.RemoteAddr().String(), "dst", dst.String())
		reset(client)
		return nil, enforce.Decision{}
	}
	src := addrPort(client.RemoteAddr())

	pol := p.engine.Load()
	if pol == nil {
		// No policy from the control plane and none cached: fail closed.
		p.met.Connection(metrics.ConnNoPolicy)
		p.log.Debug("proxy: no policy loaded, refusing", "src", src.String(), "dst", dst.String())
		reset(client)
		return nil, enforce.Decision{}
	}

	s := &session{
		p:      p,
		client: client,
		src:    src,
		dst:    dst,
	}
	s.t = t
	if p.cfg.Outbound {
		// The workload's own connection: its egress rules judge it,
		// with the names its destination stands for.
		s.conn = pol.OutboundNamed(dst.Addr(), dst.Port(), p.cfg.Names)
		s.declared = pol.EgressProtocol(dst.Port())
		s.learnNames = p.cfg.Names != nil && slices.Contains(p.cfg.NameServers, dst.Addr())
		s.nameDst(p.cfg.Names)
	} else {
		s.conn = pol.Inbound(src.Addr(), dst.Port())
		s.declared = pol.Protocol(dst.Port())
	}
	declared := s.declared
	d := s.conn.Connect()
	label := declared
	if label == "" {
		label = protoTCP
	}
	s.countConnect(d, label)
	denied := d.Verdict == enforce.Deny && d.Enforced
	if declared != "" || denied {
		// An undeclared port's connection flow waits for sniffing (run).
		s.reportConnect(d, label)
	}
	if denied {
		p.log.Debug("proxy: connection denied", "src", src.String(), "dst", dst.String(), "reason", d.Reason.String())
		reset(client)
		return nil, enforce.Decision{}
	}

	dctx, cancel := context.WithTimeout(ctx, p.lim.DialTimeout)
	upstream, err := p.dialer.DialTCP(dctx, "tcp", netip.AddrPort{}, dst)
	cancel()
	if err != nil {
		if declared == "" {
			s.reportConnect(d, label)
		}
		p.met.Connection(metrics.ConnDialError)
		p.log.Debug("proxy: dial original destination", "dst", dst.String(), "err", err)
		reset(client)
		return nil, enforce.Decision{}
	}
	t.setUpstream(upstream)
	s.upstream = upstream
	return s, d
}

// run picks the connection's protocol and forwards it. connect is the
// connection-level decision, reported here for an undeclared port. It
// returns true when the connection went to L7: the session then ends it
// (finish, park.go), possibly after run returned, as its sides may park.
func (s *session) run(connect enforce.Decision) (toL7 bool) {
	p := s.p
	var proto *l7.Protocol
	var cfirst, sfirst []byte
	switch s.declared {
	case protoTCP:
	case "":
		cfirst, sfirst, proto = s.sniff()
		// The connection flow names the protocol sniffed: reported as
		// "tcp" before sniffing, discover mode would learn an L4 rule
		// that allows every message on the port.
		label := protoTCP
		if proto != nil {
			label = proto.Name
		}
		s.reportConnect(connect, label)
	default:
		proto = p.protocol(s.declared)
		if proto == nil {
			p.log.Debug("proxy: no parser for declared protocol, forwarding at L4", "protocol", s.declared)
		}
	}
	if proto == nil {
		s.releaseSide(true) // the flow key: no more flows
		s.splice(cfirst, sfirst)
		return false
	}
	s.l7(proto, cfirst, sfirst)
	return true
}

// protocol returns the configured protocol called name, or nil.
func (p *Proxy) protocol(name string) *l7.Protocol {
	for i := range p.protos {
		if p.protos[i].Name == name {
			return &p.protos[i]
		}
	}
	return nil
}

// sniff waits at most SniffTimeout for the first bytes of either side and
// returns them (cfirst from the client, sfirst from the workload) with the
// protocol they show, or nil. Bytes from the workload before the client
// said anything are matched against the ServerFirst protocols (MySQL's
// greeting); otherwise the client's bytes are matched against the others.
// The workload is read only when some configured protocol is ServerFirst.
func (s *session) sniff() (cfirst, sfirst []byte, proto *l7.Protocol) {
	p := s.p
	deadline := time.Now().Add(p.lim.SniffTimeout)
	cbuf := make([]byte, initialBuffer)
	var (
		sbuf []byte
		sn   int
		done chan struct{}
	)
	// Before the workload's reader starts: it may cut this deadline short.
	_ = s.client.SetReadDeadline(deadline)
	if p.serverFirst {
		sbuf = make([]byte, initialBuffer)
		done = make(chan struct{})
		_ = s.upstream.SetReadDeadline(deadline)
		go func() {
			defer close(done)
			var err error
			sn, err = s.upstream.Read(sbuf)
			if sn > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				// The workload spoke (or closed): stop waiting
				// for the client.
				_ = s.client.SetReadDeadline(aLongTimeAgo)
			}
		}()
	}
	cn, cerr := s.client.Read(cbuf)
	if done != nil {
		// Stop the workload's read if it still waits; bytes that arrive
		// now stay in the socket for the L7 loop.
		_ = s.upstream.SetReadDeadline(aLongTimeAgo)
		<-done
		_ = s.upstream.SetReadDeadline(time.Time{})
	}
	_ = s.client.SetReadDeadline(time.Time{})
	cfirst, sfirst = cbuf[:cn], sbuf[:sn]
	if cerr != nil && !errors.Is(cerr, os.ErrDeadlineExceeded) {
		// EOF or a reset: forward what there is and let the splice see
		// the end of the stream.
		return cfirst, sfirst, nil
	}
	if sn > 0 {
		for i := range p.protos {
			pr := &p.protos[i]
			if pr.ServerFirst && pr.Sniff != nil && pr.Sniff(sfirst) {
				return cfirst, sfirst, pr
			}
		}
		// A workload that speaks first in no protocol we parse.
		return cfirst, sfirst, nil
	}
	if cn == 0 {
		return cfirst, sfirst, nil
	}
	for i := range p.protos {
		pr := &p.protos[i]
		if !pr.ServerFirst && pr.Sniff != nil && pr.Sniff(cfirst) {
			return cfirst, sfirst, pr
		}
	}
	return cfirst, sfirst, nil
}

// splice forwards the connection at L4, after the bytes read while sniffing
// (cfirst from the client, sfirst from the workload): the kernel moves the
// bytes (pump: the first spliceAfter bytes through user space, then
// splice(2)). Half-closes are
// passed on; an error in either direction closes both.
func (s *session) splice(cfirst, sfirst []byte) {
	p := s.p
	client, upstream := s.client, s.upstream
	armKeepAlive(client)
	armKeepAlive(upstream)
	if len(sfirst) > 0 {
		if _, err := client.Write(sfirst); err != nil {
			reset(client)
			_ = upstream.Close()
			return
		}
		p.met.BytesOut().Add(float64(len(sfirst)))
	}
	if len(cfirst) > 0 {
		if _, err := upstream.Write(cfirst); err != nil {
			reset(client)
			_ = upstream.Close()
			return
		}
		p.met.BytesIn().Add(float64(len(cfirst)))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := pump(client, upstream)
		p.met.BytesOut().Add(float64(n))
		if err != nil {
			reset(client)
			_ = upstream.Close()
			return
		}
		_ = client.CloseWrite()
	}()
	n, err := pump(upstream, client)
	p.met.BytesIn().Add(float64(n))
	if err != nil {
		reset(client)
		_ = upstream.Close()
	} else {
		_ = upstream.CloseWrite()
	}
	wg.Wait()
	_ = client.Close()
	_ = upstream.Close()
}

// addrPort returns a's address and port, with IPv4-mapped IPv6 addresses
// unmapped; the zero AddrPort when a is not TCP.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

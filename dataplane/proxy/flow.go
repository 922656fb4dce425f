package proxy

import (
	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// countConnect counts the connection-level decision d (protocol label is
// the declared protocol, or "tcp").
func (s *session) countConnect(d enforce.Decision, label string) {
	m := s.p.met
	switch d.Verdict {
	case enforce.Allow:
		m.Connection(metrics.ConnAllow)
	case enforce.Violation:
		m.Connection(metrics.ConnViolation)
	default:
		m.Connection(metrics.ConnDeny)
	}
	if d.Verdict == enforce.Deny && d.Enforced {
		m.Denial(label, d.Reason.String())
	}
}

// reportConnect reports the connection-level decision d as a connection
// flow of protocol label: the declared protocol, else the sniffed one, else
// "tcp" (learn turns connection flows of "tcp", and only those, into L4
// rules).
func (s *session) reportConnect(d enforce.Decision, label string) {
	if agg := s.p.agg; agg != nil {
		k := s.flowKey()
		k.SetConn(&s.conn, s.local())
		k.Proto = agg.Intern(label)
		k.Connection = true
		k.SetVerb(nil, nil)
		agg.AddDecision(k, d, 0)
		k.Connection = false
	}
}

// setProtocol makes the flows that follow messages of protocol name.
func (s *session) setProtocol(name string) {
	if agg := s.p.agg; agg != nil {
		s.protoID = agg.Intern(name)
		s.flowKey().Proto = s.protoID
	}
}

// refreshKey re-reads the per-connection fields of the flow key (the mode
// may have changed with the policy).
func (s *session) refreshKey() {
	if s.p.agg != nil && s.key != nil {
		// A key taken later is filled by flowKey.
		s.key.SetConn(&s.conn, s.local())
	}
}

// recordMessage counts one judged request of n bytes and reports it with
// its verb and, but for Redis, its resources and aux. f's views must be
// valid (the parser lock held). It allocates nothing.
func (s *session) recordMessage(f *l7.Frame, d enforce.Decision, n int) {
	switch d.Verdict {
	case enforce.Allow:
		s.pm.Allow.Inc()
	case enforce.Violation:
		s.pm.Violation.Inc()
	default:
		s.pm.Deny.Inc()
	}
	if d.Verdict == enforce.Deny && d.Enforced {
		s.pm.Denials(d.Reason.String()).Inc()
	}
	if agg := s.p.agg; agg != nil {
		// Resources and aux are reported for every protocol but Redis,
		// whose keys may hold personal data.
		k := s.flowKey()
		k.SetFrame(f, !s.redis)
		agg.AddDecision(k, d, n)
	}
}

// recordBad reports a request the proxy could not judge (reason Malformed or
// Limit) as a violation, or a denial in protect mode: the connection is
// closed either way.
func (s *session) recordBad(reason enforce.Reason) {
	if pol := s.p.engine.Load(); pol != nil {
		s.conn.Refresh(pol)
	}
	d := s.conn.Judge(reason)
	if d.Verdict == enforce.Allow {
		d.Verdict = enforce.Violation
	}
	if agg := s.p.agg; agg != nil {
		s.refreshKey()
		k := s.flowKey()
		k.SetVerb(nil, nil)
		agg.AddDecision(k, d, 0)
	}
}

// nameDst sets the DNS name of the connection's destination in its flow
// key (Flow.dst_name): looked up once per connection in the outbound
// proxy's names table, not per message. When the address stands for
// several live names, the smallest of the valid ones is taken, so that
// every connection to the address reports the same name (Names.Lookup
// gives no expiries to prefer the freshest by). It allocates nothing.
func (s *session) nameDst(names *enforce.Names) {
	if s.p.agg == nil || names == nil {
		return
	}
	var buf [enforce.MaxNamesPerAddr]string
	n := names.Lookup(s.dst.Addr(), buf[:])
	best := ""
	for _, name := range buf[:n] {
		if bulkheadv1.ValidDstName(name) && (best == "" || name < best) {
			best = name
		}
	}
	s.dstName = best
	s.flowKey().SetDstName(best)
}

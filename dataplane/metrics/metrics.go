// Package metrics holds the Prometheus metrics of bulkhead-proxy. Every metric
// is registered on an injected prometheus.Registerer (never the global one)
// and every label is bounded: protocol names come from protocols/all (plus
// "tcp"), verdicts and reasons from small fixed sets, directions are "in" and
// "out". Paths, keys and addresses never become labels.
//
// Per-message paths must not allocate, and CounterVec.WithLabelValues does,
// so callers resolve the children they need once (per protocol with
// Protocol, per connection by keeping the returned Counters) and then only
// call Inc and Add on them.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection outcomes: the values of the verdict label of
// bulkhead_proxy_connections_total. The first three are policy verdicts at
// connect time; the others say why a connection was closed before a verdict
// could be reached.
const (
	ConnAllow     = "allow"
	ConnViolation = "violation"
	ConnDeny      = "deny"
	// ConnNoPolicy: no policy was loaded yet and none was cached; the proxy
	// fails closed.
	ConnNoPolicy = "no_policy"
	// ConnLoop: the connection was not redirected (its original destination
	// is the proxy's own listener); forwarding it would loop.
	ConnLoop = "loop"
	// ConnOverload: the proxy was at its connection limit.
	ConnOverload = "overload"
	// ConnDialError: the original destination could not be reached. Such a
	// connection was counted under its verdict first.
	ConnDialError = "dial_error"
	// ConnError: the original destination could not be determined.
	ConnError = "error"
)

// Limits: the values of the limit label of bulkhead_proxy_limit_total, one
// per bound of proxy.Limits that a peer can run into.
const (
	// LimitConns: a connection was reset because the proxy was at
	// MaxConns (also counted as connections_total{verdict="overload"}).
	LimitConns = "max_conns"
	// LimitMessageSize: a message did not fit the buffer ceiling
	// (MaxMessage or the protocol's own), or a parser's own length limit.
	LimitMessageSize = "message_size"
	// LimitMessageTimeout: a request that had begun did not complete in
	// time (slowloris).
	LimitMessageTimeout = "message_timeout"
	// LimitFirstMessageTimeout: a client sent nothing in time after
	// connecting.
	LimitFirstMessageTimeout = "first_message_timeout"
	// LimitIdle: neither side sent anything for IdleTimeout.
	LimitIdle = "idle_timeout"
	// LimitPendingDenials: too many denials waited for earlier replies.
	LimitPendingDenials = "pending_denials"
)

// limits lists the Limit* values, each counter visible at zero.
var limits = [...]string{LimitConns, LimitMessageSize, LimitMessageTimeout, LimitFirstMessageTimeout, LimitIdle, LimitPendingDenials}

// Byte directions: the values of the direction label of
// bulkhead_proxy_bytes_total. "in" is client → workload, "out" workload →
// client.
const (
	DirIn  = "in"
	DirOut = "out"
)

// Message verdicts: the values of the verdict label of
// bulkhead_proxy_messages_total.
const (
	VerdictAllow     = "allow"
	VerdictViolation = "violation"
	VerdictDeny      = "deny"
)

// Metrics is the proxy's set of metrics. Safe for concurrent use. The zero
// value is not usable; build one with New.
type Metrics struct {
	connections *prometheus.CounterVec
	active      prometheus.Gauge
	messages    *prometheus.CounterVec
	denials     *prometheus.CounterVec
	malformed   *prometheus.CounterVec
	swaps       prometheus.Counter
	nacks       prometheus.Counter
	bytes       *prometheus.CounterVec
	limits      *prometheus.CounterVec
	limitByName map[string]prometheus.Counter

	bytesIn, bytesOut prometheus.Counter

	mu     sync.Mutex
	protos map[string]*Protocol
}

// New builds the proxy's metrics and registers them on reg. A nil reg leaves
// them unregistered (useful in tests). It panics only if reg already holds
// metrics of the same names, which is a wiring bug, as with
// prometheus.MustRegister.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_connections_total",
			Help: "Inbound connections accepted by the proxy, by verdict at connect time (allow, violation, deny) or by why they were closed before one (no_policy, loop, overload, error); dial_error counts allowed connections whose destination could not be reached.",
		}, []string{"verdict"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulkhead_proxy_active_connections",
			Help: "Inbound connections the proxy is currently handling.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_messages_total",
			Help: "L7 requests judged by the proxy, by protocol and verdict.",
		}, []string{"protocol", "verdict"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_denials_total",
			Help: "Connections and requests blocked by the proxy, by protocol and reason.",
		}, []string{"protocol", "reason"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_malformed_total",
			Help: "Connections closed because a peer sent a malformed or over-limit message, by protocol.",
		}, []string{"protocol"}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_proxy_policy_swaps_total",
			Help: "Compiled policies installed (from the control plane or the cache).",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_proxy_xds_nacks_total",
			Help: "xDS updates refused because they did not compile.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_bytes_total",
			Help: "Bytes forwarded by the proxy, by direction (in: client to workload, out: workload to client).",
		}, []string{"direction"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_proxy_limit_total",
			Help: "Connections closed or refused at one of the proxy's limits, by limit (max_conns, message_size, message_timeout, first_message_timeout, idle_timeout, pending_denials).",
		}, []string{"limit"}),
		limitByName: make(map[string]prometheus.Counter, len(limits)),
		protos:      make(map[string]*Protocol),
	}
	for _, l := range limits {
		m.limitByName[l] = m.limits.WithLabelValues(l)
	}
	m.bytesIn = m.bytes.WithLabelValues(DirIn)
	m.bytesOut = m.bytes.WithLabelValues(DirOut)
	// Make the connection outcomes visible at zero from the start.
	for _, v := range []string{ConnAllow, ConnViolation, ConnDeny, ConnNoPolicy, ConnLoop, ConnOverload, ConnDialError, ConnError} {
		m.connections.WithLabelValues(v)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.active, m.messages, m.denials, m.malformed, m.swaps, m.nacks, m.bytes, m.limits)
	}
	return m
}

// Connection counts one accepted connection under outcome, one of the Conn*
// constants.
func (m *Metrics) Connection(outcome string) { m.connections.WithLabelValues(outcome).Inc() }

// Limit returns the counter of limit, one of the Limit* constants. It does
// not allocate; an unknown name gets the counter of its own label, resolved
// on each call.
func (m *Metrics) Limit(limit string) prometheus.Counter {
	if c, ok := m.limitByName[limit]; ok {
		return c
	}
	return m.limits.WithLabelValues(limit)
}

// Active is the gauge of connections being handled.
func (m *Metrics) Active() prometheus.Gauge { return m.active }

// PolicySwap counts one installed policy.
func (m *Metrics) PolicySwap() { m.swaps.Inc() }

// XDSNack counts one refused xDS update.
func (m *Metrics) XDSNack() { m.nacks.Inc() }

// BytesIn counts bytes forwarded from clients to the workload.
func (m *Metrics) BytesIn() prometheus.Counter { return m.bytesIn }

// BytesOut counts bytes forwarded from the workload to clients.
func (m *Metrics) BytesOut() prometheus.Counter { return m.bytesOut }

// Denial counts one blocked connection or request of protocol for reason.
// It resolves the label child on each call; per-message paths use
// (*Protocol).Denials instead.
func (m *Metrics) Denial(protocol, reason string) {
	m.Protocol(protocol).Denials(reason).Inc()
}

// Protocol returns the pre-resolved metrics of one protocol ("redis", "tcp").
// The result is cached: call it at connection setup, keep it, and count on
// it without allocating.
func (m *Metrics) Protocol(name string) *Protocol {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.protos[name]; ok {
		return p
	}
	p := &Protocol{
		name:      name,
		parent:    m,
		Allow:     m.messages.WithLabelValues(name, VerdictAllow),
		Violation: m.messages.WithLabelValues(name, VerdictViolation),
		Deny:      m.messages.WithLabelValues(name, VerdictDeny),
		Malformed: m.malformed.WithLabelValues(name),
		denials:   make(map[string]prometheus.Counter),
	}
	m.protos[name] = p
	return p
}

// Protocol is the resolved metrics of one protocol. Safe for concurrent use.
type Protocol struct {
	name   string
	parent *Metrics

	// Allow, Violation and Deny count judged messages by verdict.
	Allow, Violation, Deny prometheus.Counter
	// Malformed counts connections closed for a malformed or over-limit
	// message.
	Malformed prometheus.Counter

	mu      sync.RWMutex
	denials map[string]prometheus.Counter
}

// Denials returns the counter of denials for reason. After the first call
// for a reason it does not allocate (reasons are a small fixed set).
func (p *Protocol) Denials(reason string) prometheus.Counter {
	p.mu.RLock()
	c, ok := p.denials[reason]
	p.mu.RUnlock()
	if ok {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.denials[reason]; ok {
		return c
	}
	c = p.parent.denials.WithLabelValues(p.name, reason)
	p.denials[reason] = c
	return c
}

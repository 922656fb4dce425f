package enforce

import "github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"

// Mode is how a segment's traffic is judged. The values mirror
// bulkheadv1.Mode; the zero value is invalid and never produced by Compile.
type Mode uint8

const (
	// Discover allows everything; the learner turns the flows into rules.
	Discover Mode = 1
	// Monitor allows everything and reports what no rule allows as a
	// Violation.
	Monitor Mode = 2
	// Protect blocks what no rule allows (Deny, Enforced).
	Protect Mode = 3
)

func (m Mode) String() string {
	switch m {
	case Discover:
		return "discover"
	case Monitor:
		return "monitor"
	case Protect:
		return "protect"
	}
	return "unspecified"
}

// Proto returns the protobuf form of m.
func (m Mode) Proto() bulkheadv1.Mode { return bulkheadv1.Mode(m) }

// ModeFromProto converts a protobuf mode; ok is false for
// MODE_UNSPECIFIED and unknown values.
func ModeFromProto(m bulkheadv1.Mode) (mode Mode, ok bool) {
	switch m {
	case bulkheadv1.Mode_MODE_DISCOVER:
		return Discover, true
	case bulkheadv1.Mode_MODE_MONITOR:
		return Monitor, true
	case bulkheadv1.Mode_MODE_PROTECT:
		return Protect, true
	}
	return 0, false
}

// Verdict is the outcome of judging a connection or message. The values
// mirror bulkheadv1.Verdict; the zero value means "not judged".
type Verdict uint8

const (
	// Allow: forward it.
	Allow Verdict = 1
	// Violation: no rule allows it, but the mode (monitor) only reports:
	// forward it and report it.
	Violation Verdict = 2
	// Deny: no rule allows it and the mode (protect) blocks: do not forward
	// it, answer with the protocol's own error or refuse the connection.
	Deny Verdict = 3
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Violation:
		return "violation"
	case Deny:
		return "deny"
	}
	return "unspecified"
}

// Proto returns the protobuf form of v.
func (v Verdict) Proto() bulkheadv1.Verdict { return bulkheadv1.Verdict(v) }

// Reason says why a connection or message was not allowed by a rule. It is
// set whenever Decision.Rule is empty, in every mode (so discover-mode
// reports say what protect would have denied and why).
type Reason uint8

const (
	// None: a rule allowed it.
	None Reason = iota
	// NoRule: no rule allows this peer on this port.
	NoRule
	// L7: rules admit the peer on this port, but no matcher of theirs
	// allows this message.
	L7
	// Malformed: the message could not be parsed (set by the proxy).
	Malformed
	// Limit: a limit of the proxy was exceeded (set by the proxy).
	Limit
)

func (r Reason) String() string {
	switch r {
	case None:
		return "none"
	case NoRule:
		return "no_rule"
	case L7:
		return "l7_not_allowed"
	case Malformed:
		return "malformed"
	case Limit:
		return "limit"
	}
	return "unknown"
}

// Direction says whose rules judge a connection: Ingress (a peer connects to
// the proxied workload) or Egress (the workload connects to a peer). The
// values mirror bulkheadv1.Direction.
type Direction uint8

const (
	// Ingress: inbound to the proxied workload, judged by ProxyPolicy.ingress.
	Ingress Direction = 1
	// Egress: outbound from the proxied workload, judged by ProxyPolicy.egress.
	Egress Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "unspecified"
}

// Proto returns the protobuf form of d.
func (d Direction) Proto() bulkheadv1.Direction { return bulkheadv1.Direction(d) }

// Decision is the judgement of one connection or message.
type Decision struct {
	// Verdict is Allow, Violation or Deny.
	Verdict Verdict
	// Enforced is true only for Deny (protect mode): the proxy must block.
	Enforced bool
	// Rule is the compiled rule name ("ns/policy/rule") that allowed it,
	// or "" when none did. It points into the Policy and allocates nothing.
	Rule string
	// Reason says why no rule allowed it; None when Rule is set.
	Reason Reason
}

// judge is the decision for something no rule allows, under mode m.
func (m Mode) judge(r Reason) Decision {
	switch m {
	case Discover:
		return Decision{Verdict: Allow, Reason: r}
	case Monitor:
		return Decision{Verdict: Violation, Reason: r}
	}
	// Protect, and anything else: fail closed.
	return Decision{Verdict: Deny, Enforced: true, Reason: r}
}

// Package explain judges flows against a policy the way the data plane
// does, and says why: which rule allowed a flow, or, when none did, which
// rules nearly did and on which field they differ (peer, port, protocol,
// verb, resource, aux), and which mode applied. On top of it, Replay
// evaluates recorded flows against a draft policy and Drift compares a
// folder of policy YAML (a git checkout) with the live policy and the
// recorded flows.
//
// Policies are compiled with controlplane/compile, exactly as they are for
// the proxies, and the compiled rules (bulkheadv1.Rule) are judged by a
// plain scan that mirrors dataplane/enforce's documented semantics (see
// its doc and L7Rule in controlplane/api/proto/bulkhead/v1/policy.proto):
// rules in name order; a rule admits the flow when a peer matches (segment,
// namespace, CIDR; no peers: any) and it names the port; what judges the
// message is chosen by the protocol the rule gives the port — "tcp" allows
// every message, "redis" the Redis matcher, any other the L7Rules; each
// resource of a message must be covered by some L7Rule (a message naming
// none only by L7Rules without resource patterns; Overflow likewise); the
// rule reported is the lowest that covers the first resource. The control
// plane may not import the data plane, so test/explain checks this package
// against dataplane/enforce on generated policies and frames.
//
// FQDN peers match addresses by the DNS answers a proxy relayed; recorded
// flows do not carry them, so here an FQDN peer never matches (it is
// named among the near misses with field "peer").
package explain

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// Reasons, as in flow reports.
const (
	ReasonNone   = ""
	ReasonNoRule = "no_rule"
	ReasonL7     = "l7_not_allowed"
)

// Fields a near miss differs on.
const (
	FieldPeer     = "peer"
	FieldPort     = "port"
	FieldProtocol = "protocol"
	FieldVerb     = "verb"
	FieldResource = "resource"
	FieldAux      = "aux"
)

// maxVerb is l7.MaxVerb: the engine does not match longer verbs.
const maxVerb = 64

// Flow is what is judged: a message (or, with Connection, a connection) of
// a flow. Direction "egress" is judged by the source segment's egress rules,
// anything else by the destination segment's ingress rules. Segments are
// "ns/name"; empty ones are resolved from the IPs when the Evaluator has a
// Resolver.
type Flow struct {
	Direction  string   `json:"direction,omitempty"`
	SrcIP      string   `json:"srcIP,omitempty"`
	SrcSegment string   `json:"srcSegment,omitempty"`
	DstIP      string   `json:"dstIP,omitempty"`
	DstSegment string   `json:"dstSegment,omitempty"`
	Port       uint32   `json:"port"`
	Protocol   string   `json:"protocol,omitempty"`
	Verb       string   `json:"verb,omitempty"`
	Sub        string   `json:"sub,omitempty"`
	Resource   string   `json:"resource,omitempty"`
	Aux        string   `json:"aux,omitempty"`
	More       []string `json:"moreResources,omitempty"`
	// Overflow: the message named more resources than were reported (a
	// reported list ending in "...").
	Overflow bool `json:"overflow,omitempty"`
	// Connection judges the connection (L4) rather than a message.
	Connection bool `json:"connection,omitempty"`
}

func (f *Flow) egress() bool { return f.Direction == "egress" }

// Near is a rule that nearly allowed a flow.
type Near struct {
	Rule   string `json:"rule"` // "ns/policy/rule"
	Origin string `json:"origin,omitempty"`
	// Differs lists the fields on which the rule does not match, in the
	// order peer, port, protocol, verb, resource, aux.
	Differs []string `json:"differs"`
	// Detail says what the rule wants on those fields.
	Detail string `json:"detail"`
}

// Explanation is the decision on a flow and why.
type Explanation struct {
	Flow Flow `json:"flow"`
	// Segment is the judging segment and Mode its mode.
	Segment string `json:"segment"`
	Mode    string `json:"mode"`
	// HasPolicy: the judging segment has a policy at all.
	HasPolicy bool `json:"hasPolicy"`
	// Verdict: allow, violation (monitor) or deny (protect); Enforced when
	// the flow is blocked.
	Verdict  string `json:"verdict"`
	Enforced bool   `json:"enforced"`
	// Rule allowed the flow ("ns/policy/rule"), or Reason says why none
	// did: no_rule (no rule admits the peer on the port), l7_not_allowed.
	Rule       string `json:"rule,omitempty"`
	RuleOrigin string `json:"ruleOrigin,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Near lists the rules that nearly allowed the flow, fewest
	// differences first (at most MaxNear).
	Near []Near `json:"near,omitempty"`
}

// Allowed reports whether a rule allowed the flow (whatever the mode).
func (e *Explanation) Allowed() bool { return e.Rule != "" }

// MaxNear bounds Explanation.Near.
const MaxNear = 5

// Resolver maps an address to its segment key ("ns/name").
type Resolver func(netip.Addr) (segment string, ok bool)

// segment is one segment's compiled rules.
type segment struct {
	mode      v1alpha1.Mode
	hasPolicy bool
	ingress   []*bulkheadv1.Rule
	egress    []*bulkheadv1.Rule
}

// Evaluator judges flows against one set of policies. It is immutable and
// safe for concurrent use.
type Evaluator struct {
	segs     map[string]*segment
	origins  map[string]v1alpha1.Origin // by compiled rule name
	settings store.Settings
	resolve  Resolver
	policies []*v1alpha1.SegmentPolicy
}

// New compiles policies (as controlplane/compile does for the proxies) and
// returns their Evaluator. resolve may be nil. Modes of segments without a
// policy (or whose policy sets none) come from settings.
func New(policies []*v1alpha1.SegmentPolicy, settings store.Settings, resolve Resolver) (*Evaluator, error) {
	e := &Evaluator{segs: map[string]*segment{}, origins: map[string]v1alpha1.Origin{}, settings: settings, resolve: resolve}
	var errs []error
	for _, p := range policies {
		if p == nil {
			continue
		}
		// One synthetic workload per policy gets exactly its compiled
		// rules; the selector only picks workloads, which are not needed.
		c := p.DeepCopy()
		c.Spec.Selector = nil
		out, err := compile.Compile(compile.Input{
			Policies:  []*v1alpha1.SegmentPolicy{c},
			Workloads: []identity.Workload{{Name: "explain", Namespace: p.Namespace, Segment: p.Name}},
			Settings:  settings,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pp := out.Proxies["explain."+p.Namespace]
		if pp == nil {
			errs = append(errs, fmt.Errorf("explain: %s/%s: not compiled", p.Namespace, p.Name))
			continue
		}
		key := p.Namespace + "/" + p.Name
		if e.segs[key] != nil {
			errs = append(errs, fmt.Errorf("explain: policy %s given twice", key))
			continue
		}
		s := &segment{mode: modeOf(pp.GetMode()), hasPolicy: true, ingress: sorted(pp.GetIngress()), egress: sorted(pp.GetEgress())}
		e.segs[key] = s
		for _, list := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
			for _, r := range list {
				o := r.Origin
				if o == "" {
					o = v1alpha1.OriginUser
				}
				e.origins[key+"/"+r.Name] = o
			}
		}
		e.policies = append(e.policies, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func sorted(rs []*bulkheadv1.Rule) []*bulkheadv1.Rule {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b *bulkheadv1.Rule) int { return strings.Compare(a.GetName(), b.GetName()) })
	return rs
}

func modeOf(m bulkheadv1.Mode) v1alpha1.Mode {
	switch m {
	case bulkheadv1.Mode_MODE_MONITOR:
		return v1alpha1.ModeMonitor
	case bulkheadv1.Mode_MODE_PROTECT:
		return v1alpha1.ModeProtect
	}
	return v1alpha1.ModeDiscover
}

// HasPolicy reports whether the Evaluator holds a policy for segment key.
func (e *Evaluator) HasPolicy(key string) bool { return e.segs[key] != nil }

// Mode is the mode of segment key.
func (e *Evaluator) Mode(key string) v1alpha1.Mode {
	if s := e.segs[key]; s != nil {
		return s.mode
	}
	ns, _, _ := strings.Cut(key, "/")
	return e.settings.Mode(ns)
}

// Rules returns the compiled names of every rule, with their origins, sorted.
func (e *Evaluator) Rules() []string {
	out := make([]string, 0, len(e.origins))
	for n := range e.origins {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Origin is the origin of a compiled rule name ("" when unknown).
func (e *Evaluator) Origin(rule string) v1alpha1.Origin { return e.origins[rule] }

// peer is the other end of a flow as the judging side sees it.
type peer struct {
	ip        netip.Addr // invalid when not given
	segment   string
	namespace string
}

func (e *Evaluator) segmentOf(seg, ip string) string {
	if seg != "" || e.resolve == nil {
		return seg
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		if s, ok := e.resolve(a.Unmap()); ok {
			return s
		}
	}
	return ""
}

// Explain judges f and says why.
func (e *Evaluator) Explain(f Flow) Explanation {
	f.SrcSegment = e.segmentOf(f.SrcSegment, f.SrcIP)
	f.DstSegment = e.segmentOf(f.DstSegment, f.DstIP)
	judge, pseg, pip := f.DstSegment, f.SrcSegment, f.SrcIP
	if f.egress() {
		judge, pseg, pip = f.SrcSegment, f.DstSegment, f.DstIP
	}
	p := peer{segment: pseg}
	if a, err := netip.ParseAddr(pip); err == nil {
		p.ip = a.Unmap()
	}
	p.namespace, _, _ = strings.Cut(pseg, "/")
	if pseg == "" {
		p.namespace = ""
	}

	ex := Explanation{Flow: f, Segment: judge, Mode: string(e.Mode(judge))}
	var rules []*bulkheadv1.Rule
	if s := e.segs[judge]; s != nil {
		ex.HasPolicy = true
		rules = s.ingress
		if f.egress() {
			rules = s.egress
		}
	}
	ex.Rule, ex.Reason = judgeRules(rules, p, &f)
	if ex.Rule != "" {
		ex.RuleOrigin = string(e.origins[ex.Rule])
		ex.Verdict = "allow"
		return ex
	}
	switch v1alpha1.Mode(ex.Mode) {
	case v1alpha1.ModeProtect:
		ex.Verdict, ex.Enforced = "deny", true
	case v1alpha1.ModeMonitor:
		ex.Verdict = "violation"
	default:
		ex.Verdict = "allow"
	}
	ex.Near = e.near(rules, p, &f)
	return ex
}

// resources are a message's resources; one nil for a message naming none.
func resources(f *Flow) []*string {
	if f.Resource == "" {
		return []*string{nil}
	}
	out := []*string{&f.Resource}
	for i := range f.More {
		out = append(out, &f.More[i])
	}
	return out
}

// judgeRules mirrors the engine: the lowest rule (rules are sorted by name)
// allowing the flow, or the reason none does.
func judgeRules(rules []*bulkheadv1.Rule, p peer, f *Flow) (string, string) {
	res := resources(f)
	covered := make([]bool, len(res))
	anyCovered := false
	first := ""
	admitted := false
	for _, r := range rules {
		if !admits(r, p) {
			continue
		}
		pt := portOf(r, f.Port)
		if pt == nil {
			continue
		}
		if !admitted && f.Connection {
			return r.GetName(), ReasonNone
		}
		admitted = true
		all := false
		switch proto := protoOf(pt); proto {
		case v1alpha1.ProtocolTCP:
			all = true
		case v1alpha1.ProtocolRedis:
			all = r.GetRedis() == nil || verbIn(r.GetRedis().GetCommands(), f)
		default:
			all = len(r.GetL7()) == 0
			for _, lr := range r.GetL7() {
				if !verbOK(lr.GetVerbs(), f) || !auxOK(lr.GetAux(), f) {
					continue
				}
				if len(lr.GetResources()) == 0 {
					all = true
					continue
				}
				for i, x := range res {
					if x != nil && anyMatch(lr.GetResources(), *x) {
						covered[i] = true
						if i == 0 && first == "" {
							first = r.GetName()
						}
					}
				}
			}
		}
		if all {
			anyCovered = true
			for i := range covered {
				covered[i] = true
			}
			if first == "" {
				first = r.GetName()
			}
		}
	}
	switch {
	case !admitted:
		return "", ReasonNoRule
	case first == "":
		return "", ReasonL7
	case f.Overflow && !anyCovered:
		return "", ReasonL7
	case !f.Overflow && slices.Contains(covered, false):
		return "", ReasonL7
	}
	return first, ReasonNone
}

func admits(r *bulkheadv1.Rule, p peer) bool {
	if len(r.GetPeers()) == 0 {
		return true
	}
	for _, pe := range r.GetPeers() {
		if peerMatches(pe, p) {
			return true
		}
	}
	return false
}

func peerMatches(pe *bulkheadv1.Peer, p peer) bool {
	switch v := pe.GetPeer().(type) {
	case *bulkheadv1.Peer_Segment:
		return p.segment != "" && v.Segment == p.segment
	case *bulkheadv1.Peer_Namespace:
		return p.namespace != "" && v.Namespace == p.namespace
	case *bulkheadv1.Peer_Cidr:
		pfx, err := netip.ParsePrefix(v.Cidr)
		return err == nil && p.ip.IsValid() && pfx.Contains(p.ip)
	}
	return false
}

func portOf(r *bulkheadv1.Rule, port uint32) *bulkheadv1.Port {
	for _, pt := range r.GetPorts() {
		if pt.GetPort() == port {
			return pt
		}
	}
	return nil
}

func protoOf(pt *bulkheadv1.Port) string {
	if pt.GetProtocol() == "" {
		return v1alpha1.ProtocolTCP
	}
	return pt.GetProtocol()
}

// verbIn: a command "VERB" or "VERB|SUB" matches f's verb (and sub),
// ASCII case-insensitively.
func verbIn(cmds []string, f *Flow) bool {
	if f.Verb == "" || len(f.Verb) > maxVerb {
		return false
	}
	for _, c := range cmds {
		v, s, hasSub := strings.Cut(c, "|")
		if foldEq(v, f.Verb) && (!hasSub || f.Sub != "" && len(f.Sub) <= maxVerb && foldEq(s, f.Sub)) {
			return true
		}
	}
	return false
}

func verbOK(verbs []string, f *Flow) bool { return len(verbs) == 0 || verbIn(verbs, f) }

func auxOK(aux []*bulkheadv1.Pattern, f *Flow) bool {
	return len(aux) == 0 || f.Aux != "" && anyMatch(aux, f.Aux)
}

func anyMatch(ps []*bulkheadv1.Pattern, v string) bool {
	for _, p := range ps {
		if Match(p, v) {
			return true
		}
	}
	return false
}

// Match reports whether pattern p matches v, as the engine does.
func Match(p *bulkheadv1.Pattern, v string) bool {
	norm := func(s string) string {
		if p.GetFoldCase() {
			return lowerASCII(s)
		}
		return s
	}
	v = norm(v)
	switch k := p.GetKind().(type) {
	case *bulkheadv1.Pattern_Exact:
		return v == norm(k.Exact)
	case *bulkheadv1.Pattern_Prefix:
		return strings.HasPrefix(v, norm(k.Prefix))
	case *bulkheadv1.Pattern_Suffix:
		return strings.HasSuffix(v, norm(k.Suffix))
	case *bulkheadv1.Pattern_Template:
		ts, vs := strings.Split(norm(k.Template), "/"), strings.Split(v, "/")
		for i, t := range ts {
			switch {
			case t == "{*}" && i == len(ts)-1:
				return i < len(vs) && strings.Join(vs[i:], "/") != ""
			case i >= len(vs):
				return false
			case strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}"):
				if vs[i] == "" {
					return false
				}
			case t != vs[i]:
				return false
			}
		}
		return len(vs) == len(ts)
	}
	return false
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func foldEq(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

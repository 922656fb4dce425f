package explain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// near returns the rules that come closest to allowing f: for each rule,
// the fields it differs on (its best L7Rule's, for the message), fewest
// first, then by name.
func (e *Evaluator) near(rules []*bulkheadv1.Rule, p peer, f *Flow) []Near {
	var out []Near
	for _, r := range rules {
		n := Near{Rule: r.GetName(), Origin: string(e.origins[r.GetName()])}
		var detail []string
		if !admits(r, p) {
			n.Differs = append(n.Differs, FieldPeer)
			detail = append(detail, "peers "+peersText(r.GetPeers()))
		}
		pt := portOf(r, f.Port)
		if pt == nil {
			n.Differs = append(n.Differs, FieldPort)
			detail = append(detail, "ports "+portsText(r.GetPorts()))
		} else if proto := protoOf(pt); f.Protocol != "" && proto != v1alpha1.ProtocolTCP && proto != f.Protocol {
			n.Differs = append(n.Differs, FieldProtocol)
			detail = append(detail, fmt.Sprintf("protocol %s on port %d", proto, f.Port))
		}
		if pt != nil && !f.Connection {
			fields, d := l7Differs(r, protoOf(pt), f)
			n.Differs = append(n.Differs, fields...)
			if d != "" {
				detail = append(detail, d)
			}
		}
		if len(n.Differs) == 0 {
			// The rule allows this message on its own, but not all of its
			// resources (others must be covered by other rules).
			n.Differs = []string{FieldResource}
			detail = append(detail, "covers only some of the message's resources")
		}
		n.Detail = strings.Join(detail, "; ")
		out = append(out, n)
	}
	slices.SortStableFunc(out, func(a, b Near) int { return len(a.Differs) - len(b.Differs) })
	if len(out) > MaxNear {
		out = out[:MaxNear]
	}
	return out
}

// l7Differs returns the fields on which the rule's matcher for proto
// differs from the message, for its closest L7Rule.
func l7Differs(r *bulkheadv1.Rule, proto string, f *Flow) ([]string, string) {
	switch proto {
	case v1alpha1.ProtocolTCP:
		return nil, ""
	case v1alpha1.ProtocolRedis:
		if r.GetRedis() == nil || verbIn(r.GetRedis().GetCommands(), f) {
			return nil, ""
		}
		return []string{FieldVerb}, "commands " + strings.Join(r.GetRedis().GetCommands(), ",")
	}
	if len(r.GetL7()) == 0 {
		return nil, ""
	}
	var best []string
	bestDetail := ""
	for _, lr := range r.GetL7() {
		var d []string
		var det []string
		if !verbOK(lr.GetVerbs(), f) {
			d = append(d, FieldVerb)
			det = append(det, "verbs "+strings.Join(lr.GetVerbs(), ","))
		}
		if len(lr.GetResources()) > 0 {
			ok := !f.Overflow
			for _, x := range resources(f) {
				if x == nil || !anyMatch(lr.GetResources(), *x) {
					ok = false
				}
			}
			if !ok {
				d = append(d, FieldResource)
				det = append(det, "resources "+patternsText(lr.GetResources()))
			}
		}
		if !auxOK(lr.GetAux(), f) {
			d = append(d, FieldAux)
			det = append(det, "aux "+patternsText(lr.GetAux()))
		}
		if best == nil || len(d) < len(best) {
			best, bestDetail = d, strings.Join(det, ", ")
			if len(d) == 0 {
				break
			}
		}
	}
	return best, bestDetail
}

func peersText(ps []*bulkheadv1.Peer) string {
	var s []string
	for _, p := range ps {
		switch v := p.GetPeer().(type) {
		case *bulkheadv1.Peer_Segment:
			s = append(s, "segment "+v.Segment)
		case *bulkheadv1.Peer_Namespace:
			s = append(s, "namespace "+v.Namespace)
		case *bulkheadv1.Peer_Cidr:
			s = append(s, "cidr "+v.Cidr)
		case *bulkheadv1.Peer_Fqdn:
			s = append(s, "fqdn "+v.Fqdn+" (judged by the proxy's DNS answers)")
		}
	}
	return strings.Join(s, ",")
}

func portsText(ps []*bulkheadv1.Port) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%d/%s", p.GetPort(), protoOf(p)))
	}
	return strings.Join(s, ",")
}

func patternsText(ps []*bulkheadv1.Pattern) string {
	var s []string
	for _, p := range ps {
		var v string
		switch k := p.GetKind().(type) {
		case *bulkheadv1.Pattern_Exact:
			v = k.Exact
		case *bulkheadv1.Pattern_Prefix:
			v = k.Prefix + "*"
		case *bulkheadv1.Pattern_Suffix:
			v = "*" + k.Suffix
		case *bulkheadv1.Pattern_Template:
			v = k.Template
		}
		s = append(s, v)
	}
	return strings.Join(s, ",")
}

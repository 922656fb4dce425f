package compile

import (
	"net/netip"
	"slices"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// Names of the infrastructure allowances within a segment; compiled, they
// read "namespace/segment/bulkhead-infra-probes" and so on. Validate
// refuses policy rules with the prefix, so they cannot collide.
const (
	InfraProbes  = v1alpha1.InfraRulePrefix + "probes"
	InfraMetrics = v1alpha1.InfraRulePrefix + "metrics"
	InfraDNS     = v1alpha1.InfraRulePrefix + "dns"
)

// dnsPort is the port of InfraDNS.
const dnsPort = 53

// InfraEnabled reports whether the infrastructure allowances apply to a
// segment whose policy is p (nil: none): not disabled in the settings nor
// in the policy's spec.infrastructure.
func InfraEnabled(in store.Infrastructure, p *v1alpha1.SegmentPolicy) bool {
	if in.Disabled {
		return false
	}
	return p == nil || p.Spec.Infrastructure == nil || !p.Spec.Infrastructure.Disabled
}

// infraRules builds the allowances of one workload of segment ns/seg that
// declares ports (sorted by number) and whose segment's own egress rules
// are userEgress. A kind without sources, or without ports, adds nothing.
// The rules are fresh: the caller may append them anywhere.
func infraRules(in store.Infrastructure, ns, seg string, ports []*bulkheadv1.Port, userEgress []*bulkheadv1.Rule) (ingress, egress []*bulkheadv1.Rule) {
	name := func(n string) string { return ns + "/" + seg + "/" + n }
	if len(in.ProbeSources) > 0 && len(ports) > 0 {
		r := &bulkheadv1.Rule{Name: name(InfraProbes), Peers: cidrPeers(in.ProbeSources)}
		for _, p := range ports {
			r.Ports = append(r.Ports, &bulkheadv1.Port{Port: p.Port, Protocol: p.Protocol})
		}
		ingress = append(ingress, r)
	}
	if len(in.MetricsSources) > 0 && len(in.MetricsPorts) > 0 {
		r := &bulkheadv1.Rule{Name: name(InfraMetrics), Peers: cidrPeers(in.MetricsSources)}
		mps := slices.Clone(in.MetricsPorts)
		slices.Sort(mps)
		for _, n := range slices.Compact(mps) {
			proto := v1alpha1.ProtocolTCP
			for _, p := range ports {
				if p.Port == uint32(n) {
					proto = p.Protocol
				}
			}
			r.Ports = append(r.Ports, &bulkheadv1.Port{Port: uint32(n), Protocol: proto})
		}
		ingress = append(ingress, r)
	}
	if len(in.DNSServers) > 0 {
		// Speak on port 53 the protocol the segment's own rules give it, so
		// that the allowance never makes the port's protocol ambiguous.
		proto := v1alpha1.ProtocolDNS
		for _, r := range userEgress {
			for _, p := range r.Ports {
				if p.Port == dnsPort {
					proto = p.Protocol
				}
			}
		}
		egress = append(egress, &bulkheadv1.Rule{
			Name:  name(InfraDNS),
			Peers: cidrPeers(in.DNSServers),
			Ports: []*bulkheadv1.Port{{Port: dnsPort, Protocol: proto}},
		})
	}
	return ingress, egress
}

// cidrPeers turns validated CIDRs into masked, sorted, distinct peers.
func cidrPeers(cidrs []string) []*bulkheadv1.Peer {
	ss := make([]string, 0, len(cidrs))
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			c = p.Masked().String()
		}
		ss = append(ss, c)
	}
	slices.Sort(ss)
	ss = slices.Compact(ss)
	out := make([]*bulkheadv1.Peer, len(ss))
	for i, c := range ss {
		out[i] = &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Cidr{Cidr: c}}
	}
	return out
}

package als

import (
	"net/netip"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
)

// View is what the server knows of the compiled configuration: each node's
// policy (segment, mode, ports, ingress rules) and each workload address's
// segment and namespace. It is immutable; build one per good compilation.
type View struct {
	nodes map[string]*bulkheadv1.ProxyPolicy
	peers map[netip.Addr]peer
}

type peer struct{ segment, namespace string }

// NewView indexes a compile output. A nil output gives an empty View.
func NewView(out *compile.Output) *View {
	v := &View{nodes: map[string]*bulkheadv1.ProxyPolicy{}, peers: map[netip.Addr]peer{}}
	if out == nil {
		return v
	}
	v.nodes = out.Proxies
	for _, id := range out.Identities {
		for _, s := range id.GetIps() {
			if ip, err := netip.ParseAddr(s); err == nil {
				v.peers[ip.Unmap()] = peer{segment: id.GetSegment(), namespace: id.GetNamespace()}
			}
		}
	}
	return v
}

// node returns the policy of node, if it is a known one.
func (v *View) node(node string) (*bulkheadv1.ProxyPolicy, bool) {
	if v == nil {
		return nil, false
	}
	pp, ok := v.nodes[node]
	return pp, ok
}

// peer returns the segment key and namespace of the workload that owns ip.
func (v *View) peer(ip netip.Addr) (peer, bool) {
	if v == nil {
		return peer{}, false
	}
	p, ok := v.peers[ip.Unmap()]
	return p, ok
}

// admitted reports whether some ingress rule of pp admits a connection
// from src to port: the difference between bulkhead-proxy's reasons
// "no_rule" and "l7_not_allowed".
func (v *View) admitted(pp *bulkheadv1.ProxyPolicy, src netip.Addr, port uint32) bool {
	from, known := v.peer(src)
	for _, r := range pp.GetIngress() {
		onPort := false
		for _, p := range r.GetPorts() {
			onPort = onPort || p.GetPort() == port
		}
		if !onPort {
			continue
		}
		if len(r.GetPeers()) == 0 {
			return true
		}
		for _, pe := range r.GetPeers() {
			switch k := pe.GetPeer().(type) {
			case *bulkheadv1.Peer_Segment:
				if known && k.Segment == from.segment {
					return true
				}
			case *bulkheadv1.Peer_Namespace:
				if known && k.Namespace == from.namespace {
					return true
				}
			case *bulkheadv1.Peer_Cidr:
				if pf, err := netip.ParsePrefix(k.Cidr); err == nil && pf.Contains(src) {
					return true
				}
			}
		}
	}
	return false
}

package envoy

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"slices"

	"github.com/bulkhead-io/bulkhead/controlplane/identity"
)

// service is a segment's HTTP or gRPC port as clients see it.
type service struct {
	name      string           // ServiceName
	endpoints []netip.AddrPort // sorted
	fp        uint64           // hash of endpoints
}

// reachability says which services the workloads of a segment may call:
// those whose ingress rules admit the segment (by name, by namespace, or
// any peer) and those its own egress rules name. A proxyless gRPC client
// gets the client-side resources of exactly these services.
type reachability struct {
	services map[string]*service
	bySeg    map[string][]string // segment key → services
	byNS     map[string][]string // namespace → services
	all      []string            // services that admit any peer
}

func buildReachability(in Input) *reachability {
	r := &reachability{services: map[string]*service{}, bySeg: map[string][]string{}, byNS: map[string][]string{}}
	// svcOf[segment key][port] = service name
	svcOf := map[string]map[uint32]string{}
	for _, w := range in.Workloads {
		pp := in.Output.Proxies[identity.NodeID(w)]
		if pp == nil {
			continue
		}
		seg := pp.GetNamespace() + "/" + pp.GetSegment()
		for _, p := range pp.GetPorts() {
			if !isHTTP(p.GetProtocol()) || p.GetPort() == 0 || p.GetPort() > 65535 {
				continue
			}
			name := ServiceName(pp.GetNamespace(), pp.GetSegment(), uint16(p.GetPort()))
			s := r.services[name]
			if s == nil {
				s = &service{name: name}
				r.services[name] = s
				if svcOf[seg] == nil {
					svcOf[seg] = map[uint32]string{}
				}
				svcOf[seg][p.GetPort()] = name
			}
			for _, ip := range w.IPs {
				s.endpoints = append(s.endpoints, netip.AddrPortFrom(ip.Unmap(), uint16(p.GetPort())))
			}
		}
	}
	for _, s := range r.services {
		slices.SortFunc(s.endpoints, func(a, b netip.AddrPort) int { return a.Compare(b) })
		s.endpoints = slices.Compact(s.endpoints)
		h := fnv.New64a()
		for _, ep := range s.endpoints {
			b, _ := ep.MarshalBinary()
			h.Write(b)
		}
		s.fp = h.Sum64()
	}
	// The rules of a segment are shared by its proxies: read them once.
	done := map[string]bool{}
	for _, pp := range in.Output.Proxies {
		seg := pp.GetNamespace() + "/" + pp.GetSegment()
		if done[seg] {
			continue
		}
		done[seg] = true
		for _, rule := range pp.GetIngress() {
			for _, p := range rule.GetPorts() {
				name, ok := svcOf[seg][p.GetPort()]
				if !ok {
					continue
				}
				if len(rule.GetPeers()) == 0 {
					r.all = append(r.all, name)
				}
				for _, peer := range rule.GetPeers() {
					if s := peer.GetSegment(); s != "" {
						r.bySeg[s] = append(r.bySeg[s], name)
					} else if ns := peer.GetNamespace(); ns != "" {
						r.byNS[ns] = append(r.byNS[ns], name)
					}
				}
			}
		}
		for _, rule := range pp.GetEgress() {
			for _, peer := range rule.GetPeers() {
				dst := peer.GetSegment()
				if dst == "" {
					continue
				}
				for _, p := range rule.GetPorts() {
					if name, ok := svcOf[dst][p.GetPort()]; ok {
						r.bySeg[seg] = append(r.bySeg[seg], name)
					}
				}
			}
		}
	}
	return r
}

// from lists, sorted, the services a workload of segment seg (key) in
// namespace ns may call.
func (r *reachability) from(seg, ns string) []string {
	out := slices.Concat(r.all, r.bySeg[seg], r.byNS[ns])
	slices.Sort(out)
	return slices.Compact(out)
}

// fingerprint hashes the names and endpoint hashes of svcs.
func (r *reachability) fingerprint(svcs []string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, name := range svcs {
		h.Write([]byte(name))
		binary.LittleEndian.PutUint64(b[:], r.services[name].fp)
		h.Write(b[:])
	}
	return h.Sum64()
}

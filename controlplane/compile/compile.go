// Package compile turns the store's policies and identity's workloads into
// the data plane's configuration: one bulkheadv1.ProxyPolicy per proxy (xDS
// node) and one bulkheadv1.Identity per workload.
//
// Compile is pure and deterministic: the same Input yields equal protos, and
// a ProxyPolicy's Revision is a hash of its content, so that the xDS server
// pushes only what changed. Inconsistent input is refused whole; callers keep
// the previous Output.
package compile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Input is everything a compilation reads. Compile does not modify it.
type Input struct {
	Policies  []*v1alpha1.SegmentPolicy
	Workloads []identity.Workload
	Settings  store.Settings
}

// Output is the compiled configuration. It is immutable: its messages may
// share sub-messages (the rules of one segment are shared by its proxies),
// so neither the caller nor anyone it hands them to may modify them.
type Output struct {
	// Proxies holds one policy per workload, by node id ("name.namespace").
	Proxies map[string]*bulkheadv1.ProxyPolicy
	// Identities holds one identity per workload, by "namespace/name".
	Identities map[string]*bulkheadv1.Identity
	// Segments lists every segment that has a policy or a workload, sorted
	// by namespace and name.
	Segments []SegmentInfo
}

// SegmentInfo is one segment as compiled.
type SegmentInfo struct {
	Namespace string
	Name      string
	// Mode is the mode the segment is judged under (never empty).
	Mode v1alpha1.Mode
	// Workloads are the names of its workloads, sorted.
	Workloads []string
}

// Key is the segment key, "namespace/name".
func (s SegmentInfo) Key() string { return s.Namespace + "/" + s.Name }

// RevisionLen is the length in hex digits of ProxyPolicy.Revision.
const RevisionLen = 16

// policy is one validated policy in export form with its compiled parts.
type policy struct {
	p        *v1alpha1.SegmentPolicy
	selector labels.Selector // nil: no spec.selector
	ingress  []*bulkheadv1.Rule
	egress   []*bulkheadv1.Rule
}

// Compile builds the configuration of every workload. A policy that fails
// Validate, two policies or workloads with the same name, an IP claimed by
// two workloads or a bad selector make it fail with an error naming them.
func Compile(in Input) (*Output, error) {
	if err := in.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("compile: settings: %w", err)
	}
	pols, byNS, err := compilePolicies(in.Policies)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if err := checkWorkloads(in.Workloads); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}

	out := &Output{
		Proxies:    make(map[string]*bulkheadv1.ProxyPolicy, len(in.Workloads)),
		Identities: make(map[string]*bulkheadv1.Identity, len(in.Workloads)),
	}
	mode := func(ns, seg string) v1alpha1.Mode {
		if p := pols[ns+"/"+seg]; p != nil && p.p.Spec.Mode != "" {
			return p.p.Spec.Mode
		}
		return in.Settings.Mode(ns)
	}
	segments := make(map[string]*SegmentInfo)
	segment := func(ns, name string) *SegmentInfo {
		key := ns + "/" + name
		s := segments[key]
		if s == nil {
			s = &SegmentInfo{Namespace: ns, Name: name, Mode: mode(ns, name)}
			segments[key] = s
		}
		return s
	}
	for _, p := range pols {
		segment(p.p.Namespace, p.p.Name)
	}

	for _, w := range in.Workloads {
		seg := segmentOf(w, byNS[w.Namespace])
		info := segment(w.Namespace, seg)
		info.Workloads = append(info.Workloads, w.Name)
		key := info.Key()

		pp := &bulkheadv1.ProxyPolicy{
			Segment:   seg,
			Namespace: w.Namespace,
			Mode:      protoMode(info.Mode),
		}
		for _, port := range w.Ports {
			pp.Ports = append(pp.Ports, &bulkheadv1.Port{Port: uint32(port.Port), Protocol: port.Protocol})
		}
		slices.SortFunc(pp.Ports, func(a, b *bulkheadv1.Port) int { return cmp.Compare(a.Port, b.Port) })
		p := pols[key]
		if p != nil {
			pp.Ingress, pp.Egress = p.ingress, p.egress
		}
		var pol *v1alpha1.SegmentPolicy
		if p != nil {
			pol = p.p
		}
		if InfraEnabled(in.Settings.Infrastructure, pol) {
			ing, eg := infraRules(in.Settings.Infrastructure, w.Namespace, seg, pp.Ports, pp.Egress)
			// Concat copies: the policy's rule slices are shared.
			if len(ing) > 0 {
				pp.Ingress = slices.Concat(pp.Ingress, ing)
			}
			if len(eg) > 0 {
				pp.Egress = slices.Concat(pp.Egress, eg)
			}
		}
		rev, err := revision(pp)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", identity.NodeID(w), err)
		}
		pp.Revision = rev
		out.Proxies[identity.NodeID(w)] = pp

		id := &bulkheadv1.Identity{Workload: w.Name, Namespace: w.Namespace, Segment: key}
		ips := slices.Clone(w.IPs)
		slices.SortFunc(ips, netip.Addr.Compare)
		for _, ip := range ips {
			id.Ips = append(id.Ips, ip.String())
		}
		out.Identities[w.Key()] = id
	}

	for _, s := range segments {
		slices.Sort(s.Workloads)
		out.Segments = append(out.Segments, *s)
	}
	slices.SortFunc(out.Segments, func(a, b SegmentInfo) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// compilePolicies validates and compiles every policy. It returns them by
// key and, per namespace, those with a selector, sorted by name.
func compilePolicies(in []*v1alpha1.SegmentPolicy) (map[string]*policy, map[string][]*policy, error) {
	var errs []error
	pols := make(map[string]*policy, len(in))
	byNS := make(map[string][]*policy)
	for i, src := range in {
		if src == nil {
			errs = append(errs, fmt.Errorf("policy %d: nil", i+1))
			continue
		}
		key := src.Namespace + "/" + src.Name
		if err := src.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", key, err))
			continue
		}
		if pols[key] != nil {
			errs = append(errs, fmt.Errorf("policy %s: given twice", key))
			continue
		}
		p := &policy{p: v1alpha1.ForExport(src)}
		if sel := p.p.Spec.Selector; sel != nil {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy %s: spec.selector: %w", key, err))
				continue
			}
			p.selector = s
			byNS[src.Namespace] = append(byNS[src.Namespace], p)
		}
		p.ingress = compileRules(p.p.Namespace, p.p.Name, p.p.Spec.Ingress)
		p.egress = compileRules(p.p.Namespace, p.p.Name, p.p.Spec.Egress)
		pols[key] = p
	}
	for _, ps := range byNS {
		slices.SortFunc(ps, func(a, b *policy) int { return strings.Compare(a.p.Name, b.p.Name) })
	}
	return pols, byNS, errors.Join(errs...)
}

// checkWorkloads refuses workloads that cannot be told apart: a repeated
// name or node id, an IP of two workloads, a port declared twice.
func checkWorkloads(ws []identity.Workload) error {
	var errs []error
	keys := make(map[string]bool, len(ws))
	nodes := make(map[string]string, len(ws))
	owner := make(map[netip.Addr]string)
	for _, w := range ws {
		key := w.Key()
		if w.Name == "" || w.Namespace == "" {
			errs = append(errs, fmt.Errorf("workload %q: name and namespace are required", key))
			continue
		}
		if keys[key] {
			errs = append(errs, fmt.Errorf("workload %s: given twice", key))
			continue
		}
		keys[key] = true
		node := identity.NodeID(w)
		if o, dup := nodes[node]; dup {
			errs = append(errs, fmt.Errorf("workload %s: node id %s is also %s's", key, node, o))
		}
		nodes[node] = key
		for _, ip := range w.IPs {
			if !ip.IsValid() {
				errs = append(errs, fmt.Errorf("workload %s: invalid IP", key))
				continue
			}
			ip = ip.Unmap()
			if o, dup := owner[ip]; dup {
				errs = append(errs, fmt.Errorf("workload %s: IP %s is also %s's", key, ip, o))
			}
			owner[ip] = key
		}
		ports := make(map[uint16]bool, len(w.Ports))
		for _, p := range w.Ports {
			switch {
			case p.Port == 0:
				errs = append(errs, fmt.Errorf("workload %s: port 0", key))
			case ports[p.Port]:
				errs = append(errs, fmt.Errorf("workload %s: port %d declared twice", key, p.Port))
			case !v1alpha1.IsKnownProtocol(p.Protocol):
				errs = append(errs, fmt.Errorf("workload %s: port %d: unknown protocol %q", key, p.Port, p.Protocol))
			}
			ports[p.Port] = true
		}
	}
	return errors.Join(errs...)
}

// segmentOf is the segment of w: the first policy of its namespace, by
// name, whose selector matches its labels, else w.Segment, else its name.
func segmentOf(w identity.Workload, selecting []*policy) string {
	set := labels.Set(w.Labels)
	for _, p := range selecting {
		if p.selector.Matches(set) {
			return p.p.Name
		}
	}
	if w.Segment != "" {
		return w.Segment
	}
	return w.Name
}

// compileRules compiles the rules of policy ns/name, which are in export
// form (normalized, sorted by name).
func compileRules(ns, name string, rules []v1alpha1.Rule) []*bulkheadv1.Rule {
	out := make([]*bulkheadv1.Rule, 0, len(rules))
	for _, r := range rules {
		cr := &bulkheadv1.Rule{Name: ns + "/" + name + "/" + r.Name}
		for _, pe := range r.Peers {
			cr.Peers = append(cr.Peers, compilePeer(ns, pe))
		}
		for _, pp := range r.Ports {
			cr.Ports = append(cr.Ports, &bulkheadv1.Port{Port: uint32(pp.Port), Protocol: pp.EffectiveProtocol()})
		}
		if r.Redis != nil {
			cmds := make([]string, len(r.Redis.Commands))
			for i, c := range r.Redis.Commands {
				cmds[i] = strings.ToUpper(c)
			}
			slices.Sort(cmds)
			cr.Redis = &bulkheadv1.RedisMatch{Commands: slices.Compact(cmds)}
		}
		cr.L7 = compileL7(&r)
		out = append(out, cr)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// compilePeer resolves a validated peer of a policy of namespace ns. An FQDN
// is lower case without a final dot.
func compilePeer(ns string, pe v1alpha1.Peer) *bulkheadv1.Peer {
	switch {
	case pe.FQDN != "":
		return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Fqdn{Fqdn: strings.TrimSuffix(strings.ToLower(pe.FQDN), ".")}}
	case pe.CIDR != "":
		cidr := pe.CIDR
		if p, err := netip.ParsePrefix(cidr); err == nil {
			cidr = p.Masked().String()
		}
		return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Cidr{Cidr: cidr}}
	case pe.Segment != "":
		pns := pe.Namespace
		if pns == "" {
			pns = ns
		}
		return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Segment{Segment: pns + "/" + pe.Segment}}
	default:
		return &bulkheadv1.Peer{Peer: &bulkheadv1.Peer_Namespace{Namespace: pe.Namespace}}
	}
}

func protoMode(m v1alpha1.Mode) bulkheadv1.Mode {
	switch m {
	case v1alpha1.ModeMonitor:
		return bulkheadv1.Mode_MODE_MONITOR
	case v1alpha1.ModeProtect:
		return bulkheadv1.Mode_MODE_PROTECT
	}
	return bulkheadv1.Mode_MODE_DISCOVER
}

// revision hashes pp without its Revision field.
func revision(pp *bulkheadv1.ProxyPolicy) (string, error) {
	saved := pp.Revision
	pp.Revision = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pp)
	pp.Revision = saved
	if err != nil {
		return "", fmt.Errorf("revision: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:RevisionLen/2]), nil
}

package envoy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
)

// Kind is the kind of xDS consumer a node is.
type Kind uint8

const (
	// KindNone: the workload gets no Envoy resources.
	KindNone Kind = iota
	// KindEnvoy: an Envoy sidecar.
	KindEnvoy
	// KindGRPC: a proxyless gRPC application (gRPC-Go's xds package).
	KindGRPC
)

func (k Kind) String() string {
	switch k {
	case KindEnvoy:
		return identity.SidecarEnvoy
	case KindGRPC:
		return identity.SidecarGRPC
	}
	return "none"
}

// KindOf maps identity.Workload.Sidecar.
func KindOf(sidecar string) Kind {
	switch sidecar {
	case identity.SidecarEnvoy:
		return KindEnvoy
	case identity.SidecarGRPC:
		return KindGRPC
	}
	return KindNone
}

// Indexes of NodeConfig's per-type arrays.
const (
	Listeners = iota
	Routes
	Clusters
	Endpoints
	NumTypes
)

// TypeURLs are the type URLs of NodeConfig's per-type arrays, in index
// order.
var TypeURLs = [NumTypes]string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// NodeConfig is everything one node is served. It is immutable: the
// Compiler hands out the same pointer while nothing of the node changed.
type NodeConfig struct {
	Node string
	Kind Kind
	// Resources holds, per type (Listeners…Endpoints), the node's
	// resources sorted by name.
	Resources [NumTypes][]*Resource
	// Versions holds, per type, a hash of the names and hashes of its
	// resources; never empty.
	Versions [NumTypes]string
}

// Lookup returns the resource of type t (Listeners…) named name.
func (nc *NodeConfig) Lookup(t int, name string) (*Resource, bool) {
	rs := nc.Resources[t]
	i, ok := slices.BinarySearchFunc(rs, name, func(r *Resource, n string) int { return strings.Compare(r.Name, n) })
	if !ok {
		return nil, false
	}
	return rs[i], true
}

// Options tunes a Compiler. The zero value uses the defaults.
type Options struct {
	// InboundPort is the port of an Envoy sidecar's virtual inbound
	// listener, where the capture step redirects the HTTP ports. Zero:
	// DefaultInboundPort (15016; bulkhead-proxy has 15006).
	InboundPort uint16
	// AppAddress is where an Envoy sidecar reaches the application. Zero:
	// 127.0.0.1.
	AppAddress netip.Addr
	// ControlPlaneCluster is the bootstrap cluster that reaches the control
	// plane (access logs). Empty: ControlPlaneCluster.
	ControlPlaneCluster string
}

// Input is what a compilation reads: the compiled policy (modes, rules,
// ports, identities) and the workloads (addresses and sidecar kinds) it was
// compiled from.
type Input struct {
	Output    *compile.Output
	Workloads []identity.Workload
}

// Result is one compilation.
type Result struct {
	// Nodes holds the configuration of every workload with a sidecar, by
	// node id.
	Nodes map[string]*NodeConfig
	// Changed lists, sorted, the nodes whose configuration is new or
	// differs from the previous compilation.
	Changed []string
	// Built counts the resources built anew (the others came from the
	// cache), by type index.
	Built [NumTypes]int
}

// Compiler builds NodeConfigs, reusing what the previous compilations
// built when its inputs did not change. It is safe for concurrent use
// (calls are serialised).
type Compiler struct {
	opts Options

	mu       sync.Mutex
	gen      uint64 // the compilation running; cache entries record when they were last used
	routes   map[routeKey]*routeEntry
	lis      map[netip.AddrPort]*resEntry
	hcm      map[uint16]*hcmEntry
	local    map[clusterKey]*resEntry
	services map[string]*serviceEntry
	shared   [2]*Resource // virtual inbound listener, blackhole cluster
	nodes    map[string]*nodeEntry
	sets     map[peerRef]uint64 // fingerprints of the address sets of the previous compilation
}

// mark records the compilation that last used a cache entry; entries not
// used by the latest one are dropped.
type mark struct{ gen uint64 }

type routeKey struct {
	segment, revision string
	port              uint16
	kind              Kind
}

type routeEntry struct {
	mark
	refs []peerRef // the address sets its RBAC was built from
	res  *Resource

	// What a pending build needs.
	rules []*bulkheadv1.Rule
	mode  bulkheadv1.Mode
	port  uint16
	kind  Kind
	err   error
}

type resEntry struct {
	mark
	res *Resource
}

type hcmEntry struct {
	mark
	any  *anypb.Any
	src  *hcmv3.HttpConnectionManager // what any was packed from
	hash [32]byte                     // of any's value
}

type clusterKey struct {
	port     uint16
	protocol string
}

type serviceEntry struct {
	mark
	fp  uint64
	res [NumTypes]*Resource
}

// nodeEntry is what a node's configuration was built from, so that a node
// whose inputs are unchanged is skipped with a few comparisons.
type nodeEntry struct {
	nc       *NodeConfig
	revision string
	kind     Kind
	ips      []netip.Addr
	refs     []peerRef // union of its routes' refs
	svcFP    uint64    // proxyless gRPC: the services it may call and their endpoints
	marks    []*mark   // the cache entries it uses
}

// NewCompiler returns a Compiler with empty caches. It starts no goroutines.
func NewCompiler(opts Options) *Compiler {
	if opts.InboundPort == 0 {
		opts.InboundPort = DefaultInboundPort
	}
	if !opts.AppAddress.IsValid() {
		opts.AppAddress = netip.MustParseAddr(DefaultAppAddress)
	}
	if opts.ControlPlaneCluster == "" {
		opts.ControlPlaneCluster = ControlPlaneCluster
	}
	return &Compiler{
		opts:     opts,
		routes:   map[routeKey]*routeEntry{},
		lis:      map[netip.AddrPort]*resEntry{},
		hcm:      map[uint16]*hcmEntry{},
		local:    map[clusterKey]*resEntry{},
		services: map[string]*serviceEntry{},
		nodes:    map[string]*nodeEntry{},
		sets:     map[peerRef]uint64{},
	}
}

// pendingNode is a node being assembled while its new route
// configurations are built.
type pendingNode struct {
	entry  *nodeEntry
	routes []*routeEntry
}

// compilation is the state of one Compile call.
type compilation struct {
	c       *Compiler
	sets    *addrSets
	changed map[peerRef]bool // address sets that differ from the previous compilation
	reach   *reachability
	pending []*routeEntry // route configurations to build
	built   [NumTypes]int
	v       *validator // for what the compilation builds on its own goroutine
}

// Compile builds the configuration of every workload of in whose Sidecar is
// set. A workload without a compiled ProxyPolicy is an error; the others
// are still built, and the error names it.
func (c *Compiler) Compile(in Input) (*Result, error) {
	if in.Output == nil {
		return nil, errors.New("envoy: nil compile output")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	cc := &compilation{c: c, sets: buildAddrSets(in), v: &validator{done: map[proto.Message]bool{}}}
	cc.changed, c.sets = cc.sets.diff(c.sets)

	res := &Result{Nodes: make(map[string]*NodeConfig)}
	nodes := make(map[string]*nodeEntry, len(c.nodes))
	var building []pendingNode
	var errs []error
	for _, w := range in.Workloads {
		kind := KindOf(w.Sidecar)
		if kind == KindNone {
			continue
		}
		node := identity.NodeID(w)
		pp := in.Output.Proxies[node]
		if pp == nil {
			errs = append(errs, fmt.Errorf("envoy: node %s: no compiled policy", node))
			continue
		}
		var svcs []string
		var svcFP uint64
		if kind == KindGRPC {
			if cc.reach == nil {
				cc.reach = buildReachability(in)
			}
			svcs = cc.reach.from(pp.GetNamespace()+"/"+pp.GetSegment(), pp.GetNamespace())
			svcFP = cc.reach.fingerprint(svcs)
		}
		if prev := c.nodes[node]; prev != nil && pp.GetRevision() != "" && prev.revision == pp.GetRevision() && prev.kind == kind &&
			prev.svcFP == svcFP && slices.Equal(prev.ips, w.IPs) && !cc.touches(prev.refs) {
			// Nothing it depends on changed: keep it, and its cache entries.
			for _, m := range prev.marks {
				m.gen = c.gen
			}
			nodes[node] = prev
			res.Nodes[node] = prev.nc
			continue
		}
		pn, err := cc.node(w, node, kind, pp, svcs, svcFP)
		if err != nil {
			errs = append(errs, fmt.Errorf("envoy: node %s: %w", node, err))
			continue
		}
		building = append(building, pn)
	}
	cc.buildRoutes()
	for _, pn := range building {
		e, nc := pn.entry, pn.entry.nc
		var err error
		for _, r := range pn.routes {
			if r.err != nil {
				err = r.err
				break
			}
			nc.Resources[Routes] = append(nc.Resources[Routes], r.res)
			e.refs = append(e.refs, r.refs...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("envoy: node %s: %w", nc.Node, err))
			continue
		}
		slices.Sort(e.refs)
		e.refs = slices.Compact(e.refs)
		for t := range nc.Resources {
			slices.SortFunc(nc.Resources[t], func(a, b *Resource) int { return strings.Compare(a.Name, b.Name) })
			nc.Resources[t] = slices.CompactFunc(nc.Resources[t], func(a, b *Resource) bool { return a.Name == b.Name })
		}
		if prev := c.nodes[nc.Node]; prev != nil && sameResources(prev.nc, nc) {
			e.nc = prev.nc
		} else {
			nc.Versions = versions(nc)
			res.Changed = append(res.Changed, nc.Node)
		}
		nodes[nc.Node] = e
		res.Nodes[nc.Node] = e.nc
	}
	for node := range c.nodes {
		if _, ok := res.Nodes[node]; !ok {
			res.Changed = append(res.Changed, node)
		}
	}
	slices.Sort(res.Changed)
	c.nodes = nodes
	c.sweep()
	res.Built = cc.built
	return res, errors.Join(errs...)
}

// touches reports whether one of refs names an address set that changed.
func (cc *compilation) touches(refs []peerRef) bool {
	if len(cc.changed) == 0 {
		return false
	}
	for _, r := range refs {
		if cc.changed[r] {
			return true
		}
	}
	return false
}

// sweep drops the cache entries the latest compilation did not use.
func (c *Compiler) sweep() {
	gen := c.gen
	maps.DeleteFunc(c.routes, func(_ routeKey, e *routeEntry) bool { return e.gen != gen || e.err != nil })
	maps.DeleteFunc(c.lis, func(_ netip.AddrPort, e *resEntry) bool { return e.gen != gen })
	maps.DeleteFunc(c.hcm, func(_ uint16, e *hcmEntry) bool { return e.gen != gen })
	maps.DeleteFunc(c.local, func(_ clusterKey, e *resEntry) bool { return e.gen != gen })
	maps.DeleteFunc(c.services, func(_ string, e *serviceEntry) bool { return e.gen != gen })
}

func (c *Compiler) use(m *mark, e *nodeEntry) {
	m.gen = c.gen
	e.marks = append(e.marks, m)
}

// node assembles one node's resources but for the route configurations it
// schedules.
func (cc *compilation) node(w identity.Workload, node string, kind Kind, pp *bulkheadv1.ProxyPolicy, svcs []string, svcFP uint64) (pendingNode, error) {
	c := cc.c
	e := &nodeEntry{
		nc:       &NodeConfig{Node: node, Kind: kind},
		revision: pp.GetRevision(), kind: kind, ips: slices.Clone(w.IPs), svcFP: svcFP,
	}
	pn := pendingNode{entry: e}
	nc := e.nc
	seg := pp.GetNamespace() + "/" + pp.GetSegment()
	for _, p := range pp.GetPorts() {
		proto := p.GetProtocol()
		if !isHTTP(proto) || p.GetPort() == 0 || p.GetPort() > 65535 {
			continue
		}
		port := uint16(p.GetPort())
		rt := cc.route(seg, pp, port, kind)
		c.use(&rt.mark, e)
		pn.routes = append(pn.routes, rt)
		addrs := slices.Clone(w.IPs)
		if kind == KindGRPC {
			// gRPC-Go asks for the listener of the address it listens
			// on, often the unspecified one.
			addrs = append(addrs, netip.IPv4Unspecified(), netip.IPv6Unspecified())
		}
		for _, ip := range addrs {
			l, err := cc.listener(netip.AddrPortFrom(ip.Unmap(), port), e)
			if err != nil {
				return pn, err
			}
			nc.Resources[Listeners] = append(nc.Resources[Listeners], l)
		}
		if kind == KindEnvoy {
			cl, err := cc.localCluster(port, proto, e)
			if err != nil {
				return pn, err
			}
			nc.Resources[Clusters] = append(nc.Resources[Clusters], cl)
		}
	}
	switch kind {
	case KindEnvoy:
		vl, bh, err := c.sharedResources()
		if err != nil {
			return pn, err
		}
		nc.Resources[Listeners] = append(nc.Resources[Listeners], vl)
		nc.Resources[Clusters] = append(nc.Resources[Clusters], bh)
	case KindGRPC:
		for _, svc := range svcs {
			se, err := cc.service(cc.reach.services[svc], e)
			if err != nil {
				return pn, err
			}
			for t, r := range se.res {
				nc.Resources[t] = append(nc.Resources[t], r)
			}
		}
	}
	return pn, nil
}

func isHTTP(protocol string) bool { return protocol == "http" || protocol == "http2" }

// route returns the cache entry of seg's port for kind: the cached one
// while the segment's policy revision and the address sets its rules name
// are unchanged, else a new one scheduled for building.
func (cc *compilation) route(seg string, pp *bulkheadv1.ProxyPolicy, port uint16, kind Kind) *routeEntry {
	c := cc.c
	key := routeKey{segment: seg, revision: pp.GetRevision(), port: port, kind: kind}
	// Without a revision (compile always sets one) nothing tells whether
	// the rules changed: build anew.
	if e := c.routes[key]; e != nil && pp.GetRevision() != "" && (e.gen == c.gen || !cc.touches(e.refs)) {
		return e
	}
	e := &routeEntry{refs: peerRefs(pp.GetIngress(), uint32(port)), rules: pp.GetIngress(), mode: pp.GetMode(), port: port, kind: kind}
	c.routes[key] = e
	cc.pending = append(cc.pending, e)
	return e
}

// buildRoutes builds the scheduled route configurations, on every CPU when
// there are many.
func (cc *compilation) buildRoutes() {
	// Each goroutine validates with its own validator (shared permission
	// and principal messages are walked once per goroutine).
	build := func(v *validator, e *routeEntry) {
		e.res, e.err = buildRoute(v, e.rules, e.mode, e.port, e.kind, cc.sets)
		e.rules = nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(cc.pending)/64)
	if workers <= 1 {
		for _, e := range cc.pending {
			build(cc.v, e)
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				v := &validator{done: map[proto.Message]bool{}}
				for i := next.Add(1) - 1; i < int64(len(cc.pending)); i = next.Add(1) - 1 {
					build(v, cc.pending[i])
				}
			})
		}
		wg.Wait()
	}
	cc.built[Routes] += len(cc.pending)
}

// listener returns the inbound listener of ap (its content depends on the
// address and port only).
func (cc *compilation) listener(ap netip.AddrPort, ne *nodeEntry) (*Resource, error) {
	c := cc.c
	if e := c.lis[ap]; e != nil {
		c.use(&e.mark, ne)
		return e.res, nil
	}
	// The HttpConnectionManager of a port is shared by its listeners.
	h := c.hcm[ap.Port()]
	if h == nil {
		a, src, err := inboundHCM(ap.Port(), c.opts.ControlPlaneCluster)
		if err != nil {
			return nil, err
		}
		h = &hcmEntry{any: a, src: src, hash: sha256.Sum256(a.GetValue())}
		c.hcm[ap.Port()] = h
	}
	c.use(&h.mark, ne)
	cc.v.packed(h.any, h.src)
	r, err := listenerResource(cc.v, ap, h)
	if err != nil {
		return nil, err
	}
	e := &resEntry{res: r}
	c.lis[ap] = e
	c.use(&e.mark, ne)
	cc.built[Listeners]++
	return r, nil
}

func (cc *compilation) localCluster(port uint16, protocol string, ne *nodeEntry) (*Resource, error) {
	c := cc.c
	key := clusterKey{port, protocol}
	if e := c.local[key]; e != nil {
		c.use(&e.mark, ne)
		return e.res, nil
	}
	cl, err := localCluster(port, protocol, c.opts.AppAddress)
	if err != nil {
		return nil, err
	}
	r, err := newResource(cc.v, cl.GetName(), cl)
	if err != nil {
		return nil, err
	}
	e := &resEntry{res: r}
	c.local[key] = e
	c.use(&e.mark, ne)
	cc.built[Clusters]++
	return r, nil
}

func (c *Compiler) sharedResources() (*Resource, *Resource, error) {
	if c.shared[0] == nil {
		vl, err := virtualInbound(c.opts.InboundPort)
		if err != nil {
			return nil, nil, err
		}
		v := &validator{}
		lr, err := newResource(v, vl.GetName(), vl)
		if err != nil {
			return nil, nil, err
		}
		br, err := newResource(v, Blackhole, blackholeCluster())
		if err != nil {
			return nil, nil, err
		}
		c.shared = [2]*Resource{lr, br}
	}
	return c.shared[0], c.shared[1], nil
}

// service returns the client-side resources of one service.
func (cc *compilation) service(s *service, ne *nodeEntry) (*serviceEntry, error) {
	c := cc.c
	if e := c.services[s.name]; e != nil && e.fp == s.fp {
		c.use(&e.mark, ne)
		return e, nil
	}
	lis, rc, cl, cla, err := outbound(s.name, s.endpoints)
	if err != nil {
		return nil, err
	}
	e := &serviceEntry{fp: s.fp}
	for t, m := range [NumTypes]types.Resource{lis, rc, cl, cla} {
		r, err := newResource(cc.v, cachev3.GetResourceName(m), m)
		if err != nil {
			return nil, err
		}
		e.res[t] = r
		cc.built[t]++
	}
	c.services[s.name] = e
	c.use(&e.mark, ne)
	return e, nil
}

// sameResources reports whether a and b hold the same resource pointers.
func sameResources(a, b *NodeConfig) bool {
	if a.Kind != b.Kind {
		return false
	}
	for t := range a.Resources {
		if !slices.Equal(a.Resources[t], b.Resources[t]) {
			return false
		}
	}
	return true
}

// versions hashes, per type, the names and hashes of nc's resources.
func versions(nc *NodeConfig) [NumTypes]string {
	var out [NumTypes]string
	for t, rs := range nc.Resources {
		h := sha256.New()
		h.Write([]byte(TypeURLs[t]))
		for _, r := range rs {
			h.Write([]byte{0})
			h.Write([]byte(r.Name))
			h.Write([]byte{0})
			h.Write([]byte(r.Hash))
		}
		out[t] = hex.EncodeToString(h.Sum(nil)[:8])
	}
	return out
}

// buildAddrSets indexes the workloads' addresses by segment and namespace.
func buildAddrSets(in Input) *addrSets {
	s := &addrSets{segment: map[string]*addrSet{}, namespace: map[string]*addrSet{}}
	add := func(m map[string]*addrSet, key string, ips []netip.Addr) {
		set := m[key]
		if set == nil {
			set = &addrSet{}
			m[key] = set
		}
		for _, ip := range ips {
			set.ips = append(set.ips, ip.Unmap())
		}
	}
	for _, w := range in.Workloads {
		id := in.Output.Identities[w.Key()]
		if id == nil {
			continue
		}
		add(s.segment, id.GetSegment(), w.IPs)
		add(s.namespace, w.Namespace, w.IPs)
	}
	for _, m := range []map[string]*addrSet{s.segment, s.namespace} {
		for _, set := range m {
			slices.SortFunc(set.ips, netip.Addr.Compare)
			set.ips = slices.Compact(set.ips)
			h := fnv.New64a()
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(len(set.ips)))
			h.Write(b[:])
			for _, ip := range set.ips {
				a := ip.As16()
				h.Write(a[:])
			}
			set.hash = h.Sum64()
		}
	}
	return s
}

// diff returns the refs whose set differs from prev (the fingerprints of
// the previous compilation), and the fingerprints of s.
func (s *addrSets) diff(prev map[peerRef]uint64) (map[peerRef]bool, map[peerRef]uint64) {
	cur := make(map[peerRef]uint64, len(s.segment)+len(s.namespace))
	for k, set := range s.segment {
		cur[peerRef("s"+k)] = set.hash
	}
	for k, set := range s.namespace {
		cur[peerRef("n"+k)] = set.hash
	}
	changed := map[peerRef]bool{}
	for r, h := range cur {
		if old, ok := prev[r]; !ok || old != h {
			changed[r] = true
		}
	}
	for r := range prev {
		if _, ok := cur[r]; !ok {
			changed[r] = true
		}
	}
	return changed, cur
}

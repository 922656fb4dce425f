package envoy

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// maxDepth bounds how deep Validate descends (Any in Any in …).
const maxDepth = 64

// Validate checks m with its protoc-gen-validate rules (ValidateAll) and,
// since those stop at google.protobuf.Any, unpacks every Any inside m
// (fields, lists and map values, at any depth) and validates the packed
// message the same way. A packed type that is not linked into the binary
// is an error: nothing can vouch for it. Errors name the field path.
func Validate(m proto.Message) error {
	return (&validator{}).validate(m)
}

// validator is Validate for what a compilation builds, in bulk: it knows
// the messages it packed itself (walked as they are instead of unpacked
// again: their encoding is a deterministic marshalling of them) and skips
// sub-messages it already walked (permissions and principals are shared
// between policies, a connection manager between listeners). One
// validator is used by one goroutine.
type validator struct {
	sources map[*anypb.Any]proto.Message // what an Any was packed from
	done    map[proto.Message]bool       // sub-messages and Anys already validated

	path []step // where walk is
	errs []error
}

// packed records that a was packed from m.
func (v *validator) packed(a *anypb.Any, m proto.Message) {
	if v.sources == nil {
		v.sources = map[*anypb.Any]proto.Message{}
	}
	v.sources[a] = m
}

func (v *validator) validate(m proto.Message) error {
	if m == nil {
		return errors.New("nil message")
	}
	v.errs = nil
	v.path = append(v.path[:0], step{name: string(m.ProtoReflect().Descriptor().Name())})
	v.walk(m.ProtoReflect(), true, 0)
	err := errors.Join(v.errs...)
	v.errs = nil
	return err
}

type allValidator interface{ ValidateAll() error }

// step is one step of the path to the message being walked; the path is a
// stack in the validator, rendered only for an error.
type step struct {
	name  string // field name, or the type name of an unpacked Any
	kind  byte   // 0 field, 'i' list index, 'k' map key, 'a' unpacked Any
	index int
	key   protoreflect.MapKey
}

func (v *validator) pathString() string {
	var b strings.Builder
	for i, e := range v.path {
		switch e.kind {
		case 'i':
			fmt.Fprintf(&b, "[%d]", e.index)
		case 'k':
			fmt.Fprintf(&b, "[%q]", e.key.String())
		case 'a':
			b.WriteString("(" + e.name + ")")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.name)
		}
	}
	return b.String()
}

func (v *validator) fail(format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: "+format, append([]any{v.pathString()}, a...)...))
}

// walk validates m when validate is set (a root, or a message unpacked from
// an Any), then descends into the fields that can lead to an Any.
func (v *validator) walk(m protoreflect.Message, validate bool, depth int) {
	if depth > maxDepth {
		v.fail("nested deeper than %d", maxDepth)
		return
	}
	if v.done != nil && depth > 0 {
		key := m.Interface()
		if v.done[key] {
			return
		}
		v.done[key] = true
	}
	if validate {
		if av, ok := m.Interface().(allValidator); ok {
			if err := av.ValidateAll(); err != nil {
				v.fail("%w", err)
			}
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, known := v.sources[a]
		if !known {
			var err error
			if inner, err = a.UnmarshalNew(); err != nil {
				v.fail("unpack %s: %w", a.GetTypeUrl(), err)
				return
			}
		}
		v.path = append(v.path, step{kind: 'a', name: string(inner.ProtoReflect().Descriptor().Name())})
		v.walk(inner.ProtoReflect(), true, depth+1)
		v.path = v.path[:len(v.path)-1]
		return
	}
	for _, fd := range anyFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		val := m.Get(fd)
		v.path = append(v.path, step{name: string(fd.Name())})
		switch {
		case fd.IsList():
			l := val.List()
			for i := range l.Len() {
				v.path = append(v.path, step{kind: 'i', index: i})
				v.walk(l.Get(i).Message(), false, depth+1)
				v.path = v.path[:len(v.path)-1]
			}
		case fd.IsMap():
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				v.path = append(v.path, step{kind: 'k', key: k})
				v.walk(mv.Message(), false, depth+1)
				v.path = v.path[:len(v.path)-1]
				return true
			})
		default:
			v.walk(val.Message(), false, depth+1)
		}
		v.path = v.path[:len(v.path)-1]
	}
}

// anyFieldsCache holds, per message type, the fields through which an Any
// can be reached (message fields, lists and map values whose type is Any
// or can hold one): walk visits only those.
var anyFieldsCache sync.Map // protoreflect.MessageDescriptor → []protoreflect.FieldDescriptor

// holdsAnyCache holds, per message type, whether it is or can contain an
// Any at any depth.
var holdsAnyCache sync.Map // protoreflect.MessageDescriptor → bool

const anyName protoreflect.FullName = "google.protobuf.Any"

func anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if v, ok := anyFieldsCache.Load(md); ok {
		return v.([]protoreflect.FieldDescriptor)
	}
	var out []protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if t := fieldMessage(fd); t != nil && holdsAny(t) {
			out = append(out, fd)
		}
	}
	anyFieldsCache.Store(md, out)
	return out
}

// fieldMessage is the message type of a field, of a list's elements or of
// a map's values; nil for scalars.
func fieldMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return fd.MapValue().Message()
	}
	return fd.Message()
}

// holdsAny reports whether a message of type md is, or can contain at any
// depth, an Any: a search of the type graph from md.
func holdsAny(md protoreflect.MessageDescriptor) bool {
	if v, ok := holdsAnyCache.Load(md); ok {
		return v.(bool)
	}
	seen := map[protoreflect.FullName]bool{}
	var search func(protoreflect.MessageDescriptor) bool
	search = func(d protoreflect.MessageDescriptor) bool {
		if d.FullName() == anyName {
			return true
		}
		if seen[d.FullName()] {
			return false
		}
		seen[d.FullName()] = true
		fields := d.Fields()
		for i := range fields.Len() {
			if t := fieldMessage(fields.Get(i)); t != nil && search(t) {
				return true
			}
		}
		return false
	}
	found := search(md)
	holdsAnyCache.Store(md, found)
	return found
}

// References lists, by type index (Listeners…Endpoints), the names of the
// resources m refers to: the route configurations of its connection
// managers (api_listener included, which Snapshot.Consistent misses) and
// the clusters of its TCP proxies (listeners); the clusters of its routes
// (route configurations); the endpoints of an EDS cluster. Bootstrap
// clusters (the control plane's) are not listed.
func References(m proto.Message) ([NumTypes][]string, error) {
	var refs [NumTypes][]string
	switch r := m.(type) {
	case *listenerv3.Listener:
		chains := r.GetFilterChains()
		if d := r.GetDefaultFilterChain(); d != nil {
			chains = append(chains[:len(chains):len(chains)], d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				if err := filterRefs(f.GetTypedConfig(), &refs); err != nil {
					return refs, fmt.Errorf("listener %s: filter %s: %w", r.GetName(), f.GetName(), err)
				}
			}
		}
		if al := r.GetApiListener().GetApiListener(); al != nil {
			if err := filterRefs(al, &refs); err != nil {
				return refs, fmt.Errorf("listener %s: api_listener: %w", r.GetName(), err)
			}
		}
	case *routev3.RouteConfiguration:
		for _, vh := range r.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				ra := rt.GetRoute()
				if c := ra.GetCluster(); c != "" {
					refs[Clusters] = append(refs[Clusters], c)
				}
				for _, wc := range ra.GetWeightedClusters().GetClusters() {
					refs[Clusters] = append(refs[Clusters], wc.GetName())
				}
			}
		}
	case *clusterv3.Cluster:
		if r.GetType() == clusterv3.Cluster_EDS {
			name := r.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = r.GetName()
			}
			refs[Endpoints] = append(refs[Endpoints], name)
		}
	}
	return refs, nil
}

func filterRefs(a *anypb.Any, refs *[NumTypes][]string) error {
	if a == nil {
		return nil
	}
	switch {
	case a.MessageIs((*hcmv3.HttpConnectionManager)(nil)):
		var hcm hcmv3.HttpConnectionManager
		if err := a.UnmarshalTo(&hcm); err != nil {
			return err
		}
		if name := hcm.GetRds().GetRouteConfigName(); name != "" {
			refs[Routes] = append(refs[Routes], name)
		}
	case a.MessageIs((*tcpproxyv3.TcpProxy)(nil)):
		var tp tcpproxyv3.TcpProxy
		if err := a.UnmarshalTo(&tp); err != nil {
			return err
		}
		if c := tp.GetCluster(); c != "" {
			refs[Clusters] = append(refs[Clusters], c)
		}
	}
	return nil
}

// CheckReferences reports every resource of nc that refers to one nc does
// not hold: a client would wait for it forever (or reject the config).
func CheckReferences(nc *NodeConfig) error {
	var missing []string
	for t, rs := range nc.Resources {
		for _, r := range rs {
			refs, err := r.references()
			if err != nil {
				return err
			}
			for rt, names := range refs {
				for _, name := range names {
					if _, ok := nc.Lookup(rt, name); !ok {
						missing = append(missing, fmt.Sprintf("%s %s refers to %s %q", typeName(t), r.Name, typeName(rt), name))
					}
				}
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("node %s: dangling references: %s", nc.Node, strings.Join(missing, "; "))
	}
	return nil
}

func typeName(t int) string {
	return [NumTypes]string{"listener", "route configuration", "cluster", "endpoints"}[t]
}

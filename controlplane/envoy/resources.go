package envoy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Names of filters, clusters and resources.
const (
	// ControlPlaneCluster is the bootstrap cluster of an Envoy sidecar that
	// reaches the control plane, for ADS and the access log service.
	ControlPlaneCluster = "bulkhead-controlplane"
	// InboundPrefix starts the name of an inbound listener
	// ("bulkhead/inbound/198.18.0.5:8080") and of an inbound route
	// configuration ("bulkhead/inbound/8080").
	InboundPrefix = "bulkhead/inbound/"
	// GRPCListenerTemplate is the server_listener_resource_name_template of
	// a proxyless gRPC node: gRPC-Go puts its listening address for "%s".
	GRPCListenerTemplate = InboundPrefix + "%s"
	// VirtualInbound is the Envoy listener on InboundPort that receives
	// redirected connections and hands them to the per-port listeners.
	VirtualInbound = "bulkhead/inbound"
	// LocalPrefix starts the name of the cluster of the application's port
	// ("bulkhead/local/8080").
	LocalPrefix = "bulkhead/local/"
	// OutboundPrefix starts the names of the route configuration, cluster
	// and endpoints of a service a proxyless gRPC client calls.
	OutboundPrefix = "bulkhead/outbound/"
	// Blackhole is a cluster without endpoints: connections to ports no
	// listener serves end there.
	Blackhole = "bulkhead/blackhole"
	// AccessLogName is the log_name of the access logs Envoy streams to the
	// control plane.
	AccessLogName = "bulkhead"

	FilterRBAC   = "envoy.filters.http.rbac"
	FilterRouter = "envoy.filters.http.router"
	FilterHCM    = "envoy.filters.network.http_connection_manager"
	FilterTCP    = "envoy.filters.network.tcp_proxy"
	accessLogALS = "envoy.access_loggers.http_grpc"

	DefaultInboundPort = 15016
	DefaultAppAddress  = "127.0.0.1"
)

// InboundListenerName is the name of the inbound listener on ap.
func InboundListenerName(ap netip.AddrPort) string { return InboundPrefix + ap.String() }

// InboundRouteName is the name of the route configuration of an inbound
// port.
func InboundRouteName(port uint16) string { return InboundPrefix + strconv.Itoa(int(port)) }

// LocalClusterName is the name of the cluster of the application's port.
func LocalClusterName(port uint16) string { return LocalPrefix + strconv.Itoa(int(port)) }

// ServiceName is the xds:/// target of a segment's port: the name of its
// api_listener, "<segment>.<namespace>:<port>".
func ServiceName(namespace, segment string, port uint16) string {
	return segment + "." + namespace + ":" + strconv.Itoa(int(port))
}

// Resource is one named xDS resource and a hash of its content (16 hex
// digits of SHA-256: of its deterministic encoding, or for an inbound route
// configuration of what it is made of), used as its xDS version. Resources
// are shared between nodes and compilations: never modify Message.
type Resource struct {
	Name    string
	Message types.Resource
	Hash    string

	validated bool
	refs      *[NumTypes][]string // what Message refers to, when known
}

// references returns References(r.Message), computed once for the
// Compiler's resources.
func (r *Resource) references() ([NumTypes][]string, error) {
	if r.refs != nil {
		return *r.refs, nil
	}
	return References(r.Message)
}

// finish records that r was validated and what it refers to.
func (r *Resource) finish() (*Resource, error) {
	refs, err := References(r.Message)
	if err != nil {
		return nil, err
	}
	r.validated, r.refs = true, &refs
	return r, nil
}

// Validated reports whether the resource passed Validate when the Compiler
// built it (always true for the Compiler's resources; false for others).
func (r *Resource) Validated() bool { return r.validated }

// newResource validates m with v and hashes it.
func newResource(v *validator, name string, m types.Resource) (*Resource, error) {
	if err := v.validate(m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", name, err)
	}
	sum := sha256.Sum256(b)
	return (&Resource{Name: name, Message: m, Hash: hex.EncodeToString(sum[:8])}).finish()
}

// toAny packs m deterministically, so that equal content packs to equal
// bytes (map order included) and hashes stay stable.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %T: %w", m, err)
	}
	return a, nil
}

// emptyAny packs a message whose fields are all unset: its encoding is
// empty, so packing cannot fail.
func emptyAny(m proto.Message) *anypb.Any {
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func socketAddress(ip netip.Addr, port uint16) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip.String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// inboundHCM is the HttpConnectionManager of an inbound port: the RBAC
// filter (configured per route), the router, and an access log to the
// control plane. Paths are normalised as bulkhead-proxy does before RBAC
// sees them: dot segments, repeated slashes; encoded slashes kept.
func inboundHCM(port uint16, cpCluster string) (*anypb.Any, *hcmv3.HttpConnectionManager, error) {
	als, err := toAny(&alsv3.HttpGrpcAccessLogConfig{CommonConfig: &alsv3.CommonGrpcAccessLogConfig{
		LogName: AccessLogName,
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cpCluster},
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		BufferFlushInterval: durationpb.New(time.Second),
	}})
	if err != nil {
		return nil, nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		StatPrefix: "inbound_" + strconv.Itoa(int(port)),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: InboundRouteName(port),
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: FilterRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: emptyAny(&rbacfilterv3.RBAC{})}},
			{Name: FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: emptyAny(&routerv3.Router{})}},
		},
		AccessLog: []*accesslogv3.AccessLog{{
			Name:       accessLogALS,
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: als},
		}},
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_KEEP_UNCHANGED,
	}
	a, err := toAny(hcm)
	return a, hcm, err
}

// inboundListener is the listener of one address and port. It does not
// bind: an Envoy sidecar receives the connections on its virtual inbound
// listener; a gRPC-Go server ignores the field and checks that the address
// is the one it listens on.
func inboundListener(ap netip.AddrPort, hcm *anypb.Any) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             InboundListenerName(ap),
		Address:          socketAddress(ap.Addr(), ap.Port()),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		BindToPort:       wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{{
			Name:    "inbound",
			Filters: []*listenerv3.Filter{{Name: FilterHCM, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}},
	}
}

// listenerResource builds, validates and hashes the inbound listener of ap
// with the connection manager of h. Like a route configuration's, its hash
// covers what it is made of (the address and the connection manager), and
// what it refers to is known: the port's route configuration.
func listenerResource(v *validator, ap netip.AddrPort, h *hcmEntry) (*Resource, error) {
	l := inboundListener(ap, h.any)
	if err := v.validate(l); err != nil {
		return nil, fmt.Errorf("%s: %w", l.GetName(), err)
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "listener\x00%s\x00", ap)
	sum.Write(h.hash[:])
	var refs [NumTypes][]string
	refs[Routes] = []string{InboundRouteName(ap.Port())}
	return &Resource{Name: l.GetName(), Message: l, Hash: hex.EncodeToString(sum.Sum(nil)[:8]), validated: true, refs: &refs}, nil
}

// virtualInbound receives the connections the capture step redirects to
// port and hands each to the listener of its original destination;
// connections to a destination no listener has go to the blackhole.
func virtualInbound(port uint16) (*listenerv3.Listener, error) {
	tcp, err := toAny(&tcpproxyv3.TcpProxy{
		StatPrefix:       "blackhole",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: Blackhole},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             VirtualInbound,
		Address:          socketAddress(netip.IPv4Unspecified(), port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		UseOriginalDst:   wrapperspb.Bool(true),
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    "blackhole",
			Filters: []*listenerv3.Filter{{Name: FilterTCP, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp}}},
		},
	}, nil
}

func blackholeCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 Blackhole,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: Blackhole},
	}
}

// inboundRoute is the route configuration of an inbound port: every
// request goes to the application (Envoy) or is served in process (gRPC),
// under the RBAC of the port.
func inboundRoute(port uint16, grpcNode bool, perFilter *anypb.Any) *routev3.RouteConfiguration {
	r := &routev3.Route{
		Name:  "inbound",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
	}
	if grpcNode {
		r.Action = &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}
	} else {
		r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: LocalClusterName(port)},
			// Streams (gRPC streaming, long polls) are the application's
			// business: no route timeout.
			Timeout: durationpb.New(0),
		}}
	}
	return &routev3.RouteConfiguration{
		Name: InboundRouteName(port),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:                 "inbound",
			Domains:              []string{"*"},
			Routes:               []*routev3.Route{r},
			TypedPerFilterConfig: map[string]*anypb.Any{FilterRBAC: perFilter},
		}},
	}
}

// buildRoute builds the inbound route configuration of port for a node of
// kind from its segment's ingress rules under mode. Its hash covers what
// the configuration is made of — the port, the kind and the packed RBAC —
// rather than re-encoding the whole message.
func buildRoute(v *validator, rules []*bulkheadv1.Rule, mode bulkheadv1.Mode, port uint16, kind Kind, sets *addrSets) (*Resource, error) {
	per, enc, err := rbacPerRoute(rules, uint32(port), mode, sets)
	if err != nil {
		return nil, err
	}
	rbac := &anypb.Any{TypeUrl: typeURLRBACPerRoute, Value: enc}
	rc := inboundRoute(port, kind == KindGRPC, rbac)
	v.packed(rbac, per)
	err = v.validate(rc)
	delete(v.sources, rbac)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rc.GetName(), err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "route\x00%d\x00%d\x00%s\x00", port, kind, rbac.GetTypeUrl())
	h.Write(rbac.GetValue())
	return (&Resource{Name: rc.GetName(), Message: rc, Hash: hex.EncodeToString(h.Sum(nil)[:8])}).finish()
}

// localCluster reaches the application's port on addr: HTTP/2 on an
// "http2" port, else the protocol the client spoke (an "http" port may
// carry h2c, gRPC included).
func localCluster(port uint16, protocol string, addr netip.Addr) (*clusterv3.Cluster, error) {
	opts := &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		},
	}}
	if protocol == "http2" {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	}
	po, err := toAny(opts)
	if err != nil {
		return nil, err
	}
	name := LocalClusterName(port)
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(netip.AddrPortFrom(addr, port))}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": po},
	}, nil
}

func lbEndpoint(ap netip.AddrPort) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: socketAddress(ap.Addr(), ap.Port()),
	}}}
}

// outbound builds the client side of one service for a proxyless gRPC
// client: the api_listener named after the service, its route
// configuration, an EDS cluster and its endpoints.
func outbound(service string, endpoints []netip.AddrPort) (lis *listenerv3.Listener, rc *routev3.RouteConfiguration, cl *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, err error) {
	name := OutboundPrefix + service
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		StatPrefix: "outbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: emptyAny(&routerv3.Router{})}},
		},
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	lis = &listenerv3.Listener{
		Name:        service,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}
	rc = &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "outbound",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "outbound",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
			}},
		}},
	}
	cl = &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	lbs := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, ep := range endpoints {
		lbs = append(lbs, lbEndpoint(ep))
	}
	cla = &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(lbs) > 0 {
		// gRPC ignores localities without a weight.
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		}}
	}
	return lis, rc, cl, cla, nil
}

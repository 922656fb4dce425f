package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Node clusters (xDS node.cluster) of the generated bootstraps.
const (
	EnvoyNodeCluster  = "bulkhead-envoy"
	GRPCNodeCluster   = "bulkhead-grpc"
	DefaultAdminPort  = 15000
	maxBootstrapNode  = 253
	controlPlaneAlive = 10 * time.Second
)

// BootstrapOptions describe a sidecar's bootstrap.
type BootstrapOptions struct {
	// Node is the node id: the workload's "name.namespace". Required.
	Node string
	// ControlPlane is the control plane's gRPC address (ADS and access
	// logs), "host:port": an IP or a DNS name. Required.
	ControlPlane string
	// AdminPort is Envoy's admin port, on 127.0.0.1. Zero: 15000.
	AdminPort uint16
	// StateOfTheWorld makes Envoy use SotW ADS instead of delta ADS.
	StateOfTheWorld bool
	// TLS, when set, speaks mutual TLS to the control plane with the
	// node's certificate folder (bootstrap_tls.go); nil: plaintext.
	TLS *BootstrapTLS
}

func (o BootstrapOptions) validate() (host string, port uint16, err error) {
	if o.Node == "" || len(o.Node) > maxBootstrapNode {
		return "", 0, fmt.Errorf("bootstrap: node id must be 1 to %d bytes", maxBootstrapNode)
	}
	h, p, err := net.SplitHostPort(o.ControlPlane)
	if err != nil {
		return "", 0, fmt.Errorf("bootstrap: control plane address %q: %w", o.ControlPlane, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("bootstrap: control plane address %q: bad port", o.ControlPlane)
	}
	if _, err := netip.ParseAddr(h); err != nil {
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			return "", 0, fmt.Errorf("bootstrap: control plane host %q is neither an IP nor a DNS name", h)
		}
	}
	if o.TLS != nil {
		if err := o.TLS.validate(); err != nil {
			return "", 0, err
		}
	}
	return h, uint16(n), nil
}

// Bootstrap is an Envoy sidecar's bootstrap: node, ADS (delta unless
// StateOfTheWorld) to the control plane for listeners and clusters (routes
// and endpoints follow), the control plane's cluster (HTTP/2, also used by
// the access log service), and the admin interface on 127.0.0.1.
func Bootstrap(o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	host, port, err := o.validate()
	if err != nil {
		return nil, err
	}
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	h2, err := toAny(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(controlPlaneAlive)},
			}},
		},
	}})
	if err != nil {
		return nil, err
	}
	cpType := clusterv3.Cluster_STATIC
	if _, err := netip.ParseAddr(host); err != nil {
		cpType = clusterv3.Cluster_STRICT_DNS
	}
	apiType := corev3.ApiConfigSource_DELTA_GRPC
	if o.StateOfTheWorld {
		apiType = corev3.ApiConfigSource_GRPC
	}
	var transport *corev3.TransportSocket
	if o.TLS != nil {
		if transport, err = o.TLS.envoyTransport(host); err != nil {
			return nil, err
		}
	}
	return &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.Node, Cluster: EnvoyNodeCluster},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ControlPlaneCluster},
				}}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name:                 ControlPlaneCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: cpType},
			ConnectTimeout:       durationpb.New(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: ControlPlaneCluster,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
						}}},
					}},
				}}}},
			},
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
			TransportSocket:               transport,
		}}},
		Admin: &bootstrapv3.Admin{Address: socketAddress(netip.MustParseAddr("127.0.0.1"), o.AdminPort)},
	}, nil
}

// GRPCBootstrap is the bootstrap file of a proxyless gRPC node (what
// GRPC_XDS_BOOTSTRAP points to): the control plane as its xDS server
// (plaintext, or mutual TLS with TLS set), the node, and the listener name template of Bulkhead's
// inbound listeners, as indented JSON.
func GRPCBootstrap(o BootstrapOptions) ([]byte, error) {
	if _, _, err := o.validate(); err != nil {
		return nil, err
	}
	type server struct {
		URI      string   `json:"server_uri"`
		Creds    []any    `json:"channel_creds"`
		Features []string `json:"server_features"`
	}
	type node struct {
		ID       string            `json:"id"`
		Cluster  string            `json:"cluster"`
		Locality map[string]string `json:"locality"`
	}
	doc := struct {
		Servers  []server `json:"xds_servers"`
		Node     node     `json:"node"`
		Template string   `json:"server_listener_resource_name_template"`
	}{
		Servers:  []server{{URI: o.ControlPlane, Creds: []any{map[string]string{"type": "insecure"}}, Features: []string{"xds_v3"}}},
		Node:     node{ID: o.Node, Cluster: GRPCNodeCluster, Locality: map[string]string{}},
		Template: GRPCListenerTemplate,
	}
	if o.TLS != nil {
		doc.Servers[0].Creds = []any{o.TLS.grpcCreds()}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	return append(b, '\n'), nil
}

// MarshalJSON renders m as indented JSON with proto field names, stably
// (protojson's own output varies its whitespace on purpose).
func MarshalJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("indent %T: %w", m, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// StaticBootstrap is Bootstrap(o) with nc's configuration added as static
// resources, as `envoy --mode validate` can check it without a control
// plane: route configurations inlined into their connection managers, EDS
// clusters turned STATIC with their endpoints. Only Envoy nodes have a
// static form (api_listeners are gRPC's).
func StaticBootstrap(nc *NodeConfig, o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if nc.Kind != KindEnvoy {
		return nil, errors.New("static bootstrap: only Envoy nodes have one")
	}
	b, err := Bootstrap(o)
	if err != nil {
		return nil, err
	}
	for _, r := range nc.Resources[Listeners] {
		l, ok := proto.Clone(r.Message).(*listenerv3.Listener)
		if !ok {
			return nil, fmt.Errorf("static bootstrap: %s is not a listener", r.Name)
		}
		for _, fc := range append(l.GetFilterChains(), l.GetDefaultFilterChain()) {
			for _, f := range fc.GetFilters() {
				if err := inlineRoute(f, nc); err != nil {
					return nil, fmt.Errorf("static bootstrap: listener %s: %w", l.GetName(), err)
				}
			}
		}
		b.StaticResources.Listeners = append(b.StaticResources.Listeners, l)
	}
	for _, r := range nc.Resources[Clusters] {
		cl, ok := proto.Clone(r.Message).(*clusterv3.Cluster)
		if !ok {
			return nil, fmt.Errorf("static bootstrap: %s is not a cluster", r.Name)
		}
		if cl.GetType() == clusterv3.Cluster_EDS {
			name := cl.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = cl.GetName()
			}
			ep, ok := nc.Lookup(Endpoints, name)
			if !ok {
				return nil, fmt.Errorf("static bootstrap: cluster %s: no endpoints %s", cl.GetName(), name)
			}
			cla, ok := proto.Clone(ep.Message).(*endpointv3.ClusterLoadAssignment)
			if !ok {
				return nil, fmt.Errorf("static bootstrap: %s is not a load assignment", ep.Name)
			}
			cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			cl.EdsClusterConfig = nil
			cl.LoadAssignment = cla
		}
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, cl)
	}
	return b, nil
}

func inlineRoute(f *listenerv3.Filter, nc *NodeConfig) error {
	a := f.GetTypedConfig()
	if a == nil || !a.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
		return nil
	}
	var hcm hcmv3.HttpConnectionManager
	if err := a.UnmarshalTo(&hcm); err != nil {
		return err
	}
	name := hcm.GetRds().GetRouteConfigName()
	if name == "" {
		return nil
	}
	rt, ok := nc.Lookup(Routes, name)
	if !ok {
		return fmt.Errorf("no route configuration %s", name)
	}
	rc, ok := proto.Clone(rt.Message).(*routev3.RouteConfiguration)
	if !ok {
		return fmt.Errorf("%s is not a route configuration", name)
	}
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	packed, err := toAny(&hcm)
	if err != nil {
		return err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed}
	return nil
}

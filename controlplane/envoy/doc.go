// Package envoy compiles segments into Envoy's xDS resources, for two kinds of
// consumer of one shape: Envoy sidecars and proxyless gRPC applications
// (gRPC-Go's xds package: xds.NewGRPCServer and xds:/// targets). Bulkhead's
// own proxy keeps its own resource types (controlplane/compile); this package
// serves the HTTP and gRPC ports of workloads whose workloads-file entry says
// `sidecar: envoy` or `sidecar: grpc`.
//
// Per node (xDS node id = workload "name.namespace") a Compiler builds:
//
//   - one inbound Listener per workload IP and declared http/http2 port, named
//     "bulkhead/inbound/<ip>:<port>" (the name gRPC-Go asks for through the
//     bootstrap's server_listener_resource_name_template), whose one filter
//     chain holds an HttpConnectionManager with the filters
//     envoy.filters.http.rbac (empty: a no-op) and envoy.filters.http.router,
//     an access log to the control plane's Access Log Service, and RDS for
//     the route configuration "bulkhead/inbound/<port>";
//   - that RouteConfiguration: one virtual host "*" and one route "/" whose
//     typed_per_filter_config carries the segment's RBAC as an RBACPerRoute:
//     protect puts the port's rules in `rules` (ALLOW, enforced); monitor puts
//     them in `shadow_rules`, so Envoy reports what it would deny; discover
//     enforces nothing either, but keeps the shadow rules so that access logs
//     name the rule that allowed a request (hits), as bulkhead-proxy does.
//     The shadow rules' stat prefix says the mode ("bulkhead_monitor_",
//     "bulkhead_discover_"), and Envoy prefixes the RBAC dynamic metadata with
//     it, so an access log entry tells which mode judged it. RBAC policies are
//     named after the compiled rules ("ns/policy/rule"); principals are the
//     source segments' and namespaces' workload IPs (direct_remote_ip) and
//     CIDRs; permissions come from the rules' L7 matchers (the same L7Rules
//     bulkhead-proxy enforces): methods as ":method", paths as url_path
//     (exact, prefix, suffix; templates as safe_regex), hosts as ":authority"
//     (any port) and gRPC methods as the path "/pkg.Svc/Method";
//   - Envoy sidecars also get the local cluster "bulkhead/local/<port>" (the
//     application on AppAddress), the virtual inbound listener
//     "bulkhead/inbound" on InboundPort that hands redirected connections to
//     the per-port listeners (use_original_dst), and "bulkhead/blackhole";
//   - proxyless gRPC nodes get, instead, routes with NonForwardingAction (the
//     only action a gRPC server accepts), inbound listeners for 0.0.0.0 and
//     [::] too, and one api_listener per service their segment may call
//     ("<segment>.<namespace>:<port>", the xds:/// target) with its
//     RouteConfiguration, EDS Cluster and ClusterLoadAssignment.
//
// RBAC lives in the route configuration rather than in the listener so that
// a rule or mode change is an RDS update: Envoy applies it to the next
// request, gRPC-Go to the next RPC on existing connections, and neither
// drains a listener.
//
// Compiling is incremental: built resources are cached by what they depend
// on (a route configuration by the segment's ProxyPolicy revision, the port,
// the consumer kind and the address sets its rules name; a listener by its
// address and protocol), and a node whose resources are all unchanged keeps
// its NodeConfig pointer, so that the xDS server republishes only the nodes
// a change touches. Pod churn in one segment rebuilds only the route
// configurations whose rules name it. Route configurations are built on
// every CPU, and everything built is validated as it is built (Validate,
// with each shared sub-message walked once): Resource.Validated.
//
// Validate checks a resource with protoc-gen-validate, descending into
// messages packed in Any (which ValidateAll does not); References lists what
// a resource names, for the consistency check before publishing. Bootstrap
// and GRPCBootstrap generate the consumers' bootstrap files.
package envoy

// Package xds serves the data plane's configuration over the aggregated
// discovery service (ADS, state-of-the-world and delta) with go-control-plane.
//
// Bulkhead's own resource types live in linear caches behind a MuxCache that
// routes by type URL:
//
//   - type.googleapis.com/bulkhead.v1.ProxyPolicy, one per proxy, named by its
//     node id ("workload.namespace") and fetched by name;
//   - type.googleapis.com/bulkhead.v1.Identity, one per workload, named
//     "namespace/workload" and fetched as a wildcard set.
//
// Updates push only what changed: a ProxyPolicy that is proto.Equal to the
// cached one is not touched. Delta clients receive exactly the identities that
// changed and the names of those removed. State-of-the-world clients cannot be
// told about removals, so every Identity response on a SotW stream carries the
// whole set: a SotW client replaces its identities with each response. (The
// one thing SotW cannot say is "no identities at all": removing the last one
// sends nothing on SotW streams.)
//
// Callbacks record, per node, whether it is connected and which versions of
// each type it acknowledged or rejected (NACK, with the error detail); Nodes
// reports them.
//
// Envoy's types — Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment, compiled by controlplane/envoy for Envoy sidecars
// and proxyless gRPC applications — are served from a snapshot cache (one
// snapshot per node, ads=false) under their own type URLs in the same mux:
// see SetEnvoy (envoy.go) for how configurations are checked before they
// are published and how a NACKed one is kept from being re-sent.
package xds

package xds

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
)

// Envoy's resource types, served from a snapshot cache (one snapshot per
// node) behind the same mux as Bulkhead's own types.
const (
	TypeListener    = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute       = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	TypeCluster     = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeEndpoint    = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	removedVersion  = "removed"
	maxReportedErrs = 20
)

func isEnvoyType(typeURL string) bool {
	switch typeURL {
	case TypeListener, TypeRoute, TypeCluster, TypeEndpoint:
		return true
	}
	return false
}

// envoyCache is the snapshot cache side of the Server.
//
// The snapshot cache runs with ads=false: with ads=true it answers only
// requests that name every resource of the snapshot's type, which gRPC
// clients (asking for their own listener by name) never do. It gets no
// Snapshot.Consistent() check either, which misses routes referenced from
// api_listeners: SetEnvoy checks references itself (envoy.CheckReferences).
type envoyCache struct {
	log     *slog.Logger
	metrics *metrics
	cache   cachev3.SnapshotCache

	mu      sync.Mutex
	served  map[string]*envoy.NodeConfig // the config each node's snapshot holds
	valid   map[*envoy.Resource]bool     // resources of served configs that passed Validate
	orphans map[string]bool              // nodes removed while connected: an empty snapshot
}

func newEnvoyCache(log *slog.Logger, m *metrics) *envoyCache {
	return &envoyCache{
		log:     log,
		metrics: m,
		cache:   cachev3.NewSnapshotCache(false, cachev3.IDHash{}, gcpLogger{log}),
		served:  map[string]*envoy.NodeConfig{},
		valid:   map[*envoy.Resource]bool{},
		orphans: map[string]bool{},
	}
}

// SetEnvoy makes nodes (by node id) the Envoy configurations served:
// Envoy sidecars and proxyless gRPC clients get their node's listeners,
// routes, clusters and endpoints from a snapshot cache (SotW and delta).
// Only configurations whose pointer differs from the one served are
// published (envoy.Compiler keeps the pointer of an unchanged node); nodes
// absent from nodes lose their configuration.
//
// Every configuration is checked before it is published: each resource
// with envoy.Validate (protoc-gen-validate, Any-packed messages included;
// resources the envoy.Compiler built passed it as they were built) and
// every reference between them (envoy.CheckReferences). A node whose
// new configuration fails keeps the one it has; the error names each such
// node and the bulkhead_xds_envoy_rejected_total counter counts them. The
// Server keeps the configurations: callers must not modify them.
func (s *Server) SetEnvoy(nodes map[string]*envoy.NodeConfig) error {
	e := s.envoy
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	published := 0
	for node, nc := range nodes {
		if nc == nil || node == "" || nc.Node != node {
			errs = append(errs, fmt.Errorf("envoy config %q: nil, or for another node", node))
			continue
		}
		if e.served[node] == nc {
			continue
		}
		if err := e.check(nc); err != nil {
			e.metrics.envoyRejected.Inc()
			e.log.Error("envoy config refused before publishing; the node keeps its last good one", "node", node, "error", err)
			errs = append(errs, err)
			continue
		}
		if err := e.cache.SetSnapshot(s.ctx, node, snapshotOf(nc)); err != nil {
			errs = append(errs, fmt.Errorf("envoy config %s: %w", node, err))
			continue
		}
		e.served[node] = nc
		delete(e.orphans, node)
		published++
	}
	removed := 0
	for node := range e.served {
		if _, ok := nodes[node]; ok {
			continue
		}
		delete(e.served, node)
		removed++
		// A connected node is told that it has nothing any more; the
		// snapshot of one that is gone is dropped with its watches.
		if s.status.connected(node) {
			if err := e.cache.SetSnapshot(s.ctx, node, emptySnapshot()); err != nil {
				errs = append(errs, fmt.Errorf("envoy config %s: remove: %w", node, err))
			}
			e.orphans[node] = true
		} else {
			e.cache.ClearSnapshot(node)
		}
	}
	for node := range e.orphans {
		if !s.status.connected(node) {
			e.cache.ClearSnapshot(node)
			delete(e.orphans, node)
		}
	}
	// Remember only the resources still served that this server validated
	// (the Compiler's carry their own mark).
	if len(e.valid) > 0 {
		valid := make(map[*envoy.Resource]bool, len(e.valid))
		for _, nc := range e.served {
			for _, rs := range nc.Resources {
				for _, r := range rs {
					if e.valid[r] {
						valid[r] = true
					}
				}
			}
		}
		e.valid = valid
	}
	e.metrics.resources.WithLabelValues("envoy_nodes").Set(float64(len(e.served)))
	if published+removed > 0 {
		e.metrics.pushes.WithLabelValues("envoy_nodes").Add(float64(published + removed))
		e.log.Debug("envoy configs updated", "published", published, "removed", removed, "total", len(e.served))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if len(errs) > maxReportedErrs {
		errs = append(errs[:maxReportedErrs], fmt.Errorf("and %d more", len(errs)-maxReportedErrs))
	}
	return errors.Join(errs...)
}

// check validates the resources of nc not validated before and the
// references between them.
func (e *envoyCache) check(nc *envoy.NodeConfig) error {
	for t, rs := range nc.Resources {
		for i, r := range rs {
			if r == nil || r.Message == nil || r.Name == "" {
				return fmt.Errorf("envoy config %s: %s %d: empty resource", nc.Node, envoy.TypeURLs[t], i)
			}
			if i > 0 && rs[i-1].Name >= r.Name {
				return fmt.Errorf("envoy config %s: %s: resources not sorted by name or repeated at %q", nc.Node, envoy.TypeURLs[t], r.Name)
			}
			if name := cachev3.GetResourceName(r.Message); name != r.Name {
				return fmt.Errorf("envoy config %s: resource %q is named %q", nc.Node, r.Name, name)
			}
			if cachev3.GetResponseType(envoy.TypeURLs[t]) != cachev3.GetResponseType(typeURLOf(r.Message)) {
				return fmt.Errorf("envoy config %s: %s is not a %s", nc.Node, r.Name, envoy.TypeURLs[t])
			}
			// The Compiler validated what it built (envoy.Resource.Validated);
			// anything else is validated here, once.
			if r.Validated() || e.valid[r] {
				continue
			}
			if err := envoy.Validate(r.Message); err != nil {
				return fmt.Errorf("envoy config %s: %s: %w", nc.Node, r.Name, err)
			}
			e.valid[r] = true
		}
	}
	return envoy.CheckReferences(nc)
}

func typeURLOf(m types.Resource) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// snapshotOf builds the snapshot of nc, with nc's per-type versions and
// its resources' hashes as the delta version map (so that the cache never
// marshals a resource to learn its version).
func snapshotOf(nc *envoy.NodeConfig) *cachev3.Snapshot {
	snap := &cachev3.Snapshot{VersionMap: make(map[string]map[string]string, envoy.NumTypes)}
	for t, rs := range nc.Resources {
		url := envoy.TypeURLs[t]
		items := make(map[string]types.ResourceWithTTL, len(rs))
		vers := make(map[string]string, len(rs))
		for _, r := range rs {
			items[r.Name] = types.ResourceWithTTL{Resource: r.Message}
			vers[r.Name] = r.Hash
		}
		snap.Resources[cachev3.GetResponseType(url)] = cachev3.Resources{Version: nc.Versions[t], Items: items}
		snap.VersionMap[url] = vers
	}
	return snap
}

func emptySnapshot() *cachev3.Snapshot {
	snap := &cachev3.Snapshot{VersionMap: make(map[string]map[string]string, envoy.NumTypes)}
	for _, url := range envoy.TypeURLs {
		snap.Resources[cachev3.GetResponseType(url)] = cachev3.Resources{Version: removedVersion, Items: map[string]types.ResourceWithTTL{}}
		snap.VersionMap[url] = map[string]string{}
	}
	return snap
}

// EnvoyNodes lists, sorted, the nodes whose Envoy configuration is served.
func (s *Server) EnvoyNodes() []string {
	s.envoy.mu.Lock()
	defer s.envoy.mu.Unlock()
	return slices.Sorted(maps.Keys(s.envoy.served))
}

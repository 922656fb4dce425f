package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Type URLs of Bulkhead's own xDS resources.
const (
	TypeProxyPolicy = "type.googleapis.com/bulkhead.v1.ProxyPolicy"
	TypeIdentity    = "type.googleapis.com/bulkhead.v1.Identity"
)

// Options tunes a Server. The zero value is ready to use.
type Options struct {
	// Registerer receives the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// VersionPrefix starts every version the caches hand out, so that a
	// client reconnecting from an earlier control plane instance is always
	// answered. Empty: derived from the start time.
	VersionPrefix string
	// MaxNodes bounds how many nodes Nodes remembers; the least recently
	// seen disconnected ones are forgotten first. Zero: 4096.
	MaxNodes int
	// Authorizer, when set, binds each stream to the node its peer proves
	// (auth.go): a stream without one is refused (Unauthenticated), a node
	// id other than the proven one or a ProxyPolicy subscription to another
	// node's name ends the stream with PermissionDenied. Nil: node ids are
	// self-declared (plaintext mode).
	Authorizer Authorizer
}

// Server serves ProxyPolicy and Identity resources over ADS. It is safe for
// concurrent use. Build it with New, attach it to a gRPC server with
// Register, feed it with SetProxyPolicies/SetIdentities (or Update), and run
// Start so that open streams end when the control plane stops.
type Server struct {
	log      *slog.Logger
	metrics  *metrics
	policies *cachev3.LinearCache
	idents   *cachev3.LinearCache
	mux      *cachev3.MuxCache
	xds      serverv3.Server
	status   *tracker
	envoy    *envoyCache // Envoy's types, one snapshot per node (envoy.go)

	// ctx ends every open stream when cancelled (by Start's return).
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // serializes updates; guards the maps below
	curPolicy map[string]*bulkheadv1.ProxyPolicy
	curIdent  map[string]*bulkheadv1.Identity
}

// New builds a Server. It starts no goroutines.
func New(log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "xds")
	if opts.VersionPrefix == "" {
		opts.VersionPrefix = strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = 4096
	}
	gl := gcpLogger{log}
	s := &Server{
		log:       log,
		metrics:   newMetrics(opts.Registerer),
		policies:  cachev3.NewLinearCache(TypeProxyPolicy, cachev3.WithVersionPrefix(opts.VersionPrefix), cachev3.WithLogger(gl)),
		idents:    cachev3.NewLinearCache(TypeIdentity, cachev3.WithVersionPrefix(opts.VersionPrefix), cachev3.WithLogger(gl)),
		curPolicy: map[string]*bulkheadv1.ProxyPolicy{},
		curIdent:  map[string]*bulkheadv1.Identity{},
	}
	s.status = newTracker(log, s.metrics, opts.MaxNodes)
	s.status.auth = opts.Authorizer
	s.envoy = newEnvoyCache(log, s.metrics)
	// Envoy's types are routed to the snapshot cache under their own keys.
	s.mux = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cachev3.Cache{
			TypeProxyPolicy: s.policies,
			TypeIdentity:    s.idents,
			TypeListener:    s.envoy.cache,
			TypeRoute:       s.envoy.cache,
			TypeCluster:     s.envoy.cache,
			TypeEndpoint:    s.envoy.cache,
		},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.xds = serverv3.NewServer(s.ctx, s.mux, s.status.callbacks(),
		// A ProxyPolicy is fetched by name: an empty subscription is not
		// "everything".
		config.DeactivateLegacyWildcardForTypes([]string{TypeProxyPolicy}),
	)
	return s
}

// Register serves ADS (SotW and delta) on gs.
func (s *Server) Register(gs *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, s.xds)
}

// Start blocks until ctx is done, then ends every open ADS stream (so that
// a graceful stop of the gRPC server does not wait on them). It returns nil.
func (s *Server) Start(ctx context.Context) error {
	<-ctx.Done()
	s.cancel()
	return nil
}

// SetProxyPolicies makes policies (by node id) the served set: policies that
// differ from the cached ones (proto.Equal) are pushed, absent ones removed,
// equal ones left alone. The Server keeps the messages: callers must not
// modify them afterwards. A nil policy or an empty name is an error and
// nothing is changed.
func (s *Server) SetProxyPolicies(policies map[string]*bulkheadv1.ProxyPolicy) error {
	for name, p := range policies {
		if name == "" || p == nil {
			return fmt.Errorf("proxy policy %q: empty name or nil policy", name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	update := map[string]types.Resource{}
	var remove []string
	for name, p := range policies {
		if old, ok := s.curPolicy[name]; !ok || !proto.Equal(old, p) {
			update[name] = p
		}
	}
	for name := range s.curPolicy {
		if _, ok := policies[name]; !ok {
			remove = append(remove, name)
		}
	}
	if len(update) == 0 && len(remove) == 0 {
		return nil
	}
	// The cache holds the new set even when notifying a watch fails.
	s.curPolicy = make(map[string]*bulkheadv1.ProxyPolicy, len(policies))
	for name, p := range policies {
		s.curPolicy[name] = p
	}
	s.metrics.resources.WithLabelValues(typeLabel(TypeProxyPolicy)).Set(float64(len(policies)))
	s.metrics.pushes.WithLabelValues(typeLabel(TypeProxyPolicy)).Add(float64(len(update) + len(remove)))
	s.log.Debug("proxy policies updated", "changed", len(update), "removed", len(remove), "total", len(policies))
	if err := s.policies.UpdateResources(update, remove); err != nil {
		return fmt.Errorf("update proxy policies: %w", err)
	}
	return nil
}

// SetIdentities makes identities (by "namespace/workload") the served set.
// Nothing is pushed when every identity is proto.Equal to the cached one and
// none was added or removed. Otherwise delta streams receive the changed
// identities and the removed names, and SotW streams the whole set. The
// Server keeps the messages: callers must not modify them afterwards. A nil
// identity or an empty name is an error and nothing is changed.
func (s *Server) SetIdentities(identities map[string]*bulkheadv1.Identity) error {
	for name, id := range identities {
		if name == "" || id == nil {
			return fmt.Errorf("identity %q: empty name or nil identity", name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := 0
	for name, id := range identities {
		if old, ok := s.curIdent[name]; !ok || !proto.Equal(old, id) {
			changed++
		}
	}
	removed := 0
	for name := range s.curIdent {
		if _, ok := identities[name]; !ok {
			removed++
		}
	}
	if changed == 0 && removed == 0 {
		return nil
	}
	s.curIdent = make(map[string]*bulkheadv1.Identity, len(identities))
	all := make(map[string]types.Resource, len(identities))
	for name, id := range identities {
		s.curIdent[name] = id
		all[name] = id
	}
	s.metrics.resources.WithLabelValues(typeLabel(TypeIdentity)).Set(float64(len(identities)))
	s.metrics.pushes.WithLabelValues(typeLabel(TypeIdentity)).Add(float64(changed + removed))
	s.log.Debug("identities updated", "changed", changed, "removed", removed, "total", len(identities))
	// SetResources gives every identity a new cache version: SotW watches
	// (which compare cache versions) answer with the whole set, while delta
	// watches (which compare content hashes) send only what changed.
	s.idents.SetResources(all)
	return nil
}

// Nodes reports the xDS nodes seen, sorted by node id: connected ones and
// the most recently seen disconnected ones (up to Options.MaxNodes).
func (s *Server) Nodes() []NodeStatus { return s.status.snapshot() }

// gcpLogger sends go-control-plane's logs to slog; its Infof lines (one per
// watch) go to debug.
type gcpLogger struct{ log *slog.Logger }

var _ gcplog.Logger = gcpLogger{}

func (l gcpLogger) Debugf(format string, args ...any) {
	l.logf(slog.LevelDebug, format, args...)
}
func (l gcpLogger) Infof(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l gcpLogger) Warnf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }
func (l gcpLogger) Errorf(format string, args ...any) {
	l.logf(slog.LevelError, format, args...)
}

func (l gcpLogger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

var errWildcardPolicy = errors.New("ProxyPolicy is served by name (the node id), not as a wildcard")

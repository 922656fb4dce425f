package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Type URLs of the resources the client subscribes to.
const (
	// PolicyTypeURL is the type of the node's ProxyPolicy, subscribed by
	// name: the node id.
	PolicyTypeURL = "type.googleapis.com/bulkhead.v1.ProxyPolicy"
	// IdentityTypeURL is the type of the Identity resources, subscribed as a
	// wildcard (every identity the server has).
	IdentityTypeURL = "type.googleapis.com/bulkhead.v1.Identity"
)

// Values the client puts into its xDS Node.
const (
	NodeCluster   = "bulkhead-proxy"
	UserAgentName = "bulkhead-proxy"
)

// Limits. A response beyond them is refused (NACK) or, for the receive size,
// ends the stream with a gRPC error.
const (
	maxNodeLen       = 256      // bytes of a node id
	maxResponseBytes = 64 << 20 // one DeltaDiscoveryResponse on the wire
	maxIdentities    = 1 << 20  // identities held at once
	maxErrorDetail   = 4096     // bytes of a NACK message
)

// Backoff of reconnects and of repeated NACKs (see the package doc).
const (
	retryMin     = 200 * time.Millisecond
	retryMax     = 15 * time.Second
	nackDelayMin = 100 * time.Millisecond
	nackDelayMax = 5 * time.Second
)

// ApplyFunc compiles a ProxyPolicy and an identity set and, when they are
// good, makes them the proxy's configuration; when it returns an error the
// previous configuration must stay in force. The identities are sorted by
// resource name ("namespace/workload"). Neither the policy, the slice nor the
// identities are modified by the client afterwards; Apply may keep them.
type ApplyFunc func(policy *bulkheadv1.ProxyPolicy, identities []*bulkheadv1.Identity) error

// Config is what a Client needs.
type Config struct {
	// Conn is the connection to the control plane (a *grpc.ClientConn). Its
	// owner closes it after Start has returned.
	Conn grpc.ClientConnInterface
	// Node is the xDS node id ("workload.namespace"), also the name of the
	// ProxyPolicy resource.
	Node string
	// CacheDir holds last-good.pb. Empty: nothing is persisted or restored.
	CacheDir string
	// Apply is called from Start's goroutine only, never concurrently.
	Apply ApplyFunc
}

// Status is a snapshot of the client for health endpoints and metrics.
type Status struct {
	// Connected: the current stream has delivered a response.
	Connected bool
	// PolicyVersion is the server's version of the ProxyPolicy in force
	// (go-control-plane: a hash of its content); empty when none is.
	PolicyVersion string
	// IdentityVersion is the system_version_info of the last Identity
	// response the client accepted.
	IdentityVersion string
	// LastError is the most recent stream, NACK or persistence error.
	LastError string
	// Acks and Nacks count the responses accepted and refused.
	Acks, Nacks uint64
}

// Client fetches the proxy's configuration over ADS. Create it with New and
// run it with Start.
type Client struct {
	cfg     Config
	log     *slog.Logger
	running atomic.Bool

	mu     sync.Mutex
	status Status

	restoreOnce sync.Once

	// Owned by Start's goroutine (and Restore, which runs before it).
	st    state
	storm map[string]*nackStorm // by type URL
}

// New returns a client. It starts nothing; call Start.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("xdsclient: config: no connection")
	case cfg.Node == "":
		return nil, errors.New("xdsclient: config: no node id")
	case len(cfg.Node) > maxNodeLen:
		return nil, fmt.Errorf("xdsclient: config: node id longer than %d bytes", maxNodeLen)
	case cfg.Apply == nil:
		return nil, errors.New("xdsclient: config: no apply function")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:   cfg,
		log:   log.With("node", cfg.Node),
		st:    state{identities: map[string]*identityEntry{}},
		storm: map[string]*nackStorm{},
	}, nil
}

// Status returns a snapshot of the client's state. Safe for concurrent use.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Start restores the last good configuration from CacheDir (applying it),
// then keeps an ADS stream open, reconnecting with backoff, until ctx is
// done; it then returns nil. It may run once at a time.
func (c *Client) Start(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("xdsclient: already started")
	}
	defer c.running.Store(false)

	c.Restore()
	bo := newBackoff(retryMin, retryMax)
	for {
		healthy, err := c.runStream(ctx)
		if ctx.Err() != nil {
			c.setConnected(false, "")
			return nil
		}
		if healthy {
			bo.reset()
		}
		wait := bo.next()
		c.setConnected(false, err.Error())
		c.log.Warn("xds stream ended, reconnecting", "err", err, "retryIn", wait)
		if !sleep(ctx, wait) {
			c.setConnected(false, "")
			return nil
		}
	}
}

// Restore loads and applies CacheDir/last-good.pb, if there is a usable one.
// It runs once: Start calls it, and a caller that must have the cached policy
// in force before it accepts traffic calls it first, before Start.
func (c *Client) Restore() {
	c.restoreOnce.Do(c.restore)
}

func (c *Client) restore() {
	if c.cfg.CacheDir == "" {
		return
	}
	pol, ids, err := loadCache(c.cfg.CacheDir)
	switch {
	case errors.Is(err, errNotExist):
		c.log.Info("no cached xds configuration", "dir", c.cfg.CacheDir)
		return
	case err != nil:
		c.log.Warn("ignoring cached xds configuration", "err", err)
		return
	case pol.name != c.cfg.Node:
		c.log.Warn("ignoring cached xds configuration of another node", "cachedNode", pol.name)
		return
	}
	next := state{policy: pol, identities: make(map[string]*identityEntry, len(ids))}
	for _, id := range ids {
		next.identities[id.name] = id
	}
	if err := c.cfg.Apply(pol.msg, next.sortedIdentities()); err != nil {
		c.log.Warn("cached xds configuration refused", "err", err)
		return
	}
	c.st = next
	c.mu.Lock()
	c.status.PolicyVersion = pol.version
	c.mu.Unlock()
	c.log.Info("applied cached xds configuration", "policyVersion", pol.version, "identities", len(ids))
}

// runStream runs one ADS stream until it fails or ctx is done. healthy says
// whether the stream delivered at least one response.
func (c *Client) runStream(ctx context.Context) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ads := discovery.NewAggregatedDiscoveryServiceClient(c.cfg.Conn)
	stream, err := ads.DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(maxResponseBytes))
	if err != nil {
		return false, fmt.Errorf("open ads stream: %w", err)
	}
	for _, req := range c.initialRequests() {
		if err := stream.Send(req); err != nil {
			return false, fmt.Errorf("send initial %s request: %w", req.GetTypeUrl(), err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return healthy, fmt.Errorf("receive: %w", err)
		}
		if !healthy {
			healthy = true
			c.setConnected(true, "")
			c.log.Info("xds stream up")
		}
		req, ok := c.handle(ctx, resp)
		if !ok {
			return healthy, ctx.Err()
		}
		if err := stream.Send(req); err != nil {
			return healthy, fmt.Errorf("send %s ack: %w", req.GetTypeUrl(), err)
		}
	}
}

// initialRequests subscribes to both types, offering the versions held.
func (c *Client) initialRequests() []*discovery.DeltaDiscoveryRequest {
	node := &core.Node{Id: c.cfg.Node, Cluster: NodeCluster, UserAgentName: UserAgentName}
	pol := &discovery.DeltaDiscoveryRequest{
		Node:                   node,
		TypeUrl:                PolicyTypeURL,
		ResourceNamesSubscribe: []string{c.cfg.Node},
	}
	if p := c.st.policy; p != nil {
		pol.InitialResourceVersions = map[string]string{p.name: p.version}
	}
	// No names: a (legacy) wildcard subscription.
	ids := &discovery.DeltaDiscoveryRequest{TypeUrl: IdentityTypeURL}
	if len(c.st.identities) > 0 {
		ids.InitialResourceVersions = make(map[string]string, len(c.st.identities))
		for name, id := range c.st.identities {
			ids.InitialResourceVersions[name] = id.version
		}
	}
	return []*discovery.DeltaDiscoveryRequest{pol, ids}
}

func (c *Client) setConnected(up bool, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Connected = up
	if lastErr != "" {
		c.status.LastError = lastErr
	}
}

func (c *Client) setLastError(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.LastError = msg
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

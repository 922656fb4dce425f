// Package agent wires bulkhead-proxy together: the policy engine, the last
// good configuration from disk, the xDS client, the flow reporter, the
// inbound proxy and the admin HTTP server (metrics, health, policy summary),
// all under one context. cmd/bulkhead-proxy only parses flags and calls Run.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
	"github.com/bulkhead-io/bulkhead/protocols/all"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultXDSAddr        = "127.0.0.1:15010"
	DefaultInboundAddr    = ":15006"
	DefaultAdminAddr      = ":15090"
	DefaultCacheDir       = "/var/lib/bulkhead"
	DefaultReportInterval = time.Second
	// DefaultMaxFlows bounds the flow aggregator between two reports.
	DefaultMaxFlows = 10000
	// shutdownTimeout bounds the admin server's graceful shutdown.
	shutdownTimeout = 5 * time.Second
)

// Config is what Run needs. Node is required.
type Config struct {
	// Node is the xDS node id, "workload.namespace".
	Node string
	// XDSAddr is the control plane's gRPC address (ADS and flow reports).
	XDSAddr string
	// InboundAddr is the proxy's inbound (REDIRECT target) address.
	InboundAddr string
	// AdminAddr serves /metrics, /healthz, /readyz and /debug/policy.
	AdminAddr string
	// CacheDir keeps the last good configuration. "-" disables the cache.
	CacheDir string
	// ReportInterval is how often flows are sent to the control plane.
	ReportInterval time.Duration
	// MaxFlows bounds the flow aggregator.
	MaxFlows int
	// Limits of the proxy; zero fields take the proxy's defaults.
	Limits proxy.Limits
	// Logger; nil: slog.Default().
	Logger *slog.Logger
	// Pprof serves net/http/pprof's /debug/pprof/ on the admin address
	// (profiling; off by default: profiles reveal internals).
	Pprof bool
	// OriginalDst is passed to the proxy (proxy.Config.OriginalDst): nil
	// in production (SO_ORIGINAL_DST); tests without iptables set it.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// Outbound, when set, also runs the outbound proxy and the DNS proxy
	// (see Outbound): the targets of `bulkhead-proxy init --outbound`.
	Outbound Outbound
	// Trust is mutual TLS with the control plane (trust.go); its zero
	// value is refused: set CAFile and TokenFile, or Insecure.
	Trust Trust
}

func (c Config) withDefaults() Config {
	if c.XDSAddr == "" {
		c.XDSAddr = DefaultXDSAddr
	}
	if c.InboundAddr == "" {
		c.InboundAddr = DefaultInboundAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	switch c.CacheDir {
	case "":
		c.CacheDir = DefaultCacheDir
	case "-":
		c.CacheDir = ""
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = DefaultReportInterval
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Outbound = c.Outbound.withDefaults()
	return c
}

// Run runs the proxy until ctx is done, then shuts everything down and
// returns nil, or returns the first error that stopped a part.
//
// Before it accepts a connection it restores the last good configuration
// from CacheDir, so that a proxy whose control plane is unreachable keeps
// enforcing its last policy; with no cache and no control plane it fails
// closed (the proxy refuses connections until a policy arrives).
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.Node == "" {
		return errors.New("agent: no node id")
	}
	log := cfg.Logger

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &agent{
		cfg:    cfg,
		log:    log,
		met:    metrics.New(reg),
		engine: &enforce.Engine{},
	}
	inbound, err := proxy.Listen(ctx, cfg.InboundAddr)
	if err != nil {
		return fmt.Errorf("agent: listen on inbound address %s: %w", cfg.InboundAddr, err)
	}
	admin, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		_ = inbound.Close()
		return fmt.Errorf("agent: listen on admin address %s: %w", cfg.AdminAddr, err)
	}
	target, dialOpts := controlPlaneDial(cfg)
	creds, certs, err := transport(cfg, target, dialOpts) // trust.go
	if err != nil {
		_ = inbound.Close()
		_ = admin.Close()
		return err
	}
	cc, err := grpc.NewClient(target, append(dialOpts,
		grpc.WithTransportCredentials(creds),
		// Reconnect about as eagerly as the xDS client retries (grpc's
		// default backoff grows to two minutes).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 15 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))...)
	if err != nil {
		_ = inbound.Close()
		_ = admin.Close()
		return fmt.Errorf("agent: control plane client for %s: %w", cfg.XDSAddr, err)
	}
	defer cc.Close()
	out, err := a.startOutbound(ctx)
	if err != nil {
		_ = inbound.Close()
		_ = admin.Close()
		return err
	}

	xc, err := xdsclient.New(xdsclient.Config{Conn: cc, Node: cfg.Node, CacheDir: cfg.CacheDir, Apply: a.apply}, log)
	if err != nil {
		_ = inbound.Close()
		_ = admin.Close()
		out.close()
		return fmt.Errorf("agent: %w", err)
	}
	a.xds = xc
	// Restore the cached policy before the proxy accepts a connection (they
	// wait in the listen backlog until then).
	xc.Restore()
	agg := report.NewAggregator(cfg.MaxFlows)
	rep := report.NewReporter(agg, bulkheadv1.NewFlowServiceClient(cc), cfg.Node, report.Options{
		Interval: cfg.ReportInterval,
		Revision: a.revision,
		Resolve:  a.resolve,
	}, log)
	px := proxy.New(proxy.Config{
		Listener:    inbound,
		Engine:      a.engine,
		Protocols:   all.Protocols(),
		Aggregator:  agg,
		Metrics:     a.met,
		Logger:      log,
		Limits:      cfg.Limits,
		OriginalDst: cfg.OriginalDst,
	})
	srv := &http.Server{Handler: a.handler(reg), ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	// With TLS, the control plane is contacted once a certificate is in;
	// the cached policy is enforced meanwhile.
	if certs != nil {
		g.Go(func() error { return certs.Start(gctx) })
	}
	g.Go(func() error { return certs.afterReady(gctx, xc.Start) })
	g.Go(func() error { return certs.afterReady(gctx, rep.Start) })
	g.Go(func() error { return px.Start(gctx) })
	out.run(g, gctx, agg)
	g.Go(func() error {
		if err := srv.Serve(admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("agent: admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	log.Info("bulkhead-proxy running", "node", cfg.Node, "xds", cfg.XDSAddr, "inbound", inbound.Addr().String(),
		"admin", admin.Addr().String())
	return g.Wait()
}

// agent is the state the parts share.
type agent struct {
	cfg    Config
	log    *slog.Logger
	met    *metrics.Metrics
	engine *enforce.Engine
	xds    *xdsclient.Client

	// summary describes the policy in force, for /debug/policy.
	summary atomic.Pointer[Summary]

	nackMu   sync.Mutex
	nackSeen uint64
}

// apply compiles a configuration and makes it the one in force. It is the
// xDS client's Apply: an error keeps the previous policy and NACKs.
func (a *agent) apply(pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) error {
	pol, err := enforce.Compile(pp, ids)
	if err != nil {
		return fmt.Errorf("compile policy: %w", err)
	}
	if len(ids) == 0 && a.engine.Load() == nil {
		// The policy and the identities arrive in separate xDS responses.
		// Installing a first policy without identities would judge every
		// known peer as unknown (refused in protect mode) and report ready
		// too early; the control plane always sends at least this node's
		// own identity, so wait for it. The policy was checked (a bad one
		// is still NACKed).
		a.log.Info("policy received; waiting for identities before installing it", "revision", pp.GetRevision())
		return nil
	}
	a.engine.Store(pol)
	a.summary.Store(summarize(pp, len(ids)))
	a.met.PolicySwap()
	a.log.Info("policy installed", "segment", pp.GetNamespace()+"/"+pp.GetSegment(), "mode", modeName(pp.GetMode()),
		"revision", pp.GetRevision(), "rules", len(pp.GetIngress())+len(pp.GetEgress()), "identities", len(ids))
	return nil
}

// revision is the revision of the policy in force, for flow reports.
func (a *agent) revision() string {
	if p := a.engine.Load(); p != nil {
		return p.Revision()
	}
	return ""
}

// resolve is the segment key of a workload's address, for flow reports.
func (a *agent) resolve(ip netip.Addr) string {
	if p := a.engine.Load(); p != nil {
		if seg, _, ok := p.Identity(ip); ok {
			return seg
		}
	}
	return ""
}

// Summary is the JSON body of /debug/policy.
type Summary struct {
	Segment    string        `json:"segment"`
	Mode       string        `json:"mode"`
	Revision   string        `json:"revision"`
	Ports      []PortSummary `json:"ports"`
	Ingress    []string      `json:"ingress"`
	Egress     []string      `json:"egress"`
	Identities int           `json:"identities"`
	// XDSVersion is the control plane's version of the policy in force;
	// Connected says whether the xDS stream is up.
	XDSVersion string `json:"xdsVersion,omitempty"`
	Connected  bool   `json:"connected"`
}

// PortSummary is one declared port.
type PortSummary struct {
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
}

func summarize(pp *bulkheadv1.ProxyPolicy, identities int) *Summary {
	s := &Summary{
		Segment:    pp.GetNamespace() + "/" + pp.GetSegment(),
		Mode:       modeName(pp.GetMode()),
		Revision:   pp.GetRevision(),
		Ports:      []PortSummary{},
		Ingress:    []string{},
		Egress:     []string{},
		Identities: identities,
	}
	for _, p := range pp.GetPorts() {
		s.Ports = append(s.Ports, PortSummary{Port: p.GetPort(), Protocol: p.GetProtocol()})
	}
	sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].Port < s.Ports[j].Port })
	for _, r := range pp.GetIngress() {
		s.Ingress = append(s.Ingress, r.GetName())
	}
	for _, r := range pp.GetEgress() {
		s.Egress = append(s.Egress, r.GetName())
	}
	sort.Strings(s.Ingress)
	sort.Strings(s.Egress)
	return s
}

func modeName(m bulkheadv1.Mode) string {
	if mode, ok := enforce.ModeFromProto(m); ok {
		return mode.String()
	}
	return "unspecified"
}

// handler serves the admin endpoints.
//
//   - /metrics: the proxy's own registry.
//   - /healthz: 200 while a policy is loaded (from the cache or the control
//     plane), 503 before: a proxy without a policy refuses every connection.
//   - /readyz: 200 once a policy is loaded, so that the pod receives traffic
//     only when the proxy can judge it.
//   - /debug/policy: a JSON Summary of the policy in force (404 when none).
//   - /debug/pprof/: net/http/pprof, when Config.Pprof is set.
func (a *agent) handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	prom := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		a.syncNacks()
		prom.ServeHTTP(w, r)
	})
	loaded := func(w http.ResponseWriter, _ *http.Request) {
		if a.engine.Load() == nil {
			http.Error(w, "no policy loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("GET /healthz", loaded)
	mux.HandleFunc("GET /readyz", loaded)
	mux.HandleFunc("GET /debug/policy", func(w http.ResponseWriter, _ *http.Request) {
		s := a.summary.Load()
		if s == nil {
			http.Error(w, "no policy loaded", http.StatusNotFound)
			return
		}
		out := *s
		if a.xds != nil {
			st := a.xds.Status()
			out.XDSVersion, out.Connected = st.PolicyVersion, st.Connected
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(&out)
	})
	if a.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// syncNacks brings bulkhead_proxy_xds_nacks_total up to the xDS client's
// count of NACKs (which include responses refused before Apply).
func (a *agent) syncNacks() {
	if a.xds == nil {
		return
	}
	n := a.xds.Status().Nacks
	a.nackMu.Lock()
	defer a.nackMu.Unlock()
	for ; a.nackSeen < n; a.nackSeen++ {
		a.met.XDSNack()
	}
}

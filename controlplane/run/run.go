// Package run wires the standalone control plane (bulkhead-controlplane):
// the store folder and the workloads file in, compilation on every change,
// xDS (ADS) and flow reports on one gRPC server, the admin API, /metrics and
// /healthz on one HTTP server; everything stops when the context is done.
//
// Workloads whose workloads-file entry sets `sidecar: envoy` or
// `sidecar: grpc` also get Envoy's resources (controlplane/envoy, compiled
// after each good compilation and served by the same xDS server), their
// access logs are received by the Access Log Service on the gRPC server
// (controlplane/als, into the same flows and learning path), and
// GET /v1/envoy/bootstrap on the admin server generates their bootstrap
// (see envoy.go).
package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/als"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

// Default addresses (see docs/contracts.md).
const (
	DefaultGRPCAddr  = "127.0.0.1:15010"
	DefaultAdminAddr = "127.0.0.1:15080"
)

// Config is what Run needs. StateDir is required.
type Config struct {
	// StateDir is the store's folder (policies and settings).
	StateDir string
	// WorkloadsFile is the standalone identity file. Empty: no workloads.
	WorkloadsFile string
	// GRPCAddr serves ADS and flow reports; AdminAddr the admin API,
	// /metrics and /healthz. Empty: the defaults. Ignored when the matching
	// listener is set.
	GRPCAddr, AdminAddr string
	// GRPCListener and AdminListener, when set, are served instead of
	// listening on the addresses (tests pass 127.0.0.1:0 listeners). Run
	// closes them.
	GRPCListener, AdminListener net.Listener
	// DefaultMode, when set, becomes the store's cluster default mode.
	DefaultMode v1alpha1.Mode
	// Ready, when set, is called once both servers listen, with their
	// addresses.
	Ready func(Addrs)
	// Debounce is how long a burst of store changes is collected before
	// compiling. Zero: 50ms.
	Debounce time.Duration
	// PollInterval is how often the workloads file's modification time is
	// checked. Zero: 1s.
	PollInterval time.Duration
	// ShutdownTimeout bounds the graceful stop of the servers; open flow
	// streams are cut after it. Zero: 5s.
	ShutdownTimeout time.Duration
	// History configures the flow history (history.go).
	History HistoryConfig
	// Promotion tunes automatic promotion (promote.go).
	Promotion PromotionConfig
	// Trust is mutual TLS on the gRPC port (trust.go).
	Trust TrustConfig
	// Kube, when set, runs in a cluster (kube.go); StateDir is then
	// optional (default: a folder in os.TempDir for local caches).
	Kube *KubeConfig
	// AdminAuth is the admin API's authentication (auth.go).
	AdminAuth AdminAuthConfig
}

// Addrs are the addresses the servers listen on.
type Addrs struct {
	GRPC, Admin net.Addr
}

// Run serves the control plane until ctx is done, then stops everything
// and returns nil; or returns the first error that stops a part. Bad
// configuration (an unreadable store or workloads file, an address in use)
// is reported before anything is served.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" && cfg.Kube == nil {
		return errors.New("run: state dir is required")
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = DefaultGRPCAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = DefaultAdminAddr
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	// Listeners handed in are ours to close, also on early errors.
	glis, alis := cfg.GRPCListener, cfg.AdminListener
	defer func() {
		if err != nil {
			for _, l := range []net.Listener{glis, alis} {
				if l != nil {
					l.Close()
				}
			}
		}
	}()

	st, kube, err := openSource(&cfg, log) // kube.go
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tr, err := newTrust(cfg, reg, log) // trust.go
	if err != nil {
		return err
	}
	if kube != nil && tr.ca != nil {
		kube.caBundle = tr.ca.Bundle // capublish.go
	}
	xdsSrv := xds.New(log, xds.Options{Registerer: reg, Authorizer: tr.auth})
	c := &compiler{
		st: st, xds: xdsSrv, file: cfg.WorkloadsFile,
		log: log.With("component", "compile"), metrics: newMetrics(reg),
		envoy: envoy.NewCompiler(envoy.Options{}),
		trust: tr,
	}
	if err := c.loadWorkloads(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if kube == nil { // kube mode compiles once the informers synced
		c.compile() // an error is logged; /healthz reports it until a compile succeeds
	} else {
		c.table = &clusterWorkloads{cl: kube.cl, log: log}
	}

	rec := flows.NewRecorder(flows.Options{})
	flowSrv := flows.NewServer(rec, newLearner(st, rec, reg, log), st, log, flows.ServerOptions{Registerer: reg, Authorizer: tr.auth, Endpoints: tr.endpoints(c)})
	hist, err := openHistory(cfg, reg, log)
	if err != nil {
		return err
	}
	flowSrv.AddSink(hist)
	if kube != nil {
		flowSrv.AddSink(kube) // violations become Events
	}
	prom := newPromoter(cfg, st, log)
	alsSrv := als.NewServer(flowSrv, c.view.Load, log, als.Options{Registerer: reg, Authorizer: tr.auth})
	gs := grpc.NewServer(append(append(tr.opts, grpcLimits()...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)...)
	tr.register(gs)
	xdsSrv.Register(gs)
	flowSrv.Register(gs)
	alsSrv.Register(gs)

	adminHandler := admin.NewHandler(admin.Deps{
		Store:    st,
		Segments: c.segments,
		Flows:    rec,
		Nodes:    xdsSrv.Nodes,
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Health:   c.health,
		Log:      log.With("component", "admin"),
	})
	authed, err := withAdminAuth(withMap(withPromotions(withBootstrap(withOperator(adminHandler, st, hist, c, log), c, func() net.Addr { return glis.Addr() }), prom, log), rec, c), cfg, reg, log)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           authed,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxAdminHeader,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	if glis == nil {
		if glis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return fmt.Errorf("run: grpc: %w", err)
		}
	}
	if alis == nil {
		if alis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			return fmt.Errorf("run: admin: %w", err)
		}
	}
	log.Info("control plane serving", "grpc", glis.Addr().String(), "admin", alis.Addr().String(),
		"state", cfg.StateDir, "workloads", cfg.WorkloadsFile)
	if cfg.Ready != nil {
		cfg.Ready(Addrs{GRPC: glis.Addr(), Admin: alis.Addr()})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.loop(gctx, cfg.Debounce, cfg.PollInterval) })
	g.Go(func() error { return xdsSrv.Start(gctx) })
	g.Go(func() error { return flowSrv.Start(gctx) })
	g.Go(func() error { return alsSrv.Start(gctx) })
	g.Go(func() error { return hist.Start(gctx) })
	g.Go(func() error { return prom.Start(gctx) })
	if kube != nil {
		g.Go(func() error { return kube.Start(gctx, c, xdsSrv.Nodes) })
	}
	g.Go(func() error {
		if err := gs.Serve(limitConns(glis, MaxGRPCConns)); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(limitConns(alis, MaxAdminConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("control plane stopping")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopGRPC(sctx, gs)
		}()
		herr := httpSrv.Shutdown(sctx)
		wg.Wait()
		if herr != nil {
			httpSrv.Close()
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("control plane stopped")
	return nil
}

// stopGRPC stops gs gracefully, and hard when ctx ends first (flow report
// streams stay open until their proxies close them).
func stopGRPC(ctx context.Context, gs *grpc.Server) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
		<-done
	}
}

// compiler recompiles when the store or the workloads file changes and
// serves each good output over xDS; a failed compilation keeps the last good
// output.
type compiler struct {
	trust   *trust // trust.go; the bootstrap endpoint asks whether gRPC is TLS
	st      source // kube.go
	xds     *xds.Server
	file    string
	log     *slog.Logger
	metrics *metrics

	// Used by loop only (and once before it starts).
	table    workloadSource
	fileStat fileStamp

	latest  atomic.Pointer[compile.Output]
	lastErr atomic.Pointer[error]

	// Envoy sidecars: resources compiled after each good compilation, and
	// the view the access log service judges entries with.
	envoy     *envoy.Compiler
	view      atomic.Pointer[als.View]
	workloads atomic.Pointer[[]identity.Workload] // of the latest good compilation
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// loadWorkloads reads the workloads file (an empty table without one).
func (c *compiler) loadWorkloads() error {
	if c.file == "" {
		t, err := identity.Parse(nil)
		if err != nil {
			return err
		}
		c.table = t
		return nil
	}
	s, err := stamp(c.file)
	if err != nil {
		return fmt.Errorf("load workloads: %w", err)
	}
	t, err := identity.LoadFile(c.file)
	if err != nil {
		return err
	}
	c.table, c.fileStat = t, s
	return nil
}

// workloadsChanged re-reads the workloads file when its modification time
// or size changed. A file that fails to load keeps the previous table.
func (c *compiler) workloadsChanged() bool {
	if c.file == "" {
		return false
	}
	s, err := stamp(c.file)
	if err != nil || s == c.fileStat {
		if err != nil && c.fileStat != (fileStamp{}) {
			c.log.Warn("workloads file unreadable; keeping the last one", "file", c.file, "error", err)
			c.fileStat = fileStamp{}
		}
		return false
	}
	c.fileStat = s
	t, err := identity.LoadFile(c.file)
	if err != nil {
		c.log.Error("workloads file rejected; keeping the last good one", "error", err)
		return false
	}
	c.table = t
	c.log.Info("workloads file reloaded", "file", c.file, "workloads", len(t.Workloads()))
	return true
}

// compile compiles the store and the workloads and serves the result.
func (c *compiler) compile() {
	start := time.Now()
	workloads := c.table.Workloads()
	out, err := compile.Compile(compile.Input{
		Policies:  c.policies(workloads), // kube.go
		Workloads: workloads,
		Settings:  c.st.Settings(),
	})
	c.metrics.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		err = c.xds.Update(out)
	}
	if err != nil {
		c.metrics.runs.WithLabelValues("error").Inc()
		c.lastErr.Store(&err)
		c.log.Error("compilation failed; serving the last good configuration", "error", err)
		return
	}
	c.metrics.runs.WithLabelValues("ok").Inc()
	c.lastErr.Store(nil)
	c.latest.Store(out)
	c.workloads.Store(&workloads)
	c.serveEnvoy(out, workloads)
	c.log.Debug("compiled", "proxies", len(out.Proxies), "identities", len(out.Identities),
		"segments", len(out.Segments), "took", time.Since(start))
}

// loop recompiles after store changes (collected for debounce) and
// workloads file changes (polled) until ctx is done.
func (c *compiler) loop(ctx context.Context, debounce, poll time.Duration) error {
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	// The first change of a burst arms the timer; later ones ride along,
	// so a steady stream of changes still compiles every debounce.
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.st.Changes():
			if !pending {
				pending = true
				timer.Reset(debounce)
			}
		case <-ticker.C:
			if c.workloadsChanged() {
				c.compile()
			}
		case <-timer.C:
			pending = false
			c.compile()
		}
	}
}

// segments returns the segments of the latest good compilation.
func (c *compiler) segments() []compile.SegmentInfo {
	if out := c.latest.Load(); out != nil {
		return out.Segments
	}
	return nil
}

// health fails until a compilation succeeded; later failures keep the
// last good configuration and are only logged.
func (c *compiler) health() error {
	if c.latest.Load() != nil {
		return nil
	}
	if e := c.lastErr.Load(); e != nil {
		return fmt.Errorf("no configuration compiled yet: %w", *e)
	}
	return errors.New("no configuration compiled yet")
}

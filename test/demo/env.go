package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// Ports of the demo's processes.
const (
	RedisPort      = 6379
	GRPCPort       = 15010
	ProxyAdminPort = 15090
)

// Config shapes an Env. The zero value is the demo's: lab "bhdemo" on
// 198.18.0.0/24, namespace demo, hosts web, cart, redis and intruder, redis
// behind the proxy, default mode discover.
type Config struct {
	// BinDir holds bulkhead, bulkhead-controlplane and bulkhead-proxy.
	// Required.
	BinDir string
	// Prefix and Subnet are the lab's (see lab.Options).
	Prefix string
	Subnet netip.Prefix
	// Namespace of every workload. Default "demo".
	Namespace string
	// Hosts are the workloads, in address order. Default web, cart, redis,
	// intruder. Server must be one of them.
	Hosts []string
	// Server is the host that runs redis-server behind bulkhead-proxy.
	// Default "redis".
	Server string
	// DefaultMode is the control plane's --default-mode. Default
	// "discover".
	DefaultMode string
	// ReportInterval is the proxy's --report-interval. Default 500ms.
	ReportInterval time.Duration
	// LogLevel of the control plane and the proxy. Default "info".
	LogLevel string
	// Log receives the lab's and the Env's own log. Nil: discarded.
	Log *slog.Logger
	// Keep leaves the temp dirs (state, workloads file, process output) in
	// place on Close.
	Keep bool
	// ControlPlaneArgs are added to bulkhead-controlplane's command line
	// (e.g. --cert-ttl).
	ControlPlaneArgs []string
	// ProxyArgs are added to bulkhead-proxy's command line (e.g. limits).
	ProxyArgs []string
}

func (c *Config) defaults() error {
	if c.BinDir == "" {
		return errors.New("demo: BinDir is required")
	}
	if c.Prefix == "" {
		c.Prefix = "bhdemo"
	}
	if !c.Subnet.IsValid() {
		c.Subnet = netip.MustParsePrefix("198.18.0.0/24")
	}
	if c.Namespace == "" {
		c.Namespace = "demo"
	}
	if len(c.Hosts) == 0 {
		c.Hosts = []string{"web", "cart", "redis", "intruder"}
	}
	if c.Server == "" {
		c.Server = "redis"
	}
	if !slices.Contains(c.Hosts, c.Server) {
		return fmt.Errorf("demo: server %q is not one of the hosts %v", c.Server, c.Hosts)
	}
	if c.DefaultMode == "" {
		c.DefaultMode = "discover"
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = 500 * time.Millisecond
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Env is the demo's world, reusable by end-to-end tests: a lab with the
// hosts, the control plane on the machine, redis-server and bulkhead-proxy
// in the server host. Close removes it all.
type Env struct {
	Config
	Lab *lab.Lab
	// Dir holds StateDir, WorkloadsFile and the proxy's cache, inside the
	// lab's dir (with the processes' output).
	Dir           string
	StateDir      string
	WorkloadsFile string
	// AdminURL is the control plane's admin API; Client speaks it.
	AdminURL string
	Client   *cli.Client
	// GRPCAddr is the control plane's xDS and flow-report address, on the
	// lab.
	GRPCAddr netip.AddrPort
	// The processes, while they run.
	ControlPlane, Redis, Proxy *lab.Proc
}

// Start builds the Env: the lab and its hosts, the workloads file, the
// control plane (waits for /healthz), redis-server, the proxy's redirect
// and the proxy (waits until it has acknowledged a policy and redis answers
// through it). On error, whatever it started is removed.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	for _, b := range []string{"bulkhead", "bulkhead-controlplane", "bulkhead-proxy"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("demo: %w (build with make build)", err)
		}
	}
	for _, tool := range []string{"ip", "iptables", "redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("demo needs %s: %w", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("demo needs root (network namespaces, iptables)")
	}
	l, err := lab.New(ctx, lab.Options{Prefix: cfg.Prefix, Subnet: cfg.Subnet, Log: cfg.Log, KeepDir: cfg.Keep})
	if err != nil {
		return nil, err
	}
	e := &Env{Config: cfg, Lab: l, GRPCAddr: netip.AddrPortFrom(l.HostAddr(), GRPCPort)}
	if err := e.build(ctx); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

func (e *Env) build(ctx context.Context) error {
	for _, h := range e.Hosts {
		if _, err := e.Lab.AddHost(h); err != nil {
			return err
		}
	}
	// Inside the lab's dir, which the lab's Close (and a later run's
	// sweep, after a crash) removes.
	dir := filepath.Join(e.Lab.Dir(), "demo")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	e.Dir = dir
	e.StateDir = filepath.Join(dir, "state")
	e.WorkloadsFile = filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(e.WorkloadsFile, e.workloadsYAML(), 0o644); err != nil {
		return fmt.Errorf("workloads file: %w", err)
	}
	if err := e.StartControlPlane(ctx); err != nil {
		return err
	}
	if err := e.StartRedis(ctx); err != nil {
		return err
	}
	if _, err := e.Host(e.Server).Run(ctx, e.Bin("bulkhead-proxy"), "init", "--exclude-ports", strconv.Itoa(ProxyAdminPort)); err != nil {
		return fmt.Errorf("install the redirect: %w", err)
	}
	return e.StartProxy(ctx)
}

// workloadsYAML is the standalone identity file: every host of the lab,
// the server with its redis port.
func (e *Env) workloadsYAML() []byte {
	var b bytes.Buffer
	b.WriteString("workloads:\n")
	for _, name := range e.Hosts {
		fmt.Fprintf(&b, "- name: %s\n  namespace: %s\n  ips: [%s]\n", name, e.Namespace, e.Host(name).Addr())
		if name == e.Server {
			fmt.Fprintf(&b, "  ports: [{port: %d, protocol: redis}]\n", RedisPort)
		}
	}
	return b.Bytes()
}

// Bin is the path of one of Bulkhead's binaries.
func (e *Env) Bin(name string) string { return filepath.Join(e.BinDir, name) }

// Host returns a host of the lab by name; nil when there is none.
func (e *Env) Host(name string) *lab.Host { return e.Lab.Host(name) }

// ServerAddr is redis's address and port, where clients connect.
func (e *Env) ServerAddr() netip.AddrPort {
	return netip.AddrPortFrom(e.Host(e.Server).Addr(), RedisPort)
}

// Node is the server's xDS node id, "workload.namespace".
func (e *Env) Node() string { return e.Server + "." + e.Namespace }

// StartControlPlane starts bulkhead-controlplane on the machine with the
// Env's state dir and workloads file, and waits until /healthz answers.
// A restart keeps the admin URL.
func (e *Env) StartControlPlane(ctx context.Context) error {
	if e.AdminURL == "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		e.AdminURL = "http://127.0.0.1:" + strconv.Itoa(port)
		if e.Client, err = cli.NewClient(e.AdminURL, &http.Client{Timeout: 5 * time.Second}); err != nil {
			return err
		}
	}
	p, err := e.Lab.Root().Start(ctx, e.Bin("bulkhead-controlplane"), append([]string{
		"--state-dir", e.StateDir,
		"--workloads", e.WorkloadsFile,
		"--grpc-addr", e.GRPCAddr.String(),
		"--admin-addr", strings.TrimPrefix(e.AdminURL, "http://"),
		"--default-mode", e.DefaultMode,
		"--log-level", e.LogLevel}, e.ControlPlaneArgs...)...)
	if err != nil {
		return err
	}
	e.ControlPlane = p
	err = e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		return e.Client.Healthz(ctx) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("control plane not healthy: %w", err)
	}
	// The control plane created its admin token on the first start.
	auth := cli.Auth{StateDir: e.StateDir, Env: func(string) string { return "" }}
	tok, err := auth.Token()
	if err != nil {
		return err
	}
	e.Client = e.Client.WithToken(tok)
	return nil
}

// StopControlPlane stops the control plane (SIGTERM, then SIGKILL) and
// forgets it, so that Poll does not take its exit for a failure.
func (e *Env) StopControlPlane() {
	if e.ControlPlane != nil {
		e.ControlPlane.Stop()
		e.ControlPlane = nil
	}
}

// StartRedis starts redis-server in the server host on its lab address.
// Protected configs are enabled so that, unless Bulkhead stops it, CONFIG
// SET dir works: the attack the demo shows would succeed.
func (e *Env) StartRedis(ctx context.Context) error {
	h := e.Host(e.Server)
	p, err := h.Start(ctx, "redis-server",
		"--bind", "0.0.0.0", "--port", strconv.Itoa(RedisPort),
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--enable-protected-configs", "yes", "--dir", e.Dir)
	if err != nil {
		return err
	}
	e.Redis = p
	// Inside its own namespace nothing is redirected yet, or the port is
	// excluded for local traffic: wait for the server itself.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := lab.WaitTCP(wctx, h, netip.AddrPortFrom(h.Addr(), RedisPort)); err != nil {
		return errors.Join(fmt.Errorf("redis-server not up: %w", err), p.Err())
	}
	return nil
}

// StartProxy starts bulkhead-proxy in the server host and waits until it
// has acknowledged a policy (unless the control plane is stopped: then it
// runs on its cached one) and its /readyz answers 200.
func (e *Env) StartProxy(ctx context.Context) error {
	cache := filepath.Join(e.Dir, "proxy-cache")
	p, err := e.Host(e.Server).Start(ctx, e.Bin("bulkhead-proxy"), append([]string{"run",
		"--node", e.Node(),
		"--xds-addr", e.GRPCAddr.String(),
		"--inbound-addr", ":15006",
		"--admin-addr", ":" + strconv.Itoa(ProxyAdminPort),
		"--cache-dir", cache,
		"--report-interval", e.ReportInterval.String(),
		"--log-level", e.LogLevel}, slices.Concat(e.TrustArgs(), e.ProxyArgs)...)...)
	if err != nil {
		return err
	}
	e.Proxy = p
	if e.ControlPlane != nil {
		if _, err := e.WaitPolicy(ctx, ""); err != nil {
			return fmt.Errorf("proxy %s has no policy: %w", e.Node(), err)
		}
	}
	ready := "http://" + netip.AddrPortFrom(e.Host(e.Server).Addr(), ProxyAdminPort).String() + "/readyz"
	hc := &http.Client{Timeout: 2 * time.Second}
	err = e.Poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("proxy %s not ready (%s): %w", e.Node(), ready, err)
	}
	return nil
}

// StopProxy stops the proxy (SIGTERM, then SIGKILL) and forgets it.
func (e *Env) StopProxy() {
	if e.Proxy != nil {
		e.Proxy.Stop()
		e.Proxy = nil
	}
}

// AckedPolicy returns the ProxyPolicy version the server's proxy last
// acknowledged, and whether it is also the last one sent (in sync).
func (e *Env) AckedPolicy(ctx context.Context) (acked string, synced bool, err error) {
	ps, err := e.Client.Proxies(ctx)
	if err != nil {
		return "", false, err
	}
	for _, p := range ps {
		if p.Node != e.Node() || !p.Connected {
			continue
		}
		for _, t := range p.Types {
			if strings.HasSuffix(t.Type, ".ProxyPolicy") {
				return t.AckedVersion, t.AckedVersion != "" && t.AckedVersion == t.SentVersion, nil
			}
		}
	}
	return "", false, nil
}

// WaitPolicy waits until the server's proxy is connected and in sync with a
// ProxyPolicy version other than prev, and returns that version. Another
// change in flight (learned rules) may be the one that arrives: to wait for
// a mode, use WaitProxyMode.
func (e *Env) WaitPolicy(ctx context.Context, prev string) (string, error) {
	var v string
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		acked, synced, err := e.AckedPolicy(ctx)
		if err != nil {
			return false, nil // the control plane may be restarting
		}
		v = acked
		return synced && acked != prev, nil
	})
	return v, err
}

// ProxySummary is the proxy's /debug/policy: the policy in force.
type ProxySummary struct {
	Segment    string   `json:"segment"`
	Mode       string   `json:"mode"`
	Revision   string   `json:"revision"`
	Ingress    []string `json:"ingress"`
	Egress     []string `json:"egress"`
	Identities int      `json:"identities"`
	XDSVersion string   `json:"xdsVersion"`
	Connected  bool     `json:"connected"`
}

// ProxyPolicy fetches the policy the server's proxy enforces, from its
// admin port (reachable from the machine: the port is not redirected).
func (e *Env) ProxyPolicy(ctx context.Context) (*ProxySummary, error) {
	u := "http://" + netip.AddrPortFrom(e.Host(e.Server).Addr(), ProxyAdminPort).String() + "/debug/policy"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var s ProxySummary
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &s, nil
}

// WaitProxyMode waits until the server's proxy enforces a policy in mode m
// that has at least the given ingress rules, and returns its summary. Only
// the proxy knows what is in force: the control plane's view (store,
// compiled segments, acknowledged versions) may run ahead of it or lag.
func (e *Env) WaitProxyMode(ctx context.Context, m v1alpha1.Mode, rules ...string) (*ProxySummary, error) {
	var last *ProxySummary
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		s, err := e.ProxyPolicy(ctx)
		if err != nil {
			return false, nil
		}
		last = s
		if s.Mode != string(m) {
			return false, nil
		}
		for _, r := range rules {
			if !slices.ContainsFunc(s.Ingress, func(in string) bool { return in == r || strings.HasSuffix(in, "/"+r) }) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return last, fmt.Errorf("proxy %s: want mode %s with rules %v, have %+v: %w", e.Node(), m, rules, last, err)
	}
	return last, nil
}

// Poll calls cond every 100ms until it returns true or an error, the
// timeout passes, or one of the Env's processes exits (an error that shows
// the end of its output).
func (e *Env) Poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		for _, p := range []*lab.Proc{e.ControlPlane, e.Redis, e.Proxy} {
			if p != nil {
				if err := p.Err(); err != nil {
					return err
				}
			}
		}
		ok, err := cond(pctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-pctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("timed out after %v", timeout)
		case <-t.C:
		}
	}
}

// CLI runs the bulkhead binary on the machine against the Env's control
// plane and returns its combined output.
func (e *Env) CLI(ctx context.Context, args ...string) (string, error) {
	out, err := e.Lab.Root().Run(ctx, e.Bin("bulkhead"), append([]string{"--server", e.AdminURL, "--state-dir", e.StateDir}, args...)...)
	return string(out), err
}

// RedisCLI runs `redis-cli -h <server> -p 6379 args…` in host from, bounded
// by 5s, and returns its combined output. Without args it reads commands
// from stdin (one per line, one connection). A non-zero exit is not an
// error: the output says what happened (connection refused, reset…).
func (e *Env) RedisCLI(ctx context.Context, from string, stdin string, args ...string) (string, error) {
	h := e.Host(from)
	if h == nil {
		return "", fmt.Errorf("no host %q", from)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := h.Command(tctx, "redis-cli", append([]string{"-h", e.ServerAddr().Addr().String(), "-p", strconv.Itoa(RedisPort)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return string(out), fmt.Errorf("%s: redis-cli: %w", from, err)
	}
	if err := ctx.Err(); err != nil {
		return string(out), err
	}
	if tctx.Err() != nil {
		return string(out), fmt.Errorf("%s: redis-cli %s: timed out", from, strings.Join(args, " "))
	}
	return string(out), nil
}

// Close stops every process and removes the lab with its dir (unless
// kept). Safe to call more than once.
func (e *Env) Close() error { return e.Lab.Close() }

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func cliQuery(segment string) cli.Query { return cli.Query{Segment: segment} }

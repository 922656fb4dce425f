package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/test/lab"
)

// Arm is one way of connecting the client to the server.
type Arm int

// The arms, in the order each round runs them.
const (
	Direct Arm = iota
	HAProxy
	Bulkhead
)

// Arms lists every arm in run order.
var Arms = []Arm{Direct, HAProxy, Bulkhead}

func (a Arm) String() string {
	switch a {
	case Direct:
		return "direct"
	case HAProxy:
		return "HAProxy"
	case Bulkhead:
		return "Bulkhead"
	}
	return "arm(" + strconv.Itoa(int(a)) + ")"
}

// running is an arm set up for one scenario.
type running struct {
	arm  Arm
	proc *lab.Proc // the proxy; nil for direct
	stop func() error
}

// pid is the proxy's process id; 0 for direct.
func (r *running) pid() int {
	if r.proc == nil {
		return 0
	}
	return r.proc.Pid()
}

// startArm sets arm up in front of the server's port: nothing for direct;
// for the proxies the redirect, then the proxy pinned to its CPU, ready.
func (b *bench) startArm(ctx context.Context, arm Arm, port int) (*running, error) {
	if arm == Direct {
		return &running{arm: arm, stop: func() error { return nil }}, nil
	}
	if _, err := b.server.Run(ctx, b.proxyBin(), "init", "--exclude-ports", strconv.Itoa(adminPort)); err != nil {
		return nil, fmt.Errorf("install the redirect: %w", err)
	}
	removeRedirect := func() error {
		// A fresh context: the run's may be done, and the redirect must go.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), waitTime)
		defer cancel()
		if _, err := b.server.Run(ctx, b.proxyBin(), "cleanup"); err != nil {
			return fmt.Errorf("remove the redirect: %w", err)
		}
		return nil
	}
	var (
		p   *lab.Proc
		err error
	)
	switch arm {
	case HAProxy:
		p, err = b.startHAProxy(ctx, port)
	case Bulkhead:
		p, err = b.startBulkhead(ctx)
	default:
		err = fmt.Errorf("unknown arm %d", arm)
	}
	if err != nil {
		return nil, errors.Join(err, removeRedirect())
	}
	return &running{arm: arm, proc: p, stop: func() error {
		p.Stop()
		return removeRedirect()
	}}, nil
}

func (b *bench) proxyBin() string { return filepath.Join(b.opts.BinDir, "bulkhead-proxy") }

// haproxyConfig is HAProxy in TCP mode, one thread, listening on the
// redirect's target port and forwarding to the server's port, no logging;
// splice-auto lets it splice bulk transfers in the kernel, as Bulkhead does
// on an L4-only port (HAProxy's own heuristics keep small messages in user
// space).
func haproxyConfig(backend netip.AddrPort, maxconn int) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn %d
    maxpipes %d

defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend bench
    bind :%d
    default_backend server

backend server
    server s1 %s
`, maxconn, haproxyPipes, proxyPort, backend)
}

func (b *bench) startHAProxy(ctx context.Context, port int) (*lab.Proc, error) {
	cfg := filepath.Join(b.dir, fmt.Sprintf("haproxy-%d.cfg", port))
	conf := haproxyConfig(b.target(port), b.maxConns)
	if port == httpPort {
		conf = haproxyHTTPConfig(b.target(port), b.maxConns)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	if _, err := b.server.Run(ctx, "haproxy", "-c", "-q", "-f", cfg); err != nil {
		return nil, fmt.Errorf("haproxy config check: %w", err)
	}
	// -db: foreground, no master process; the pid is haproxy's.
	p, err := b.server.Start(ctx, "nice", b.pinned(proxyCPU, "haproxy", "-db", "-f", cfg)...)
	if err != nil {
		return nil, err
	}
	if err := b.waitListen(ctx, p, proxyPort); err != nil {
		p.Stop()
		return nil, err
	}
	if err := checkComm(p, "haproxy"); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (b *bench) startBulkhead(ctx context.Context) (*lab.Proc, error) {
	// Nothing listens on the xDS address: the proxy runs on its cache
	// (so plaintext, --insecure, costs nothing: no control plane to trust).
	p, err := b.server.Start(ctx, "env", append([]string{"GOMAXPROCS=1", "nice"}, b.pinned(proxyCPU, b.proxyBin(), "run",
		"--node", nodeID,
		"--xds-addr", "127.0.0.1:9",
		"--insecure",
		"--inbound-addr", ":"+strconv.Itoa(proxyPort),
		"--admin-addr", ":"+strconv.Itoa(adminPort),
		"--cache-dir", b.cache,
		"--max-conns", strconv.Itoa(b.maxConns),
		"--pprof",
		"--log-level", "error")...)...)
	if err != nil {
		return nil, err
	}
	if err := b.waitReady(ctx, p); err != nil {
		p.Stop()
		return nil, err
	}
	if err := checkComm(p, "bulkhead-proxy"); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// checkComm makes sure the pid the harness measures is the proxy itself
// (ip netns exec, env, nice and taskset each exec the next program).
func checkComm(p *lab.Proc, want string) error {
	if got := procComm(p.Pid()); got != want {
		return fmt.Errorf("process %d is %q, want %q: CPU and memory would be measured on the wrong process", p.Pid(), got, want)
	}
	return nil
}

func (b *bench) adminURL(path string) string {
	return "http://" + netip.AddrPortFrom(b.server.Addr(), adminPort).String() + path
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// waitReady waits for the proxy's /readyz: it has restored its policy.
func (b *bench) waitReady(ctx context.Context, p *lab.Proc) error {
	ctx, cancel := context.WithTimeout(ctx, waitTime)
	defer cancel()
	for {
		code, _, err := httpGet(ctx, b.adminURL("/readyz"))
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err := p.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bulkhead-proxy not ready (%d, %v): %w\n%s", code, err, ctx.Err(), p.Tail(10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, body, err
}

// messageCounts reads bulkhead_proxy_messages_total for protocol from the
// proxy's /metrics: allowed and denied messages so far.
func (b *bench) messageCounts(ctx context.Context, protocol string) (allow, deny float64, err error) {
	code, body, err := httpGet(ctx, b.adminURL("/metrics"))
	if err != nil {
		return 0, 0, fmt.Errorf("proxy metrics: %w", err)
	}
	if code != http.StatusOK {
		return 0, 0, fmt.Errorf("proxy metrics: status %d", code)
	}
	allow, deny = parseMessageCounts(string(body), protocol)
	return allow, deny, nil
}

// goRuntime reads the Go runtime's gauges from the proxy's /metrics: heap
// and stack memory in use, in bytes, and goroutines.
func (b *bench) goRuntime(ctx context.Context) (heap, stack, goroutines float64, err error) {
	code, body, err := httpGet(ctx, b.adminURL("/metrics"))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("proxy metrics: %w", err)
	}
	if code != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("proxy metrics: status %d", code)
	}
	text := string(body)
	return gauge(text, "go_memstats_heap_inuse_bytes"), gauge(text, "go_memstats_stack_inuse_bytes"), gauge(text, "go_goroutines"), nil
}

// gauge returns the value of an unlabelled metric in Prometheus text
// format; 0 when absent.
func gauge(text, name string) float64 {
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return 0
}

// parseMessageCounts sums bulkhead_proxy_messages_total of protocol by
// verdict (allow, deny) in Prometheus text format.
func parseMessageCounts(text, protocol string) (allow, deny float64) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "bulkhead_proxy_messages_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, `protocol="`+protocol+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(labels, `verdict="allow"`):
			allow += v
		case strings.Contains(labels, `verdict="deny"`):
			deny += v
		}
	}
	return allow, deny
}

// checkRedisPolicy proves the Bulkhead arm enforces: a SET through it is
// allowed and a CONFIG GET is answered by the proxy's own denial.
func (b *bench) checkRedisPolicy(ctx context.Context) error {
	addr := b.target(redisPort)
	cli := func(args ...string) (string, error) {
		out, err := b.client.Run(ctx, "redis-cli", append([]string{"-h", addr.Addr().String(), "-p", strconv.Itoa(redisPort)}, args...)...)
		return strings.TrimSpace(string(out)), err
	}
	if out, err := cli("SET", "bench:probe", "1"); err != nil || out != "OK" {
		return fmt.Errorf("SET through Bulkhead: %q, %v", out, err)
	}
	if out, err := cli("CONFIG", "GET", "maxclients"); err != nil || !strings.Contains(out, "bulkhead") {
		return fmt.Errorf("CONFIG GET through Bulkhead was not denied by the proxy: %q, %v", out, err)
	}
	return nil
}

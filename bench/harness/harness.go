package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-io/bulkhead/test/lab"
)

// Ports and CPUs of the layout.
const (
	redisPort = 6379
	iperfPort = 5201
	proxyPort = 15006 // the redirect's target: bulkhead-proxy's or haproxy's listener
	adminPort = 15090 // bulkhead-proxy's admin port, excluded from the redirect
	// ephemeralFrom is the first ephemeral port in the lab's hosts: above
	// every port the harness listens on (TestEphemeralPorts).
	ephemeralFrom = 20000
	loadCPU       = "0" // load generator and server
	proxyCPU      = "1" // the proxy under test
	nodeID        = "server.bench"
	maxConns      = 40_000 // proxies' and redis's connection limit, when the open-file limit allows
	waitTime      = 15 * time.Second
	toolLimit     = 5 * time.Minute // one load tool run
)

// tools are the programs a run needs, with the Debian package of each.
var tools = [][2]string{
	{"ip", "iproute2"}, {"iptables", "iptables"}, {"taskset", "util-linux"}, {"ss", "iproute2"},
	{"sysctl", "procps"}, {"redis-server", "redis-server"}, {"redis-cli", "redis-tools"},
	{"redis-benchmark", "redis-tools"}, {"haproxy", "haproxy"}, {"iperf3", "iperf3"},
	{"nginx", "nginx-light"}, {"wrk", "wrk"}, {"go", "golang (fortio is built with go install)"},
	{"unbound", "unbound"}, {"dnsperf", "dnsperf"}, {"dig", "bind9-dnsutils"}, {"openssl", "openssl"},
	{"kcat", "kcat"},
	{"psql", "postgresql-client"}, {"pgbench", "postgresql-client"}, {"runuser", "util-linux"},
	{"mariadbd", "mariadb-server"}, {"mariadb-install-db", "mariadb-server"}, {"mariadb", "mariadb-client"},
	{"sysbench", "sysbench"},
}

// CheckTools returns an error naming every missing program and the Debian
// package that has it.
func CheckTools() error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, t[0]+" ("+t[1]+")")
		}
	}
	// PostgreSQL's server programs are off PATH on Debian (pgProgram).
	if _, err := pgProgram("postgres"); err != nil {
		missing = append(missing, "postgres (postgresql)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("harness: missing %s: apt-get install the packages named", strings.Join(missing, ", "))
	}
	return nil
}

// bench is one run's state.
type bench struct {
	opts   Options
	prof   Profile
	lab    *lab.Lab
	client *lab.Host
	server *lab.Host
	dir    string // in the lab's dir
	cache  string // bulkhead-proxy's cache dir, holding the policy
	fortio string // the fortio binary, built into dir
	rep    *Report
	// maxConns is how many connections a proxy (and redis) may hold under
	// the open-file limit.
	maxConns int
}

// Run builds the lab, runs every scenario and the micro-benchmarks, removes
// the lab and returns the report. It needs root. The report's Commit is
// left to the caller.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("harness: needs root (network namespaces, iptables, taskset)")
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "bulkhead-proxy")); err != nil {
		return nil, fmt.Errorf("harness: %w (make build)", err)
	}
	fds, err := raiseNoFile()
	if err != nil {
		return nil, err
	}
	b := &bench{opts: opts, prof: opts.Profile, rep: newReport(opts.Profile), maxConns: maxProxied(fds)}
	b.rep.FDLimit = fds
	// A proxy holds two descriptors per connection: under a low limit the
	// idle counts are cut to what fits, and the report says so.
	b.prof.IdleConns = slices.Clone(b.prof.IdleConns)
	for i, n := range b.prof.IdleConns {
		if n > b.maxConns {
			b.rep.IdleCut = append(b.rep.IdleCut, n)
			b.prof.IdleConns[i] = b.maxConns
		}
	}
	b.prof.IdleConns = slices.Compact(b.prof.IdleConns)
	defer httpClient.CloseIdleConnections()
	start := time.Now()
	err = b.run(ctx)
	b.rep.Elapsed = time.Since(start)
	b.rep.Machine.LoadEnd = loadAvg()
	return b.rep, err
}

func (b *bench) run(ctx context.Context) (err error) {
	b.rep.Machine = machine(ctx)
	l, err := lab.New(ctx, lab.Options{Prefix: b.opts.Prefix, Subnet: b.opts.Subnet, Log: b.opts.Log})
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	defer func() { err = errors.Join(err, l.Close()) }()
	b.lab = l
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, s := range b.scenarios() {
		if err := b.scenario(ctx, s); err != nil {
			return fmt.Errorf("harness: %s: %w", s.name, err)
		}
	}
	if b.opts.selected("idle") {
		if err := b.idle(ctx); err != nil {
			return fmt.Errorf("harness: idle connections: %w", err)
		}
	}
	if len(b.prof.Micro) > 0 && b.opts.selected("micro") {
		b.progress("micro-benchmarks: go test -bench %s", strings.Join(b.prof.Micro, " "))
		run, err := runMicro(ctx, b.opts.ModuleDir, b.prof.Micro, b.prof.MicroBenchtime, b.prof.Nice)
		b.rep.Micro = run
		if err != nil {
			return fmt.Errorf("harness: micro-benchmarks: %w", err)
		}
	}
	return nil
}

// setup adds the hosts, tunes them, writes the Bulkhead policy and starts
// the servers.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.client, err = b.lab.AddHost("client"); err != nil {
		return err
	}
	if b.server, err = b.lab.AddHost("server"); err != nil {
		return err
	}
	b.dir = filepath.Join(b.lab.Dir(), "bench")
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	// Connection churn needs ports and quick reuse of TIME_WAIT ones, the
	// idle scenario a deep accept queue. The TIME_WAIT sockets of one arm's
	// churn (20,000 connections, each closed first by the proxy's upstream
	// side) must not weigh on the next arm: with tens of thousands of them
	// from earlier arms and rounds, connect() searches a nearly full port
	// range (one Bulkhead round measured 2.7 ms of CPU per connection
	// against 0.15 in the rounds around it), and a TIME_WAIT left on
	// port 15090 by HAProxy's upstream side kept the next proxy from
	// binding its admin port. So at most 16,384 are kept, and ephemeral
	// ports start above every port the harness listens on.
	for _, h := range []*lab.Host{b.client, b.server} {
		if _, err := h.Run(ctx, "sysctl", "-q", "-w",
			"net.ipv4.ip_local_port_range="+strconv.Itoa(ephemeralFrom)+" 65535", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_max_tw_buckets=16384",
			"net.core.somaxconn=65535", "net.ipv4.tcp_max_syn_backlog=65535"); err != nil {
			return fmt.Errorf("harness: sysctl: %w", err)
		}
	}
	b.cache = filepath.Join(b.dir, "proxy-cache")
	if err := writePolicy(b.cache, b.client.Addr(), b.server.Addr()); err != nil {
		return err
	}
	redis, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, "redis-server",
		"--bind", "0.0.0.0", "--port", strconv.Itoa(redisPort), "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--maxclients", strconv.Itoa(b.maxConns), "--dir", b.dir)...)
	if err != nil {
		return err
	}
	iperf, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, "iperf3", "-s", "-p", strconv.Itoa(iperfPort))...)
	if err != nil {
		return err
	}
	waits := []struct {
		p    *lab.Proc
		port int
	}{{redis, redisPort}, {iperf, iperfPort}}
	if b.opts.selected("http") {
		nginx, err := b.startNginx(ctx)
		if err != nil {
			return err
		}
		waits = append(waits, struct {
			p    *lab.Proc
			port int
		}{nginx, httpPort})
		b.progress("building %s", fortioModule)
		if b.fortio, err = buildFortio(ctx, b.dir); err != nil {
			return err
		}
	}
	for _, w := range waits {
		if err := b.waitListen(ctx, w.p, w.port); err != nil {
			return err
		}
	}
	for _, su := range suites {
		if b.opts.selected(su.group) {
			if err := su.setup(ctx, b); err != nil {
				return fmt.Errorf("harness: %s servers: %w", su.group, err)
			}
			b.rep.about = append(b.rep.about, su.about)
		}
	}
	return nil
}

// waitListen waits until something listens on port in the server's
// namespace (ss), failing early when p exits.
func (b *bench) waitListen(ctx context.Context, p *lab.Proc, port int) error {
	ctx, cancel := context.WithTimeout(ctx, waitTime)
	defer cancel()
	for {
		out, err := b.server.Run(ctx, "ss", "-Hltn", "sport = :"+strconv.Itoa(port))
		if err == nil && strings.Contains(string(out), "LISTEN") {
			return nil
		}
		if err := p.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: nothing listens on port %d: %w\n%s", port, ctx.Err(), p.Tail(10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// target is where the client sends a scenario's traffic: the server's
// address; the proxied arms catch it with the redirect.
func (b *bench) target(port int) netip.AddrPort {
	return netip.AddrPortFrom(b.server.Addr(), uint16(port))
}

// pinned is the arguments of nice that run name with args on cpu at the
// profile's nice level: `nice -n <Nice> taskset -c <cpu> name args…`.
func (b *bench) pinned(cpu, name string, args ...string) []string {
	return append([]string{"-n", strconv.Itoa(b.prof.Nice), "taskset", "-c", cpu, name}, args...)
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.opts.Progress, format+"\n", args...)
}

// raiseNoFile lifts this process's open-file limit as far as it may: the
// hard limit to the kernel's ceiling (at most 1 Mi) when the process has
// CAP_SYS_RESOURCE, else the soft limit to the hard one. The child
// processes (servers, proxies) inherit it. It returns the limit in force.
func raiseNoFile() (uint64, error) {
	limit := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < limit {
			limit = n
		}
	}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return 0, fmt.Errorf("harness: getrlimit: %w", err)
	}
	if cur.Cur >= limit && cur.Max >= limit {
		return cur.Cur, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err == nil {
		return limit, nil
	}
	// No CAP_SYS_RESOURCE (a container): the hard limit is what we get.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: cur.Max, Max: cur.Max}); err != nil {
		return 0, fmt.Errorf("harness: raise the open-file limit to %d: %w", cur.Max, err)
	}
	return cur.Max, nil
}

// fdReserve is what a proxy keeps of its open-file limit for everything but
// proxied connections (listeners, admin, logs, the runtime).
const fdReserve = 256

// haproxyPipes is HAProxy's maxpipes: the kernel pipes it may use to
// splice, two descriptors each.
const haproxyPipes = 256

// maxProxied is how many connections a proxy can hold at once under an
// open-file limit: two descriptors each (client and upstream), after the
// reserve and HAProxy's pipes.
func maxProxied(fdLimit uint64) int {
	const fixed = fdReserve + 2*haproxyPipes
	if fdLimit <= fixed+2 {
		return 1
	}
	return min(maxConns, int(fdLimit-fixed)/2)
}

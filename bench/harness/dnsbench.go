package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// The DNS-over-TCP scenario's server, load and policy.
const (
	// dnsPort is unbound's TCP (and UDP) port in the server; the proxies
	// see the TCP side only.
	dnsPort = 53
	// dnsConns is dnsperf's -c: TCP connections, queries pipelined on
	// each (dnsperf keeps up to 100 outstanding in all).
	dnsConns = 16
	// dnsDenied is a name unbound answers too (so a REFUSED is the
	// proxy's) but the policy does not allow.
	dnsDenied = "denied.bench.test"
	// dnsScenario is the scenario's name.
	dnsScenario = "dns A over TCP (dnsperf)"
)

// dnsNames are the names dnsperf asks for (type A) and the only ones the
// Bulkhead policy allows.
var dnsNames = []string{"www.bench.test", "api.bench.test", "db.bench.test", "cache.bench.test"}

// dnsSuite is the "dns" group: unbound answering A queries for a local
// zone over TCP, loaded with dnsperf -m tcp.
var dnsSuite = suite{
	group: "dns",
	ports: []*bulkheadv1.Port{{Port: dnsPort, Protocol: "dns"}},
	rules: func(peers []*bulkheadv1.Peer) []*bulkheadv1.Rule {
		names := make([]*bulkheadv1.Pattern, 0, len(dnsNames))
		for _, n := range dnsNames {
			names = append(names, &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Exact{Exact: n}})
		}
		return []*bulkheadv1.Rule{{
			Name:  "bench/server/from-client-dns-53",
			Peers: peers,
			Ports: []*bulkheadv1.Port{{Port: dnsPort, Protocol: "dns"}},
			L7:    []*bulkheadv1.L7Rule{{Verbs: []string{"A"}, Resources: names}},
		}}
	},
	setup: func(ctx context.Context, b *bench) error { return b.startUnbound(ctx) },
	scenarios: func(b *bench) []scenario {
		return []scenario{{
			name: dnsScenario, slug: "dns-tcp",
			group: "dns", port: dnsPort, unit: "queries/s", cpuUnit: "µs/req", protocol: "dns",
			run: b.dnsperf, check: b.checkDNSPolicy,
		}}
	},
	about: fmt.Sprintf("**DNS over TCP.** unbound (one thread, pinned with the load generator) answers A queries for a local zone `bench.test` on TCP port %d. `dnsperf -m tcp -c %d -T 1 -l <DNSTime>` sends A queries for %d names (one query is one request/response, pipelined on %d connections; dnsperf reports no percentiles, so p50/p99 are empty). Bulkhead's policy allows type `A` for exactly those names (a `dns` rule: verb A, exact names); before each run the harness checks with `dig +tcp` that an allowed name is answered through every arm and that `%s` (which unbound answers too) gets REFUSED with Bulkhead's Extended DNS Error from the Bulkhead arm.", dnsPort, dnsConns, len(dnsNames), dnsConns, dnsDenied),
}

// unboundConfig serves the local zone bench.test on addr, port dnsPort:
// every name of dnsNames and dnsDenied has an A record, addr's.
func unboundConfig(dir, addr string, maxConns int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `server:
    interface: %[2]s
    port: %[3]d
    do-tcp: yes
    num-threads: 1
    incoming-num-tcp: %[4]d
    tcp-idle-timeout: 3600000
    username: ""
    chroot: ""
    directory: "%[1]s"
    pidfile: ""
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 0.0.0.0/0 allow
    local-zone: "bench.test." static
`, dir, addr, dnsPort, maxConns)
	for _, n := range append(dnsNames[:len(dnsNames):len(dnsNames)], dnsDenied) {
		fmt.Fprintf(&b, "    local-data: \"%s. 3600 IN A %s\"\n", n, addr)
	}
	b.WriteString("remote-control:\n    control-enable: no\n")
	return b.String()
}

// startUnbound writes unbound's config and dnsperf's query file under
// b.dir and starts unbound in the server, pinned to the load CPU.
func (b *bench) startUnbound(ctx context.Context) error {
	if b.prof.DNSTime < time.Second {
		return fmt.Errorf("profile %q: DNS time %v, want at least 1s", b.prof.Name, b.prof.DNSTime)
	}
	dir := filepath.Join(b.dir, "unbound")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unbound: %w", err)
	}
	conf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(unboundConfig(dir, b.server.Addr().String(), min(b.maxConns, 4096))), 0o644); err != nil {
		return fmt.Errorf("unbound: %w", err)
	}
	var q strings.Builder
	for _, n := range dnsNames {
		q.WriteString(n + " A\n")
	}
	if err := os.WriteFile(b.dnsQueries(), []byte(q.String()), 0o644); err != nil {
		return fmt.Errorf("dnsperf queries: %w", err)
	}
	p, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, "unbound", "-d", "-c", conf)...)
	if err != nil {
		return err
	}
	return b.waitListen(ctx, p, dnsPort)
}

func (b *bench) dnsQueries() string { return filepath.Join(b.dir, "unbound", "queries.txt") }

// dnsperf runs dnsperf over TCP for the profile's DNSTime.
func (b *bench) dnsperf(ctx context.Context) (result, error) {
	out, err := b.tool(ctx, "dnsperf", "-m", "tcp", "-s", b.server.Addr().String(), "-p", strconv.Itoa(dnsPort),
		"-d", b.dnsQueries(), "-c", strconv.Itoa(dnsConns), "-T", "1", "-l", strconv.Itoa(int(b.prof.DNSTime/time.Second)))
	if err != nil {
		return result{}, err
	}
	return parseDNSPerf(out)
}

// dig asks the server for name's A record over TCP from the client
// (through the redirect when a proxy is on) and returns dig's output.
func (b *bench) dig(ctx context.Context, name string) (string, error) {
	out, err := b.client.Run(ctx, "dig", "+tcp", "+tries=1", "+time=5", "@"+b.server.Addr().String(),
		"-p", strconv.Itoa(dnsPort), name, "A")
	return string(out), err
}

// checkDNSPolicy proves an arm answers an allowed name (NOERROR, the
// server's address) and, on Bulkhead, that the proxy refuses dnsDenied
// (REFUSED with its Extended DNS Error; unbound would answer it).
func (b *bench) checkDNSPolicy(ctx context.Context, arm Arm) error {
	out, err := b.dig(ctx, dnsNames[0])
	if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "\t"+b.server.Addr().String()) {
		return fmt.Errorf("dig %s through %s: %v: want NOERROR and %s:\n%s", dnsNames[0], arm, err, b.server.Addr(), clip([]byte(out)))
	}
	if arm != Bulkhead {
		return nil
	}
	out, err = b.dig(ctx, dnsDenied)
	if err != nil || !strings.Contains(out, "status: REFUSED") || !strings.Contains(out, "bulkhead") {
		return fmt.Errorf("dig %s through %s: %v: want REFUSED by the proxy:\n%s", dnsDenied, arm, err, clip([]byte(out)))
	}
	return nil
}

var (
	dnsperfCompleted = regexp.MustCompile(`(?m)^\s*Queries completed:\s*(\d+)`)
	dnsperfLost      = regexp.MustCompile(`(?m)^\s*Queries lost:\s*(\d+)`)
	dnsperfRate      = regexp.MustCompile(`(?m)^\s*Queries per second:\s*([0-9.]+)`)
	dnsperfRunTime   = regexp.MustCompile(`(?m)^\s*Run time \(s\):\s*([0-9.]+)`)
	dnsperfCodes     = regexp.MustCompile(`(?m)^\s*Response codes:\s*(.*)$`)
)

// parseDNSPerf reads dnsperf's statistics: queries completed (Ops, each
// one query the proxy judged), queries per second and the run time. A lost
// query, or any response code but NOERROR, fails the run. dnsperf reports
// an average latency only, so P50 and P99 stay zero.
func parseDNSPerf(out []byte) (result, error) {
	s := string(out)
	c, q, t, codes := dnsperfCompleted.FindStringSubmatch(s), dnsperfRate.FindStringSubmatch(s), dnsperfRunTime.FindStringSubmatch(s), dnsperfCodes.FindStringSubmatch(s)
	if c == nil || q == nil || t == nil || codes == nil {
		return result{}, fmt.Errorf("dnsperf: no statistics in %q", clip(out))
	}
	if l := dnsperfLost.FindStringSubmatch(s); l == nil || l[1] != "0" {
		return result{}, fmt.Errorf("dnsperf: queries lost: %q", clip(out))
	}
	if !strings.HasPrefix(codes[1], "NOERROR ") || strings.Contains(codes[1], ",") {
		return result{}, fmt.Errorf("dnsperf: response codes %s, want NOERROR only", strings.TrimSpace(codes[1]))
	}
	n, err1 := strconv.ParseFloat(c[1], 64)
	rate, err2 := strconv.ParseFloat(q[1], 64)
	secs, err3 := strconv.ParseFloat(t[1], 64)
	if err1 != nil || err2 != nil || err3 != nil || n <= 0 || rate <= 0 || secs <= 0 {
		return result{}, fmt.Errorf("dnsperf: %s queries at %s/s in %s s", c[1], q[1], t[1])
	}
	return result{Throughput: rate, Ops: n, Elapsed: time.Duration(secs * float64(time.Second))}, nil
}

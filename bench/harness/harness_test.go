package harness

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (bulk (head) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 5 0 9999 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 287*clockTick {
		t.Errorf("parseStatCPU = %v, %v; want %v", got, err, 287*clockTick)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 12 13"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
	// Our own process: readable and counting.
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS(strings.NewReader("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads: 3\n"))
	if err != nil || got != 1536<<10 {
		t.Errorf("parseStatusRSS = %d, %v", got, err)
	}
	for _, bad := range []string{"Name: x\n", "VmRSS: 12 MB\n", "VmRSS: x kB\n"} {
		if _, err := parseStatusRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("parseStatusRSS(%q) accepted", bad)
		}
	}
	if n, err := procRSS(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("procRSS(self) = %d, %v", n, err)
	}
}

// benchCSV is redis-benchmark 7.0's --csv output, with the warning it
// prints when keep-alive is off.
const benchCSV = `WARNING: Keepalive disabled. You probably need 'echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse'
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","512820.50","1.294","0.200","0.823","4.639","5.063","5.407"
"GET","270270.28","2.611","0.104","0.783","2.231","46.527","46.879"
`

func TestParseRedisBenchmarkCSV(t *testing.T) {
	got, err := parseRedisBenchmarkCSV([]byte(benchCSV), "GET", 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := result{Throughput: 270270.28, P50: 783 * time.Microsecond, P99: 46527 * time.Microsecond, Ops: 1000,
		Elapsed: elapsed(1000, 270270.28)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct{ out, test, err string }{
		"no such test": {benchCSV, "LPUSH", "no row for LPUSH"},
		"no rows":      {`"test","rps","p50_latency_ms","p99_latency_ms"` + "\n", "GET", "no result rows"},
		"bad rps":      {`"test","rps","p50_latency_ms","p99_latency_ms"` + "\n" + `"GET","fast","1","2"` + "\n", "GET", "rps"},
		"no column":    {`"test","rps"` + "\n" + `"GET","1"` + "\n", "GET", `no column "p50_latency_ms"`},
		"error output": {"Could not connect to Redis at 198.18.50.3:6379: Connection refused\n", "GET", "no result rows"},
	} {
		if _, err := parseRedisBenchmarkCSV([]byte(tc.out), tc.test, 1); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

func elapsed(n, rps float64) time.Duration { return time.Duration(n / rps * float64(time.Second)) }

func TestParseIperf3JSON(t *testing.T) {
	out := `{"start":{},"intervals":[],"end":{"sum_sent":{"bytes":2000000000},"sum_received":{"start":0,"end":2,"seconds":2,"bytes":1500000000,"bits_per_second":6000000000,"sender":true}}}`
	got, err := parseIperf3JSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if want := (result{Throughput: 6, Ops: 1.5, Elapsed: 2 * time.Second}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for name, tc := range map[string]struct{ out, err string }{
		"error":   {`{"start":{},"error":"unable to connect to server: Connection refused"}`, "unable to connect"},
		"nothing": {`{"end":{"sum_received":{"seconds":1,"bytes":0,"bits_per_second":0}}}`, "nothing received"},
		"garbage": {`iperf3: error`, "iperf3 json"},
	} {
		if _, err := parseIperf3JSON([]byte(tc.out)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

func TestParseMicro(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/bulkhead-io/bulkhead/protocols/redis
cpu: Some CPU @ 2.0GHz
BenchmarkParseRequest/get         	15360519	        77.94 ns/op	 410.57 MB/s	       0 B/op	       0 allocs/op
BenchmarkParseRequest/pipeline    	  600000	      1982 ns/op	 238.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkParseRequest/pipeline-16 	  600000	      1600 ns/op	 238.00 MB/s	       100.0 ns/msg	       0 B/op	       0 allocs/op
BenchmarkParseReply/recorded      	   46138	      7508 ns/op	 246.53 MB/s	       312.8 ns/msg	       0 B/op	       0 allocs/op
BenchmarkParseReply/100-answers   	   80311	      4574 ns/op	 355.95 MB/s	      4574 ns/msg	       0 B/op	       0 allocs/op
BenchmarkDeny-2                   	 5000000	       240.0 ns/op	       0 B/op	       0 allocs/op
PASS
ok  	github.com/bulkhead-io/bulkhead/protocols/redis	3.1s
# github.com/bulkhead-io/bulkhead/dataplane/proxy [github.com/bulkhead-io/bulkhead/dataplane/proxy.test]
dataplane/proxy/session.go:12:2: undefined: x
FAIL	github.com/bulkhead-io/bulkhead/dataplane/proxy [build failed]
pkg: github.com/bulkhead-io/bulkhead/dataplane/enforce
BenchmarkMessage/allowed 	30000000	        41.5 ns/op	       0 B/op	       0 allocs/op
--- FAIL: BenchmarkCompile
    bench_test.go:70: boom
BenchmarkConnect 	30000000	        50 ns/op	       8 B/op	       1 allocs/op
FAIL
FAIL	github.com/bulkhead-io/bulkhead/dataplane/enforce	2.0s
`
	run := parseMicro([]byte(out), 2)
	want := []MicroResult{
		{Package: "protocols/redis", Name: "ParseRequest/get", NsPerOp: 77.94, MBPerSec: 410.57, PerMessage: true},
		{Package: "protocols/redis", Name: "ParseRequest/pipeline", NsPerOp: 1982, MBPerSec: 238}, // many messages per op
		{Package: "protocols/redis", Name: "ParseRequest/pipeline-16", NsPerOp: 1600, NsPerMsg: 100, MBPerSec: 238, PerMessage: true},
		{Package: "protocols/redis", Name: "ParseReply/recorded", NsPerOp: 7508, NsPerMsg: 312.8, MBPerSec: 246.53, PerMessage: true},
		{Package: "protocols/redis", Name: "ParseReply/100-answers", NsPerOp: 4574, NsPerMsg: 4574, MBPerSec: 355.95}, // untypical
		{Package: "protocols/redis", Name: "Deny", NsPerOp: 240},
		{Package: "dataplane/enforce", Name: "Message/allowed", NsPerOp: 41.5, PerMessage: true},
		{Package: "dataplane/enforce", Name: "Connect", NsPerOp: 50, BytesPerOp: 8, AllocsPerOp: 1},
	}
	if diff := cmp.Diff(want, run.Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	wantFail := []string{"dataplane/proxy: build failed", "dataplane/enforce: BenchmarkCompile", "dataplane/enforce: failed"}
	if diff := cmp.Diff(wantFail, run.Failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}

func TestParseMessageCounts(t *testing.T) {
	text := `# HELP bulkhead_proxy_messages_total Messages judged.
# TYPE bulkhead_proxy_messages_total counter
bulkhead_proxy_messages_total{protocol="redis",verdict="allow"} 1.234567e+06
bulkhead_proxy_messages_total{protocol="redis",verdict="deny"} 2
bulkhead_proxy_messages_total{protocol="redis",verdict="violation"} 5
bulkhead_proxy_messages_total{protocol="tls",verdict="allow"} 7
bulkhead_proxy_messages_total_other{protocol="redis",verdict="allow"} 9
`
	allow, deny := parseMessageCounts(text, "redis")
	if allow != 1234567 || deny != 2 {
		t.Errorf("allow %v, deny %v; want 1234567, 2", allow, deny)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !cmp.Equal(in, tc.in) {
			t.Errorf("median reordered its input: %v", tc.in)
		}
	}
}

func TestMaxProxied(t *testing.T) {
	for fds, want := range map[uint64]int{20000: 9616, 1 << 20: maxConns, 100: 1} {
		if got := maxProxied(fds); got != want {
			t.Errorf("maxProxied(%d) = %d, want %d", fds, got, want)
		}
	}
}

// TestBenchPolicy: the policy the harness writes is one the proxy compiles
// and restores, in protect mode, allowing exactly the benchmark's traffic.
func TestBenchPolicy(t *testing.T) {
	dir := t.TempDir()
	client, server := netip.MustParseAddr("198.18.50.2"), netip.MustParseAddr("198.18.50.3")
	if err := writePolicy(dir, client, server); err != nil {
		t.Fatal(err)
	}
	p, ids, err := xdsclient.LoadCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetMode() != bulkheadv1.Mode_MODE_PROTECT || len(ids) != 2 {
		t.Fatalf("cached policy mode %v with %d identities", p.GetMode(), len(ids))
	}
	pol, err := enforce.Compile(p, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  netip.Addr
		port uint16
		want enforce.Verdict
	}{
		{client, redisPort, enforce.Allow},
		{client, iperfPort, enforce.Allow},
		{client, 22, enforce.Deny},
		{netip.MustParseAddr("198.18.50.9"), redisPort, enforce.Deny},
	} {
		c := pol.Inbound(tc.src, tc.port)
		if d := c.Connect(); d.Verdict != tc.want || !d.Enforced && tc.want == enforce.Deny {
			t.Errorf("connect from %v to %d: %+v, want %v", tc.src, tc.port, d, tc.want)
		}
	}
	if got := pol.Protocol(iperfPort); got != "tcp" {
		t.Errorf("port %d protocol %q, want tcp (spliced)", iperfPort, got)
	}
	if got := pol.Protocol(httpPort); got != "http" {
		t.Errorf("port %d protocol %q, want http (parsed)", httpPort, got)
	}
}

// TestHAProxyConfig: haproxy itself accepts the configuration.
func TestHAProxyConfig(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not installed (apt-get install haproxy)")
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(netip.MustParseAddrPort("198.18.50.3:6379"), 9000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// TestMarkdownAndTargets renders a made-up report and judges its targets.
func TestMarkdownAndTargets(t *testing.T) {
	rows := func(sc, unit, cpuUnit string, direct, haproxy, bulkhead float64, cpu float64) []Row {
		mk := func(arm Arm, tp float64) Row {
			s := Sample{Throughput: tp, P50: time.Millisecond, P99: 2 * time.Millisecond}
			if arm != Direct {
				s.CPU, s.CPUPerOp, s.RSS = time.Second, cpu, 20<<20
			}
			return Row{Scenario: sc, Unit: unit, CPUUnit: cpuUnit, Arm: arm, Samples: []Sample{s, s, s}}
		}
		return []Row{mk(Direct, direct), mk(HAProxy, haproxy), mk(Bulkhead, bulkhead)}
	}
	rep := &Report{Commit: "abc123", Date: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), Profile: Full()}
	rep.Rows = append(rep.Rows, rows("redis GET -P 1", "req/s", "µs/req", 100_000, 80_000, 72_000, 12e-6)...)
	rep.Rows = append(rep.Rows, rows("redis GET -P 16", "req/s", "µs/req", 900_000, 500_000, 390_000, 3e-6)...)
	rep.Rows = append(rep.Rows, rows("TCP bulk, L4 rule (iperf3)", "Gbit/s", "s/GB", 20, 10, 9.5, 0.2)...)
	rep.Idle = []IdleRow{{Arm: Bulkhead, Points: []IdlePoint{{Conns: 0, RSS: 10 << 20, GoHeap: 1 << 20, GoStack: 1 << 20, Goroutines: 10}, {Conns: 1000, RSS: 20 << 20, GoHeap: 5 << 20, GoStack: 9 << 20, Goroutines: 2010}}}}
	rep.Micro = &MicroRun{Command: "go test", Results: []MicroResult{
		{Package: "protocols/redis", Name: "ParseRequest/get", NsPerOp: 80, PerMessage: true},
		{Package: "dataplane/enforce", Name: "Message/allowed", NsPerOp: 140, PerMessage: true},
		{Package: "protocols/redis", Name: "ParseRequest/pipeline-16", NsPerOp: 1440, NsPerMsg: 90, PerMessage: true},
		{Package: "protocols/dns", Name: "ParseReply/recorded", NsPerOp: 2400, NsPerMsg: 120, PerMessage: true},
	}}
	got := map[string]string{}
	for _, tg := range rep.Targets() {
		got[tg.What] = tg.Measured + " → " + tg.Met
	}
	want := map[string]string{
		"Redis GET -P 1: Bulkhead ≥ 0.9 × HAProxy":                    "0.90 × → yes",
		"Redis GET -P 16: Bulkhead ≥ 0.8 × HAProxy":                   "0.78 × → no",
		"HTTP at a fixed rate: ≤ 30 µs added at p50, ≤ 100 µs at p99": "not measured (HTTP scenario not run) → —",
		"Proxy CPU ≤ 20 µs per request/response: redis GET -P 1":      "12.0 µs → yes",
		"Proxy CPU ≤ 20 µs per request/response: redis GET -P 16":     "3.0 µs → yes",
		"TCP bulk through an L4 rule: ≥ 0.9 × HAProxy":                "0.95 × → yes",
		"Memory: ≤ 20 MB resident at start":                           "10.0 MiB (10.5 MB) → yes",
		"Memory: ≤ 16 KB per idle connection":                         "10.2 KiB (10.5 KB) → yes",
		"Parsers and verdict: ≤ 100 ns per message, 0 allocs/op":      "2 of 4 within; over: dataplane/enforce Message/allowed 140 ns, 0 allocs; protocols/dns ParseReply/recorded 120 ns, 0 allocs → no",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	md := string(rep.Markdown())
	for _, line := range []string{
		"commit `abc123`, profile **full**",
		"| redis GET -P 1 | Bulkhead | 72,000 req/s | 1.000 ms | 2.000 ms | 12.00 µs/req | 20.0 MiB | 0.72 × | 0.90 × |",
		"| TCP bulk, L4 rule (iperf3) | HAProxy | 10.0 Gbit/s | 1.000 ms | 2.000 ms | 0.200 s/GB | 20.0 MiB |  |  |",
		"| Bulkhead | 10.0 MiB | 20.0 MiB | 10.2 KiB |",
		"| per connection | 10.2 KiB | 4.1 KiB | 8.2 KiB | 2.0 |",
		"| dataplane/enforce | Message/allowed | 140.0 | — | — | 0 | 0 | ✗ |",
		"| protocols/redis | ParseRequest/pipeline-16 | 1440.0 | 90.0 | — | 0 | 0 | ✓ |",
		"## HTTP/1.1\n\nNot run.",
		"Bulkhead ÷ HAProxy: redis GET -P 1 1.00 ×; redis GET -P 16 1.00 ×; TCP bulk, L4 rule (iperf3) 1.00 ×.",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("report lacks %q:\n%s", line, md)
		}
	}
}

func TestParsePerfStat(t *testing.T) {
	out := "# started on Fri Nov 27 20:53:36 2026\n\n1234567,,raw_syscalls:sys_enter,1000,100.00,,\n4321,,context-switches,1000,100.00,1.2,K/sec\n"
	sys, sw, ok := parsePerfStat(strings.NewReader(out))
	if !ok || sys != 1234567 || sw != 4321 {
		t.Errorf("parsePerfStat = %v, %v, %v", sys, sw, ok)
	}
	if _, _, ok := parsePerfStat(strings.NewReader("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n<not counted>,,context-switches,0,100.00,,\n")); ok {
		t.Error("nothing counted, yet ok")
	}
	var pc *perfCounter // perf missing: nothing counted, no panic
	if _, _, ok := pc.stop(t.Context()); ok {
		t.Error("a nil counter counted")
	}
}

// TestHAProxyHTTPConfig: haproxy accepts the HTTP-mode configuration and
// its ACLs.
func TestHAProxyHTTPConfig(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not installed (apt-get install haproxy)")
	}
	conf := haproxyHTTPConfig(netip.MustParseAddrPort("198.18.50.3:8080"), 9000)
	for _, want := range []string{"mode http", "acl bench_path path /bench", "deny_status 403 unless bench_get bench_path"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// TestNginxConfig: nginx accepts the configuration (nginx -t).
func TestNginxConfig(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatal("nginx not installed (apt-get install nginx-light)")
	}
	dir := t.TempDir()
	for _, d := range []string{"www", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

const wrkOut = `Running 1s test @ http://198.18.52.3:8080/bench
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   443.21us  100.12us   2.01ms   80.00%
    Req/Sec    36.90k     1.20k   38.00k    90.00%
  Latency Distribution
     50%  443.00us
     75%  500.00us
     90%  560.00us
     99%    1.68ms
  36710 requests in 1.00s, 41.23MB read
Requests/sec:  36710.12
Transfer/sec:     41.20MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk([]byte(wrkOut))
	if err != nil {
		t.Fatal(err)
	}
	want := result{Throughput: 36710.12, P50: 443 * time.Microsecond, P90: 560 * time.Microsecond, P99: 1680 * time.Microsecond, Ops: 36710, Elapsed: time.Second}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for name, tc := range map[string]struct{ out, err string }{
		"non-2xx":      {strings.Replace(wrkOut, "Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec", 1), "Non-2xx or 3xx responses: 12"},
		"socket":       {strings.Replace(wrkOut, "Requests/sec", "  Socket errors: connect 16, read 0, write 0, timeout 0\nRequests/sec", 1), "Socket errors"},
		"no totals":    {"unable to connect to 198.18.52.3:8080 Connection refused\n", "no totals"},
		"no --latency": {strings.Replace(wrkOut, "     50%  443.00us\n", "", 1), "no latency distribution"},
	} {
		if _, err := parseWrk([]byte(tc.out)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

// fortioJSON is the part of fortio 1.66's -json result the harness reads.
const fortioJSON = `{"RunType":"HTTP","ActualQPS":1998.5,"ActualDuration":1000670146,
"DurationHistogram":{"Count":2000,"Min":0.0002,"Max":0.003,"Percentiles":[{"Percentile":50,"Value":0.000504},{"Percentile":90,"Value":0.0007},{"Percentile":99,"Value":0.000958}]},
"RetCodes":{"200":2000}}`

func TestParseFortioJSON(t *testing.T) {
	got, err := parseFortioJSON([]byte(fortioJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := result{Throughput: 1998.5, P50: 504 * time.Microsecond, P90: 700 * time.Microsecond, P99: 958 * time.Microsecond, Ops: 2000, Elapsed: 1000670146}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for name, tc := range map[string]struct{ out, err string }{
		"403s":    {strings.Replace(fortioJSON, `{"200":2000}`, `{"200":1990,"403":10}`, 1), "want every one 200"},
		"errors":  {strings.Replace(fortioJSON, `{"200":2000}`, `{"-1":2000}`, 1), "want every one 200"},
		"no p90":  {strings.Replace(fortioJSON, `{"Percentile":90,"Value":0.0007},`, "", 1), "percentiles"},
		"garbage": {"Aborting because of lookup", "fortio json"},
	} {
		if _, err := parseFortioJSON([]byte(tc.out)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

// TestHTTPTargets: the added latency is Bulkhead's median percentile minus
// direct's, judged against 30 µs at p50 and 100 µs at p99.
func TestHTTPTargets(t *testing.T) {
	mk := func(arm Arm, p50, p99 time.Duration) Row {
		return Row{Scenario: httpRateScenario, Unit: "req/s", CPUUnit: "µs/req", Arm: arm,
			Samples: []Sample{{Throughput: 5000, P50: p50, P90: (p50 + p99) / 2, P99: p99, CPUPerOp: 15e-6}}}
	}
	for _, tc := range []struct {
		p50, p99 time.Duration
		want     string
	}{
		{p50: 320 * time.Microsecond, p99: 590 * time.Microsecond, want: "20 µs at p50, 90 µs at p99 → yes"},
		{p50: 340 * time.Microsecond, p99: 590 * time.Microsecond, want: "40 µs at p50, 90 µs at p99 → no"},
		{p50: 320 * time.Microsecond, p99: 700 * time.Microsecond, want: "20 µs at p50, 200 µs at p99 → no"},
	} {
		rep := &Report{Profile: Full(), Rows: []Row{
			mk(Direct, 300*time.Microsecond, 500*time.Microsecond),
			mk(HAProxy, 310*time.Microsecond, 550*time.Microsecond),
			mk(Bulkhead, tc.p50, tc.p99),
		}}
		var got string
		for _, tg := range rep.Targets() {
			if strings.HasPrefix(tg.What, "HTTP at a fixed rate") {
				got = tg.Measured + " → " + tg.Met
			}
		}
		if got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		md := string(rep.Markdown())
		if want := "| direct | 5,000 req/s | 300 µs | 400 µs | 500 µs | — | — | — | — |"; !strings.Contains(md, want) {
			t.Errorf("HTTP section lacks %q:\n%s", want, md)
		}
	}
}

func TestScenarioGroups(t *testing.T) {
	o := Options{BinDir: "bin", ModuleDir: ".", Scenarios: []string{"http", "idle"}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if !o.selected("http") || o.selected("redis") || o.selected("micro") {
		t.Errorf("selected: http %v, redis %v, micro %v", o.selected("http"), o.selected("redis"), o.selected("micro"))
	}
	b := &bench{opts: o, prof: o.Profile}
	var names []string
	for _, s := range b.scenarios() {
		names = append(names, s.name)
	}
	if diff := cmp.Diff([]string{httpMaxScenario, httpRateScenario}, names); diff != "" {
		t.Errorf("scenarios (-want +got):\n%s", diff)
	}
	bad := Options{BinDir: "bin", ModuleDir: ".", Scenarios: []string{"htp"}}
	if err := bad.defaults(); err == nil || !strings.Contains(err.Error(), `"htp"`) {
		t.Errorf("unknown group: %v", err)
	}
}

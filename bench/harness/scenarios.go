package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scenario is one load: a tool run in the client against a server port.
type scenario struct {
	name string // "redis GET -P 1"
	slug string // file name of its profile
	// group is what Options.Scenarios selects by: redis, churn, bulk, http.
	group string
	port  int
	// unit of Throughput; cpuUnit says what Ops counts.
	unit, cpuUnit string
	// protocol: the run's messages must all have been allowed by
	// Bulkhead and counted under this protocol ("redis", "http"); empty
	// for an L4-only scenario.
	protocol string
	// requests the tool is told to make (redis), for the allow check;
	// zero: the requests the tool reports (result.Ops).
	requests int
	run      func(ctx context.Context) (result, error)
	// check, when set, runs before each load with the arm about to be
	// measured: that the traffic passes, and for the proxies that what
	// the policy does not allow is refused.
	check func(ctx context.Context, arm Arm) error
}

func (b *bench) scenarios() []scenario {
	var ss []scenario
	for _, pipe := range []int{1, 16} {
		n := b.prof.RedisRequests
		if pipe > 1 {
			n = b.prof.RedisPipelined
		}
		for _, test := range []string{"SET", "GET"} {
			ss = append(ss, scenario{
				name: fmt.Sprintf("redis %s -P %d", test, pipe), slug: fmt.Sprintf("redis-%s-P%d", strings.ToLower(test), pipe),
				group: "redis", port: redisPort, unit: "req/s", cpuUnit: "µs/req", protocol: "redis", requests: n,
				run: b.redisBenchmark(test, pipe, n, true),
			})
		}
	}
	ss = append(ss, scenario{
		name: "connection churn (redis GET -k 0)", slug: "churn",
		group: "churn", port: redisPort, unit: "conn/s", cpuUnit: "µs/conn", protocol: "redis", requests: b.prof.ChurnRequests,
		run: b.redisBenchmark("GET", 1, b.prof.ChurnRequests, false),
	})
	ss = append(ss, scenario{
		name: "TCP bulk, L4 rule (iperf3)", slug: "tcp-bulk",
		group: "bulk", port: iperfPort, unit: "Gbit/s", cpuUnit: "s/GB",
		run: b.iperf3,
	})
	// wrk first: fortio's fixed rate is half of what Bulkhead reaches.
	ss = append(ss, scenario{
		name: httpMaxScenario, slug: "http-wrk",
		group: "http", port: httpPort, unit: "req/s", cpuUnit: "µs/req", protocol: "http",
		run: b.wrk,
	}, scenario{
		name: httpRateScenario, slug: "http-fortio",
		group: "http", port: httpPort, unit: "req/s", cpuUnit: "µs/req", protocol: "http",
		run: b.fortioLoad,
	})
	for _, su := range suites {
		if b.opts.selected(su.group) {
			ss = append(ss, su.scenarios(b)...)
		}
	}
	return slices.DeleteFunc(ss, func(s scenario) bool { return !b.opts.selected(s.group) })
}

// The HTTP/1.1 scenarios' names.
const (
	httpMaxScenario  = "http GET 1 KiB, max (wrk)"
	httpRateScenario = "http GET 1 KiB, fixed rate (fortio)"
)

// redisBenchmark runs redis-benchmark -t test -c 50 -P pipe -n n in the
// client, pinned to the load CPU; keepAlive false is -k 0 (a new connection
// per request).
func (b *bench) redisBenchmark(test string, pipe, n int, keepAlive bool) func(context.Context) (result, error) {
	return func(ctx context.Context) (result, error) {
		ka := "1"
		if !keepAlive {
			ka = "0"
		}
		addr := b.target(redisPort)
		out, err := b.tool(ctx, "redis-benchmark", "-h", addr.Addr().String(), "-p", strconv.Itoa(redisPort),
			"-t", strings.ToLower(test), "-c", "50", "-P", strconv.Itoa(pipe), "-n", strconv.Itoa(n),
			"-k", ka, "--csv")
		if err != nil {
			return result{}, err
		}
		return parseRedisBenchmarkCSV(out, test, n)
	}
}

func (b *bench) iperf3(ctx context.Context) (result, error) {
	out, err := b.tool(ctx, "iperf3", "-c", b.server.Addr().String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(int(b.prof.BulkTime/time.Second)), "-J")
	if err != nil {
		return result{}, err
	}
	return parseIperf3JSON(out)
}

// tool runs a load tool in the client pinned to the load CPU and returns
// its output (stdout; stderr goes into the error of a failed run).
func (b *bench) tool(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolLimit)
	defer cancel()
	cmd := b.client.Command(ctx, "nice", b.pinned(loadCPU, name, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s%s", name, strings.Join(args, " "), err, clip([]byte(stderr.String())), clip(out))
	}
	return out, nil
}

// scenario runs every arm of s for the profile's rounds, interleaved.
func (b *bench) scenario(ctx context.Context, s scenario) error {
	samples := map[Arm][]Sample{}
	for round := range b.prof.Rounds {
		for _, arm := range Arms {
			sm, err := b.measure(ctx, s, arm, round)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", arm, round+1, err)
			}
			samples[arm] = append(samples[arm], sm)
			b.progress("%-36s %-8s round %d: %s", s.name, arm, round+1, sm.describe(s.unit, s.cpuUnit))
		}
	}
	for _, arm := range Arms {
		b.rep.Rows = append(b.rep.Rows, Row{
			Scenario: s.name, Unit: s.unit, CPUUnit: s.cpuUnit, Arm: arm, Samples: samples[arm],
		})
	}
	return nil
}

// measure runs s once through arm.
func (b *bench) measure(ctx context.Context, s scenario, arm Arm, round int) (_ Sample, err error) {
	r, err := b.startArm(ctx, arm, s.port)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, r.stop()) }()
	pid := r.pid()
	var allow0, deny0 float64
	if s.protocol == "http" {
		if err := b.checkHTTPPolicy(ctx, arm); err != nil {
			return Sample{}, err
		}
	}
	if s.check != nil {
		if err := s.check(ctx, arm); err != nil {
			return Sample{}, err
		}
	}
	if arm == Bulkhead && s.protocol != "" {
		if s.protocol == "redis" {
			if err := b.checkRedisPolicy(ctx); err != nil {
				return Sample{}, err
			}
		}
		if allow0, deny0, err = b.messageCounts(ctx, s.protocol); err != nil {
			return Sample{}, err
		}
	}
	// The first round is the instrumented one: system calls and context
	// switches counted by perf (both proxies), and the CPU profile of
	// Bulkhead. Both cost the proxy a little CPU; the medians of three
	// rounds shrug that off.
	var pc *perfCounter
	if pid != 0 && round == 0 {
		pc = startPerf(b.dir, pid)
	}
	var cpu0 time.Duration
	if pid != 0 {
		if cpu0, err = procCPU(pid); err != nil {
			_, _, _ = pc.stop(ctx)
			return Sample{}, err
		}
	}
	var profDone chan error
	if arm == Bulkhead && round == 0 && b.opts.PprofDir != "" {
		profDone = make(chan error, 1)
		go func() { profDone <- b.profile(ctx, s.slug) }()
	}
	res, err := s.run(ctx)
	sys, sw, counted := pc.stop(ctx)
	if profDone != nil {
		err = errors.Join(err, <-profDone)
	}
	if err != nil {
		return Sample{}, err
	}
	sm := Sample{Throughput: res.Throughput, P50: res.P50, P90: res.P90, P99: res.P99, Elapsed: res.Elapsed}
	if pid != 0 {
		cpu1, err := procCPU(pid)
		if err != nil {
			return Sample{}, err
		}
		sm.CPU = cpu1 - cpu0
		sm.CPUPerOp = sm.CPU.Seconds() / res.Ops
		if counted {
			sm.Counted, sm.SyscallsPerOp, sm.SwitchesPerOp = true, sys/res.Ops, sw/res.Ops
		}
		if sm.RSS, err = procRSS(pid); err != nil {
			return Sample{}, err
		}
	}
	if arm == Bulkhead && s.protocol != "" {
		allow1, deny1, err := b.messageCounts(ctx, s.protocol)
		if err != nil {
			return Sample{}, err
		}
		// Every request was parsed, judged and allowed; the run's CONFIG
		// GETs (redis-benchmark asks for the server's config) were denied.
		want := float64(s.requests)
		if want == 0 {
			want = res.Ops
		}
		if got := allow1 - allow0; got < want {
			return Sample{}, fmt.Errorf("the proxy allowed %.0f %s messages during a run of %.0f requests: not every request was parsed and judged", got, s.protocol, want)
		}
		sm.Denied = deny1 - deny0
	}
	return sm, nil
}

// profile saves a CPU profile of the Bulkhead proxy, taken while the load
// runs, as <PprofDir>/<slug>.pprof.
func (b *bench) profile(ctx context.Context, slug string) error {
	secs := max(1, int(b.prof.ProfileTime/time.Second))
	return b.saveProfile(ctx, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), slug)
}

// saveProfile fetches a profile from the Bulkhead proxy's admin port and
// saves it as <PprofDir>/<name>.pprof.
func (b *bench) saveProfile(ctx context.Context, path, name string) error {
	code, body, err := httpGet(ctx, b.adminURL(path))
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	if code != 200 {
		return fmt.Errorf("profile %s: status %d: %s", path, code, clip(body))
	}
	if err := os.MkdirAll(b.opts.PprofDir, 0o755); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return os.WriteFile(filepath.Join(b.opts.PprofDir, name+".pprof"), body, 0o644)
}

// idle measures the proxies' resident memory with 0, 1,000 and 10,000 idle
// client connections (profile's IdleConns), each of which sent one GET and
// read its reply, as a pooled client connection does. The harness holds
// them itself: no standard load tool opens connections and leaves them
// idle. Direct has no proxy to measure.
func (b *bench) idle(ctx context.Context) error {
	for _, arm := range []Arm{HAProxy, Bulkhead} {
		row, err := b.idleArm(ctx, arm)
		if err != nil {
			return fmt.Errorf("%s: %w", arm, err)
		}
		b.rep.Idle = append(b.rep.Idle, row)
	}
	return nil
}

func (b *bench) idleArm(ctx context.Context, arm Arm) (_ IdleRow, err error) {
	r, err := b.startArm(ctx, arm, redisPort)
	if err != nil {
		return IdleRow{}, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		err = errors.Join(err, r.stop())
	}()
	row := IdleRow{Arm: arm}
	addr := b.target(redisPort).String()
	for _, n := range b.prof.IdleConns {
		err := b.client.Do(func() error {
			for len(conns) < n {
				c, err := openIdle(ctx, addr)
				if err != nil {
					return fmt.Errorf("connection %d: %w", len(conns)+1, err)
				}
				conns = append(conns, c)
			}
			return nil
		})
		if err != nil {
			return row, err
		}
		waited, ok, err := b.settle(ctx, r.pid())
		if err != nil {
			return row, err
		}
		if err := r.proc.Err(); err != nil {
			return row, err
		}
		rss, err := procRSS(r.pid())
		if err != nil {
			return row, err
		}
		pt := IdlePoint{Conns: n, RSS: rss, Settle: waited, Settled: ok}
		if arm == Bulkhead {
			heap, stack, gs, err := b.goRuntime(ctx)
			if err != nil {
				return row, err
			}
			pt.GoHeap, pt.GoStack, pt.Goroutines = int64(heap), int64(stack), int(gs)
		}
		row.Points = append(row.Points, pt)
		b.progress("%-36s %-8s %6d connections: RSS %s", "idle connections", arm, n, mib(rss))
	}
	if arm == Bulkhead && b.opts.PprofDir != "" {
		if err := b.saveProfile(ctx, "/debug/pprof/heap", "idle-heap"); err != nil {
			return row, err
		}
	}
	return row, nil
}

// openIdle connects to addr, sends GET and reads the reply (a null or a
// bulk string).
func openIdle(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "*2\r\n$3\r\nGET\r\n$10\r\nbench:idle\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("GET: %w", err)
	}
	if !strings.HasPrefix(line, "$") {
		c.Close()
		return nil, fmt.Errorf("GET answered %q", strings.TrimSpace(line))
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

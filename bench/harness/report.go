package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Report is what a run measured.
type Report struct {
	// Commit and Date are set by the caller (the report's file name).
	Commit string
	Date   time.Time
	// Profile the run used.
	Profile Profile
	// Elapsed is the run's duration.
	Elapsed time.Duration
	Machine Machine
	// Rows are the load scenarios, three arms each, in run order.
	Rows []Row
	// Idle are the proxies' memory with idle connections.
	Idle []IdleRow
	// FDLimit is the open-file limit the servers and proxies ran under;
	// IdleCut the idle connection counts of the profile that did not fit
	// under it (two descriptors per proxied connection) and were lowered.
	FDLimit uint64
	IdleCut []int
	// Micro is `go test -bench` over the parsers and the verdict path.
	Micro *MicroRun
	// about are the paragraphs (suite.about) of the protocol suites that
	// ran.
	about []string
}

// Machine describes where the run happened.
type Machine struct {
	CPU, Kernel, Go            string
	Cores                      int
	HAProxy, Redis, Iperf3, OS string
	Nginx, Wrk                 string
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages before and after the run: other work on the machine.
	LoadStart, LoadEnd string
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Row is one scenario through one arm.
type Row struct {
	Scenario      string
	Unit, CPUUnit string
	Arm           Arm
	Samples       []Sample // one per round
}

// Sample is one measurement.
type Sample struct {
	Throughput    float64       // in Row.Unit
	P50, P90, P99 time.Duration // zero: not measured
	Elapsed       time.Duration
	// CPU is the proxy's CPU time during the run, CPUPerOp that divided by
	// the requests (connections, gigabytes) of the run, in seconds. Zero
	// for direct.
	CPU      time.Duration
	CPUPerOp float64
	// RSS is the proxy's resident memory after the run, in bytes.
	RSS int64
	// Counted: perf counted the proxy's system calls and context
	// switches during this run (the first round, when perf is installed);
	// per request (connection, gigabyte).
	Counted                      bool
	SyscallsPerOp, SwitchesPerOp float64
	// Denied counts Redis messages the Bulkhead proxy denied during the
	// run (redis-benchmark's own CONFIG GET at start).
	Denied float64
}

func (s Sample) describe(unit, cpuUnit string) string {
	out := fmt.Sprintf("%s %s", num(s.Throughput), unit)
	if s.P50 > 0 || s.P99 > 0 {
		out += fmt.Sprintf(", p50 %s, p99 %s", ms(s.P50), ms(s.P99))
	}
	if s.CPU > 0 {
		out += fmt.Sprintf(", proxy CPU %s %s, RSS %s", perOp(s.CPUPerOp, cpuUnit), cpuUnit, mib(s.RSS))
	}
	return out
}

// med is the median of the samples, field by field.
func (r Row) med() Sample {
	pick := func(f func(Sample) float64) float64 {
		xs := make([]float64, len(r.Samples))
		for i, s := range r.Samples {
			xs[i] = f(s)
		}
		return median(xs)
	}
	return Sample{
		Throughput: pick(func(s Sample) float64 { return s.Throughput }),
		P50:        time.Duration(pick(func(s Sample) float64 { return float64(s.P50) })),
		P90:        time.Duration(pick(func(s Sample) float64 { return float64(s.P90) })),
		P99:        time.Duration(pick(func(s Sample) float64 { return float64(s.P99) })),
		Elapsed:    time.Duration(pick(func(s Sample) float64 { return float64(s.Elapsed) })),
		CPU:        time.Duration(pick(func(s Sample) float64 { return float64(s.CPU) })),
		CPUPerOp:   pick(func(s Sample) float64 { return s.CPUPerOp }),
		RSS:        int64(pick(func(s Sample) float64 { return float64(s.RSS) })),
		Denied:     pick(func(s Sample) float64 { return s.Denied }),
	}
}

// IdleRow is one proxy's memory as idle connections pile up.
type IdleRow struct {
	Arm    Arm
	Points []IdlePoint
}

// IdlePoint is the proxy's resident memory with Conns idle connections.
type IdlePoint struct {
	Conns int
	RSS   int64
	// Bulkhead only: the Go runtime's heap and stack memory in use and its
	// goroutines, from the proxy's /metrics.
	GoHeap, GoStack int64
	Goroutines      int
	// Settle is how long the harness waited for the proxy to settle
	// before reading (settle); Settled is false when it gave up.
	Settle  time.Duration
	Settled bool
}

// PerConn is the memory each idle connection adds, in bytes, between the
// first and the last point; 0 without two points.
func (r IdleRow) PerConn() float64 {
	if len(r.Points) < 2 {
		return 0
	}
	a, z := r.Points[0], r.Points[len(r.Points)-1]
	if z.Conns == a.Conns {
		return 0
	}
	return float64(z.RSS-a.RSS) / float64(z.Conns-a.Conns)
}

func newReport(p Profile) *Report { return &Report{Profile: p} }

// row returns the scenario's row of arm, or nil.
func (r *Report) row(scenario string, arm Arm) *Row {
	for i := range r.Rows {
		if r.Rows[i].Scenario == scenario && r.Rows[i].Arm == arm {
			return &r.Rows[i]
		}
	}
	return nil
}

// machine describes this machine and the tools' versions.
func machine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	first := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return l
	}
	m.HAProxy = first("haproxy", "-v")
	m.Redis = first("redis-server", "--version")
	m.Iperf3 = first("iperf3", "--version")
	m.Nginx = first("nginx", "-v")
	m.Wrk = first("wrk", "--version")
	return m
}

// Markdown renders the report.
func (r *Report) Markdown() []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Bulkhead side by side: direct, HAProxy, Bulkhead\n\n")
	w("%s, commit `%s`, profile **%s** (%d round(s), medians shown), run took %s.\n\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Commit, r.Profile.Name, r.Profile.Rounds, r.Elapsed.Round(time.Second))
	if r.Profile.Name != "full" {
		w("> A %s run: the loads are tiny and the numbers mean nothing; it only shows that the harness works.\n\n", r.Profile.Name)
	}
	m := r.Machine
	w("## Setup\n\n")
	w("- Machine: %s, %d cores, %s, kernel %s; %s.\n", m.CPU, m.Cores, m.OS, m.Kernel, m.Go)
	w("- Tools: %s; %s; %s; redis-benchmark from redis-tools; %s; %s; fortio (`%s`).\n", m.HAProxy, m.Redis, m.Iperf3, m.Nginx, m.Wrk, fortioModule)
	w("- Layout: two network namespaces (`client`, `server`) on a bridge (test/lab). The load generator (in `client`) and the server (redis-server, iperf3 in `server`) are pinned to CPU %s; the proxy under test to CPU %s. All of them run at nice %d (the same for every arm), so that other work on the shared machine weighs less on the results.\n", loadCPU, proxyCPU, r.Profile.Nice)
	w("- **direct**: client → server, no proxy.\n")
	w("- **HAProxy**: `haproxy -db`, TCP mode (HTTP mode with ACLs for the HTTP scenarios), `nbthread 1`, no logging, listening on port %d behind the same iptables REDIRECT that `bulkhead-proxy init` installs in `server`; forwards to the server's address.\n", proxyPort)
	w("- **Bulkhead**: `bulkhead-proxy run` with GOMAXPROCS=1, transparent behind that REDIRECT, in **protect** mode. Policy: the client may send Redis `%s` on %d and anything on %d (an L4-only rule: spliced); every other command, port and peer is denied. Before each Redis run the harness checks that `SET` passes and `CONFIG GET` is denied by the proxy, and after it that the proxy allowed at least as many Redis messages as the run sent (every message parsed and judged). The proxy runs without a control plane: the policy is restored from its cache directory, written with `xdsclient.WriteCache` — no control-plane CPU on the two cores and no policy change mid-run; flows are still aggregated per message (their reports to the absent control plane fail and are retried with backoff).\n",
		strings.Join(allowedRedis, "`, `"), redisPort, iperfPort)
	w("- Proxy CPU: utime+stime from `/proc/<pid>/stat` (10 ms ticks) over the run, divided by the requests (connections, gigabytes) the tool reports. RSS: `VmRSS` from `/proc/<pid>/status` after the run.\n")
	w("- Each round runs the arms in turn (direct, HAProxy, Bulkhead), each proxy started afresh. The machine's two cores are shared with other work: load average %s before the run, %s after (1, 5, 15 min). Throughput and latency suffer from that noise far more than CPU per request, which counts only the proxy's own CPU time.\n\n", m.LoadStart, m.LoadEnd)

	r.writeTargets(&b)

	w("## Load scenarios\n\n")
	w("| scenario | arm | throughput | p50 | p99 | proxy CPU | proxy RSS | Bulkhead ÷ direct | Bulkhead ÷ HAProxy |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i := range r.Rows {
		row := r.Rows[i]
		s := row.med()
		lat50, lat99, cpu, rss, vsD, vsH := "—", "—", "—", "—", "", ""
		if s.P50 > 0 || s.P99 > 0 {
			lat50, lat99 = ms(s.P50), ms(s.P99)
		}
		if row.Arm != Direct {
			cpu, rss = perOp(s.CPUPerOp, row.CPUUnit)+" "+row.CPUUnit, mib(s.RSS)
		}
		if row.Arm == Bulkhead {
			if d := r.row(row.Scenario, Direct); d != nil {
				vsD = ratio(s.Throughput, d.med().Throughput)
			}
			if h := r.row(row.Scenario, HAProxy); h != nil {
				vsH = ratio(s.Throughput, h.med().Throughput)
			}
		}
		w("| %s | %s | %s %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Arm, num(s.Throughput), row.Unit, lat50, lat99, cpu, rss, vsD, vsH)
	}
	w("\nRedis: `redis-benchmark -t <test> -c 50 -P <p> -n <n> --csv` (n = %d at -P 1, %d at -P 16). Churn: `-t get -c 50 -k 0 -n %d`, a new connection per request (redis-benchmark is the standard tool that does this). TCP bulk: `iperf3 -t %d`, one stream, client → server, Gbit/s received; its CPU is per gigabyte.\n\n",
		r.Profile.RedisRequests, r.Profile.RedisPipelined, r.Profile.ChurnRequests, int(r.Profile.BulkTime/time.Second))
	var counted bool
	for _, row := range r.Rows {
		for _, s := range row.Samples {
			counted = counted || s.Counted
		}
	}
	if counted {
		w("Kernel work the proxies ask for (`perf stat -e raw_syscalls:sys_enter,context-switches -p <proxy>` during the first round):\n\n| scenario | HAProxy syscalls | Bulkhead syscalls | HAProxy context switches | Bulkhead context switches | per |\n|---|---:|---:|---:|---:|---|\n")
		seen := map[string]bool{}
		for _, row := range r.Rows {
			if seen[row.Scenario] {
				continue
			}
			seen[row.Scenario] = true
			h, bh := r.row(row.Scenario, HAProxy), r.row(row.Scenario, Bulkhead)
			if h == nil || bh == nil || len(h.Samples) == 0 || len(bh.Samples) == 0 || !h.Samples[0].Counted || !bh.Samples[0].Counted {
				continue
			}
			hs, bs := h.Samples[0], bh.Samples[0]
			per := strings.TrimPrefix(strings.TrimPrefix(row.CPUUnit, "µs/"), "s/")
			w("| %s | %.2f | %.2f | %.2f | %.2f | %s |\n", row.Scenario, hs.SyscallsPerOp, bs.SyscallsPerOp, hs.SwitchesPerOp, bs.SwitchesPerOp, per)
		}
		w("\n")
	}
	if r.Profile.Rounds > 1 {
		w("<details><summary>Every round</summary>\n\n| scenario | arm | throughputs | proxy CPU |\n|---|---|---|---|\n")
		for _, row := range r.Rows {
			var tp, cpu []string
			for _, s := range row.Samples {
				tp = append(tp, num(s.Throughput))
				if row.Arm != Direct {
					cpu = append(cpu, perOp(s.CPUPerOp, row.CPUUnit))
				}
			}
			w("| %s | %s | %s | %s |\n", row.Scenario, row.Arm, strings.Join(tp, ", "), strings.Join(cpu, ", "))
		}
		w("\n</details>\n\n")
	}

	r.writeHTTP(&b)
	if len(r.about) > 0 {
		w("## Protocol suites\n\n")
		for _, a := range r.about {
			w("%s\n\n", a)
		}
	}

	w("## Idle connections\n\n")
	if len(r.Idle) > 0 {
		w("| arm |")
		for _, p := range r.Idle[0].Points {
			w(" RSS at %s |", count(p.Conns))
		}
		w(" per idle connection |\n|---|")
		for range r.Idle[0].Points {
			w("---:|")
		}
		w("---:|\n")
		for _, row := range r.Idle {
			w("| %s |", row.Arm)
			for _, p := range row.Points {
				w(" %s |", mib(p.RSS))
			}
			w(" %s |\n", kib(row.PerConn()))
		}
		for _, row := range r.Idle {
			if row.Arm != Bulkhead || len(row.Points) < 2 || row.Points[0].Goroutines == 0 {
				continue
			}
			a, z := row.Points[0], row.Points[len(row.Points)-1]
			dn := float64(z.Conns - a.Conns)
			w("\nWhere Bulkhead's memory goes (Go runtime, from its `/metrics`):\n\n| connections | RSS | heap in use | stacks in use | goroutines |\n|---:|---:|---:|---:|---:|\n")
			for _, p := range row.Points {
				w("| %s | %s | %s | %s | %s |\n", count(p.Conns), mib(p.RSS), mib(p.GoHeap), mib(p.GoStack), count(p.Goroutines))
			}
			w("| per connection | %s | %s | %s | %.1f |\n", kib(float64(z.RSS-a.RSS)/dn), kib(float64(z.GoHeap-a.GoHeap)/dn), kib(float64(z.GoStack-a.GoStack)/dn), float64(z.Goroutines-a.Goroutines)/dn)
		}
		if len(r.IdleCut) > 0 {
			var cut []string
			for _, n := range r.IdleCut {
				cut = append(cut, count(n))
			}
			w("\n**Cut:** %s connections would need twice as many descriptors in the proxy, above this machine's open-file limit of %s, which the harness cannot raise (no CAP_SYS_RESOURCE); measured at the most that fits instead. The per-connection figure is a slope and does not depend on the count.\n", strings.Join(cut, ", "), count(int(r.FDLimit)))
		}
		w("\nEach connection sent one `GET` and read its reply, then stayed open (held by the harness: no standard tool leaves connections idle). Direct has no proxy to measure. %s; per connection = (last − first) ÷ connections added.\n\n", settleNote(r.Idle))
	}

	w("## Parsers and verdict (`go test -bench`)\n\n")
	if r.Micro == nil {
		w("Not run.\n\n")
	} else {
		w("`%s` (GOMAXPROCS=1). Rows marked ✓/✗ are the benchmarks of the parsers and the verdict path on typical messages that the target (≤ 100 ns, 0 allocs) applies to, judged by ns/msg where a benchmark parses several messages per operation (recorded sessions, pipelines, transactions) and reports it, else by ns/op; benchmarks of untypical input (tiny reads, messages of many answers or rows) are listed unjudged. Run at nice %d like the loads; on this shared machine ns/op still carries the noise of other work.\n\n", r.Micro.Command, r.Profile.Nice)
		w("| package | benchmark | ns/op | ns/msg | MB/s | B/op | allocs/op | target |\n|---|---|---:|---:|---:|---:|---:|:---:|\n")
		for _, m := range r.Micro.Results {
			mark := ""
			if m.PerMessage {
				mark = "✓"
				if m.Ns() > 100 || m.AllocsPerOp > 0 {
					mark = "✗"
				}
			}
			mbs := "—"
			if m.MBPerSec > 0 {
				mbs = fmt.Sprintf("%.0f", m.MBPerSec)
			}
			msg := "—"
			if m.NsPerMsg > 0 {
				msg = fmt.Sprintf("%.1f", m.NsPerMsg)
			}
			w("| %s | %s | %.1f | %s | %s | %.0f | %.0f | %s |\n", m.Package, m.Name, m.NsPerOp, msg, mbs, m.BytesPerOp, m.AllocsPerOp, mark)
		}
		if len(r.Micro.Failures) > 0 {
			w("\nFailed (not measured): %s.\n", strings.Join(r.Micro.Failures, "; "))
		}
		w("\n")
	}
	return b.Bytes()
}

// Target is one of the targets and what the run measured.
type Target struct {
	What, Measured string
	// Met: "yes", "no", or "—" when not measured.
	Met string
}

// Targets evaluates the targets against the report.
func (r *Report) Targets() []Target {
	var ts []Target
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	for _, c := range []struct {
		pipe string
		min  float64
	}{{"-P 1", 0.9}, {"-P 16", 0.8}} {
		for _, test := range []string{"GET", "SET"} {
			sc := "redis " + test + " " + c.pipe
			b, h := r.row(sc, Bulkhead), r.row(sc, HAProxy)
			if b == nil || h == nil {
				continue
			}
			q := b.med().Throughput / h.med().Throughput
			ts = append(ts, Target{fmt.Sprintf("Redis %s %s: Bulkhead ≥ %.1f × HAProxy", test, c.pipe, c.min), fmt.Sprintf("%.2f ×", q), yes(q >= c.min)})
		}
	}
	if b, d := r.row(httpRateScenario, Bulkhead), r.row(httpRateScenario, Direct); b != nil && d != nil {
		bm, dm := b.med(), d.med()
		a50, a99 := bm.P50-dm.P50, bm.P99-dm.P99
		ts = append(ts, Target{"HTTP at a fixed rate: ≤ 30 µs added at p50, ≤ 100 µs at p99",
			fmt.Sprintf("%s at p50, %s at p99", us(a50), us(a99)), yes(a50 <= 30*time.Microsecond && a99 <= 100*time.Microsecond)})
	} else {
		ts = append(ts, Target{"HTTP at a fixed rate: ≤ 30 µs added at p50, ≤ 100 µs at p99", "not measured (HTTP scenario not run)", "—"})
	}
	for _, row := range r.Rows {
		if row.Arm != Bulkhead || row.CPUUnit != "µs/req" {
			continue
		}
		us := row.med().CPUPerOp * 1e6
		ts = append(ts, Target{"Proxy CPU ≤ 20 µs per request/response: " + row.Scenario, fmt.Sprintf("%.1f µs", us), yes(us <= 20)})
	}
	if b, h := r.row("TCP bulk, L4 rule (iperf3)", Bulkhead), r.row("TCP bulk, L4 rule (iperf3)", HAProxy); b != nil && h != nil {
		q := b.med().Throughput / h.med().Throughput
		ts = append(ts, Target{"TCP bulk through an L4 rule: ≥ 0.9 × HAProxy", fmt.Sprintf("%.2f ×", q), yes(q >= 0.9)})
	}
	for _, row := range r.Idle {
		if row.Arm != Bulkhead || len(row.Points) == 0 {
			continue
		}
		start := row.Points[0]
		if start.Conns == 0 {
			// MB and KB read as powers of ten, the stricter reading.
			ts = append(ts, Target{"Memory: ≤ 20 MB resident at start", fmt.Sprintf("%s (%.1f MB)", mib(start.RSS), float64(start.RSS)/1e6), yes(start.RSS <= 20e6)})
		}
		if pc := row.PerConn(); len(row.Points) > 1 {
			ts = append(ts, Target{"Memory: ≤ 16 KB per idle connection", fmt.Sprintf("%s (%.1f KB)", kib(pc), pc/1e3), yes(pc <= 16e3)})
		}
	}
	if r.Micro != nil {
		var n, over int
		var worst []string
		for _, m := range r.Micro.Results {
			if !m.PerMessage {
				continue
			}
			n++
			if m.Ns() > 100 || m.AllocsPerOp > 0 {
				over++
				worst = append(worst, fmt.Sprintf("%s %s %.0f ns, %.0f allocs", m.Package, m.Name, m.Ns(), m.AllocsPerOp))
			}
		}
		if n > 0 {
			got := fmt.Sprintf("%d of %d within", n-over, n)
			if over > 0 {
				got += "; over: " + strings.Join(worst, "; ")
			}
			ts = append(ts, Target{"Parsers and verdict: ≤ 100 ns per message, 0 allocs/op", got, yes(over == 0)})
		}
	}
	return ts
}

func (r *Report) writeTargets(b *bytes.Buffer) {
	fmt.Fprintf(b, "## Targets\n\n| target | measured | met |\n|---|---|:---:|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.What, t.Measured, t.Met)
	}
	b.WriteString("\n")
	var cpu []string
	for _, row := range r.Rows {
		if row.Arm != Bulkhead {
			continue
		}
		if h := r.row(row.Scenario, HAProxy); h != nil && h.med().CPUPerOp > 0 {
			cpu = append(cpu, fmt.Sprintf("%s %.2f ×", row.Scenario, row.med().CPUPerOp/h.med().CPUPerOp))
		}
	}
	if len(cpu) > 0 {
		fmt.Fprintf(b, "Proxy CPU per request (connection, gigabyte), Bulkhead ÷ HAProxy: %s. Throughput ratios depend on how the machine's other work lets each proxy be scheduled; CPU per request counts only the proxy's own time and is the steadier comparison.\n\n", strings.Join(cpu, "; "))
	}
}

// writeHTTP is the HTTP/1.1 section: the latency of each arm at
// fortio's fixed rate and what each proxy adds to direct.
func (r *Report) writeHTTP(b *bytes.Buffer) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## HTTP/1.1\n\n")
	d := r.row(httpRateScenario, Direct)
	if d == nil {
		w("Not run.\n\n")
		return
	}
	w("nginx (one worker, pinned with the load generator) serves a %d-byte file at `%s`. `wrk -t 1 -c %d -d %ds --latency` measures each arm's maximum; fortio (`%s`, `load -c %d -qps <rate> -t %ds -r 0.000001`, 1 µs histogram buckets) then loads each arm at a fixed rate, ", httpBody, httpPath, httpConns, int(r.Profile.HTTPTime/time.Second), fortioModule, httpConns, int(r.Profile.HTTPTime/time.Second))
	if r.Profile.HTTPRate > 0 {
		w("%d requests/s (the profile's).", r.Profile.HTTPRate)
	} else {
		w("half of the Bulkhead arm's median under wrk, rounded down to 100 requests/s.")
	}
	w(" Bulkhead's policy allows `GET %s` (an `http` rule: method GET, exact path); HAProxy runs in HTTP mode (`http-request deny deny_status 403 unless { method GET } { path %s }`, keep-alive both sides, `http-reuse always`). Before each run the harness checks that `GET %s` gets 200 with the 1 KiB body through every arm and `GET %s` gets 403 from each proxy (nginx serves it, so the 403 is the proxy's), and after it that Bulkhead allowed at least as many HTTP messages as the tool made requests.\n\n", httpPath, httpPath, httpPath, deniedPath)
	w("| arm | rate | p50 | p90 | p99 | added p50 | added p90 | added p99 | proxy CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	dm := d.med()
	for _, arm := range Arms {
		row := r.row(httpRateScenario, arm)
		if row == nil {
			continue
		}
		s := row.med()
		add50, add90, add99, cpu := "—", "—", "—", "—"
		if arm != Direct {
			add50, add90, add99 = us(s.P50-dm.P50), us(s.P90-dm.P90), us(s.P99-dm.P99)
			cpu = perOp(s.CPUPerOp, row.CPUUnit) + " " + row.CPUUnit
		}
		w("| %s | %s req/s | %s | %s | %s | %s | %s | %s | %s |\n", arm, num(s.Throughput), us(s.P50), us(s.P90), us(s.P99), add50, add90, add99, cpu)
	}
	w("\nAdded latency is the arm's median percentile minus direct's: it includes the second pass through the kernel's TCP stack and the REDIRECT that any sidecar pays, not only the proxy's own work.\n\n")
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func num(v float64) string {
	switch {
	case v >= 100:
		return groupThousands(int64(v + 0.5))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func groupThousands(n int64) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func count(n int) string { return groupThousands(int64(n)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func kib(n float64) string { return fmt.Sprintf("%.1f KiB", n/(1<<10)) }

// perOp formats seconds per operation in unit ("µs/req", "s/GB").
func perOp(sec float64, unit string) string {
	if strings.HasPrefix(unit, "µs") {
		return fmt.Sprintf("%.2f", sec*1e6)
	}
	return fmt.Sprintf("%.3f", sec)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f ×", a/b)
}

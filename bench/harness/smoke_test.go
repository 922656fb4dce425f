package harness

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the whole harness with the smoke profile (make
// bench-smoke; part of make test): every scenario through every arm, the
// idle connections and the micro-benchmarks, so that the harness never
// rots. It checks that each measurement is there and sane, not its value.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end benchmark harness: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the benchmark harness needs root (network namespaces, iptables); run make test as root, or go test -short to leave it out")
	}
	if err := CheckTools(); err != nil {
		t.Fatal(err)
	}
	root := moduleRoot(t)
	bin := binDir(t, root)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	pprofDir := t.TempDir()
	rep, err := Run(ctx, Options{
		BinDir: bin, ModuleDir: root, Prefix: "bhbsmoke", Subnet: netip.MustParsePrefix("198.18.51.0/24"),
		Profile: Smoke(), PprofDir: pprofDir, Progress: &progress,
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil || strings.Contains(string(out), "bhbsmoke-") {
		t.Errorf("namespaces left behind (%v):\n%s", err, out)
	}

	scenarios := map[string]bool{}
	for _, row := range rep.Rows {
		scenarios[row.Scenario] = true
		if len(row.Samples) != 1 {
			t.Errorf("%s %s: %d samples, want 1", row.Scenario, row.Arm, len(row.Samples))
			continue
		}
		s := row.Samples[0]
		if s.Throughput <= 0 {
			t.Errorf("%s %s: throughput %v", row.Scenario, row.Arm, s.Throughput)
		}
		// kcat reports no latency.
		noLatency := row.Unit == "Gbit/s" || row.Scenario == kafkaScenario || row.Scenario == dnsScenario // nor does dnsperf
		if !noLatency && (s.P50 <= 0 || s.P99 < s.P50) {
			t.Errorf("%s %s: p50 %v, p99 %v", row.Scenario, row.Arm, s.P50, s.P99)
		}
		if proxied := row.Arm != Direct; proxied != (s.RSS > 0) {
			t.Errorf("%s %s: RSS %d", row.Scenario, row.Arm, s.RSS)
		}
		if strings.HasPrefix(row.Scenario, "http") && (s.P90 < s.P50 || s.P99 < s.P90) {
			t.Errorf("%s %s: p50 %v, p90 %v, p99 %v", row.Scenario, row.Arm, s.P50, s.P90, s.P99)
		}
		if row.Arm == Bulkhead && strings.HasPrefix(row.Scenario, "redis") && s.Denied < 1 {
			t.Errorf("%s: the proxy denied nothing, yet redis-benchmark asks for CONFIG at start", row.Scenario)
		}
	}
	// Every scenario, the suites' too.
	want := len((&bench{prof: Smoke()}).scenarios())
	if len(scenarios) != want || len(rep.Rows) != want*len(Arms) {
		t.Errorf("%d scenarios in %d rows, want %d in %d: %v", len(scenarios), len(rep.Rows), want, want*len(Arms), scenarios)
	}
	if len(rep.Idle) != 2 {
		t.Fatalf("idle rows: %+v", rep.Idle)
	}
	for _, row := range rep.Idle {
		if len(row.Points) != 2 || row.Points[1].Conns != 50 || row.Points[0].RSS <= 0 {
			t.Errorf("idle %s: %+v", row.Arm, row.Points)
		}
	}
	if rep.Micro == nil || len(rep.Micro.Failures) > 0 {
		t.Fatalf("micro-benchmarks: %+v", rep.Micro)
	}
	var parse, verdict bool
	for _, m := range rep.Micro.Results {
		parse = parse || m.Package == "protocols/redis" && strings.HasPrefix(m.Name, "ParseRequest") && m.PerMessage
		verdict = verdict || m.Package == "dataplane/enforce" && strings.HasPrefix(m.Name, "Message") && m.PerMessage
	}
	if !parse || !verdict {
		t.Errorf("micro-benchmarks lack the Redis parser (%v) or the verdict path (%v): %+v", parse, verdict, rep.Micro.Results)
	}
	profiles, _ := filepath.Glob(filepath.Join(pprofDir, "*.pprof"))
	if len(profiles) != want+1 || !slices.Contains(profiles, filepath.Join(pprofDir, "idle-heap.pprof")) {
		t.Errorf("profiles of the Bulkhead arm: %v, want a CPU profile per load scenario and idle-heap", profiles)
	}
	// Settled, an idle connection holds no goroutine in Bulkhead (both
	// of its sides park): 50 of them add a few at most.
	if b := rep.Idle[1]; b.Arm != Bulkhead || b.Points[1].Goroutines > b.Points[0].Goroutines+5 || b.Points[0].GoHeap <= 0 || b.Points[0].Goroutines <= 0 {
		t.Errorf("Bulkhead's Go runtime with idle connections: %+v", b.Points)
	}
	for _, row := range rep.Idle {
		for _, p := range row.Points {
			if p.Settle < settleMin || p.Settle > settleMax+2*settlePoll {
				t.Errorf("idle %s: waited %v to settle, want %v to %v", row.Arm, p.Settle, settleMin, settleMax)
			}
		}
	}

	rep.Commit, rep.Date = "abc", time.Now()
	md := string(rep.Markdown())
	for _, want := range []string{"## Targets", "| redis GET -P 16 | Bulkhead |", "## Idle connections", "| arm | rate | p50 | p90 | p99 | added p50 |", "## Parsers and verdict", "ParseRequest/get"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}

// moduleRoot is the module's root directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside the bulkhead module")
	}
	return filepath.Dir(gomod)
}

// binDir is $BULKHEAD_BIN (make test sets it) or a temp dir into which
// bulkhead-proxy is built.
func binDir(t *testing.T, root string) string {
	t.Helper()
	if dir := os.Getenv("BULKHEAD_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "bulkhead-proxy")); err != nil {
			t.Fatalf("BULKHEAD_BIN=%s: %v", dir, err)
		}
		return dir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/bulkhead-proxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bulkhead-proxy: %v\n%s", err, out)
	}
	return dir
}

package xds

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	cpxds "github.com/bulkhead-io/bulkhead/controlplane/xds"
)

const (
	segments        = 1000
	rulesPerSegment = 10
	namespaces      = 10
	appPort         = 8080
)

// fixture is n segments of one Envoy workload each (port 8080, http) in
// namespaces ns0…ns9, each with rulesPerSegment ingress rules from other
// segments with HTTP matchers, under mode. changed edits one rule of the
// first segment.
func fixture(n int, mode v1alpha1.Mode, changed bool) compile.Input {
	var in compile.Input
	name := func(i int) (string, string) { return fmt.Sprintf("s%04d", i), fmt.Sprintf("ns%d", i%namespaces) }
	for i := range n {
		seg, ns := name(i)
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
		in.Workloads = append(in.Workloads, identity.Workload{
			Name: seg, Namespace: ns, Segment: seg, IPs: []netip.Addr{ip},
			Ports: []identity.Port{{Port: appPort, Protocol: "http"}}, Sidecar: identity.SidecarEnvoy,
		})
		p := &v1alpha1.SegmentPolicy{
			TypeMeta:   v1alpha1.TypeMetaSegmentPolicy(),
			ObjectMeta: metav1.ObjectMeta{Name: seg, Namespace: ns},
			Spec:       v1alpha1.SegmentPolicySpec{Mode: mode},
		}
		for j := range rulesPerSegment {
			peer, pns := name((i*7 + j*13 + 1) % n)
			r := v1alpha1.Rule{
				Name:   fmt.Sprintf("from-%s-%d", peer, j),
				Origin: v1alpha1.OriginUser,
				Peers:  []v1alpha1.Peer{{Segment: peer, Namespace: pns}},
				Ports:  []v1alpha1.PortProtocol{{Port: appPort, Protocol: "http"}},
				HTTP: &v1alpha1.HTTPMatch{
					Methods: []string{"GET", "POST"},
					Paths:   []string{"/api/v1/items/{id}", fmt.Sprintf("/api/v%d/*", j+2), "/healthz"},
				},
			}
			if changed && i == 0 && j == 0 {
				r.HTTP.Paths = append(r.HTTP.Paths, "/changed")
			}
			p.Spec.Ingress = append(p.Spec.Ingress, r)
		}
		in.Policies = append(in.Policies, p)
	}
	in.Settings = store.Settings{}
	return in
}

func compileOut(tb testing.TB, in compile.Input) *compile.Output {
	tb.Helper()
	out, err := compile.Compile(in)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// cpuTime is the process's user and system CPU time so far. The machine
// these benchmarks run on is shared: next to wall time per operation they
// report CPU time per operation ("cpu-ms/op"), which other processes do
// not inflate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times, reporting CPU time per op.
func loop(b *testing.B, op func(i int)) {
	b.ReportAllocs()
	start := cpuTime()
	i := 0
	for b.Loop() {
		op(i)
		i++
	}
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(i), "cpu-ms/op")
}

// BenchmarkEnvoyCompileFull: 10,000 rules over 1,000 segments into Envoy
// resources for 1,000 sidecars, from nothing (no cache).
func BenchmarkEnvoyCompileFull(b *testing.B) {
	in := fixture(segments, v1alpha1.ModeProtect, false)
	out := compileOut(b, in)
	loop(b, func(int) {
		res, err := envoy.NewCompiler(envoy.Options{}).Compile(envoy.Input{Output: out, Workloads: in.Workloads})
		if err != nil || len(res.Nodes) != segments {
			b.Fatal(err, len(res.Nodes))
		}
	})
}

// BenchmarkPipelineFull adds compile.Compile (the store's policies into
// bulkhead-proxy's config, which the Envoy compiler reads) to the above.
func BenchmarkPipelineFull(b *testing.B) {
	in := fixture(segments, v1alpha1.ModeProtect, false)
	loop(b, func(int) {
		out := compileOut(b, in)
		if _, err := envoy.NewCompiler(envoy.Options{}).Compile(envoy.Input{Output: out, Workloads: in.Workloads}); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEnvoyOneRuleChange: recompiling after one rule of one segment
// changed (alternating between the two versions), with a warm cache.
func BenchmarkEnvoyOneRuleChange(b *testing.B) {
	ins := [2]compile.Input{fixture(segments, v1alpha1.ModeProtect, false), fixture(segments, v1alpha1.ModeProtect, true)}
	outs := [2]*compile.Output{compileOut(b, ins[0]), compileOut(b, ins[1])}
	c := envoy.NewCompiler(envoy.Options{})
	if _, err := c.Compile(envoy.Input{Output: outs[0], Workloads: ins[0].Workloads}); err != nil {
		b.Fatal(err)
	}
	loop(b, func(i int) {
		i++
		res, err := c.Compile(envoy.Input{Output: outs[i%2], Workloads: ins[i%2].Workloads})
		if err != nil || len(res.Changed) != 1 || res.Built[envoy.Routes] != 1 {
			b.Fatalf("err %v, changed %v, built %v", err, res.Changed, res.Built)
		}
	})
}

// BenchmarkPublishOneRuleChange adds publishing to the xDS server
// (validation of what changed, the node's new snapshot).
func BenchmarkPublishOneRuleChange(b *testing.B) {
	ins := [2]compile.Input{fixture(segments, v1alpha1.ModeProtect, false), fixture(segments, v1alpha1.ModeProtect, true)}
	outs := [2]*compile.Output{compileOut(b, ins[0]), compileOut(b, ins[1])}
	c := envoy.NewCompiler(envoy.Options{})
	srv := cpxds.New(nil, cpxds.Options{})
	res, err := c.Compile(envoy.Input{Output: outs[0], Workloads: ins[0].Workloads})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.SetEnvoy(res.Nodes); err != nil {
		b.Fatal(err)
	}
	loop(b, func(i int) {
		i++
		res, err := c.Compile(envoy.Input{Output: outs[i%2], Workloads: ins[i%2].Workloads})
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.SetEnvoy(res.Nodes); err != nil {
			b.Fatal(err)
		}
	})
}

// fanout is an xDS server on 127.0.0.1 with n Envoy nodes, and a process
// of its own (this test binary, re-executed: see clients_test.go) running n
// ADS clients, one connection each, that ACK every response. The clients
// are not in the control plane's process, so its heap is its own.
type fanout struct {
	n    int
	srv  *cpxds.Server
	comp *envoy.Compiler
	ins  map[v1alpha1.Mode]compile.Input
	stop func()

	stdin io.WriteCloser
	lines chan string // the clients' output, line by line

	configBytes, connectedBytes uint64 // control plane heap growth: snapshots; + streams
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func newFanout(tb testing.TB, n int, delta bool) *fanout {
	tb.Helper()
	f := &fanout{n: n, comp: envoy.NewCompiler(envoy.Options{}), ins: map[v1alpha1.Mode]compile.Input{}, lines: make(chan string, 16)}
	for _, m := range []v1alpha1.Mode{v1alpha1.ModeProtect, v1alpha1.ModeMonitor} {
		f.ins[m] = fixture(n, m, false)
	}
	f.srv = cpxds.New(nil, cpxds.Options{MaxNodes: 2 * n})
	gs := grpc.NewServer()
	f.srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, started := make(chan error, 1), make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	go func() { started <- f.srv.Start(ctx) }()

	before := heap()
	f.publish(tb, v1alpha1.ModeProtect)
	f.configBytes = heap() - before

	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, clientsArg, lis.Addr().String(), strconv.Itoa(n), strconv.FormatBool(delta))
	cmd.Stderr = os.Stderr
	if f.stdin, err = cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		close(f.lines)
	}()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			f.stdin.Close()
			for range f.lines {
			}
			<-read
			cmd.Wait()
			cancel()
			<-started
			gs.GracefulStop()
			<-served
		})
	}
	tb.Cleanup(f.stop)
	f.expect(tb, "ready")
	f.connectedBytes = heap() - before
	return f
}

// expect waits for the clients' next line, which must start with want,
// and returns it.
func (f *fanout) expect(tb testing.TB, want string) string {
	tb.Helper()
	select {
	case l, ok := <-f.lines:
		if !ok || !strings.HasPrefix(l, want) {
			tb.Fatalf("clients said %q (open %v), want %q", l, ok, want)
		}
		return l
	case <-time.After(60 * time.Second):
		tb.Fatalf("clients did not say %q within 60s", want)
	}
	return ""
}

// publish compiles the fixture under mode and serves it. It returns when
// the Envoy compilation started (after compile.Compile).
func (f *fanout) publish(tb testing.TB, mode v1alpha1.Mode) time.Time {
	tb.Helper()
	in := f.ins[mode]
	out, err := compile.Compile(in)
	if err != nil {
		tb.Fatal(err)
	}
	envoyStart := time.Now()
	res, err := f.comp.Compile(envoy.Input{Output: out, Workloads: in.Workloads})
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.srv.SetEnvoy(res.Nodes); err != nil {
		tb.Fatal(err)
	}
	return envoyStart
}

// change switches every segment to mode (every node's route
// configuration changes) and returns, sorted, per client, the time from
// the start of the compilation (compile.Compile of the store's policies,
// then the Envoy compilation) to its ACK of the new route configuration,
// and the same from the start of the Envoy compilation.
func (f *fanout) change(tb testing.TB, mode v1alpha1.Mode) (lat, envoyLat []time.Duration) {
	tb.Helper()
	if _, err := io.WriteString(f.stdin, "arm\n"); err != nil {
		tb.Fatal(err)
	}
	f.expect(tb, "armed")
	start := time.Now()
	envoyStart := f.publish(tb, mode)
	acks := strings.Fields(f.expect(tb, "acks"))[1:]
	if len(acks) != f.n {
		tb.Fatalf("%d ACK times for %d clients", len(acks), f.n)
	}
	for _, a := range acks {
		ns, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		at := time.Unix(0, ns)
		lat = append(lat, at.Sub(start))
		envoyLat = append(envoyLat, at.Sub(envoyStart))
	}
	slices.Sort(lat)
	slices.Sort(envoyLat)
	return lat, envoyLat
}

func pct(lat []time.Duration, p float64) time.Duration {
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

func benchFanout(b *testing.B, delta bool) {
	f := newFanout(b, segments, delta)
	modes := []v1alpha1.Mode{v1alpha1.ModeMonitor, v1alpha1.ModeProtect}
	var p50s, p99s, envoyP99s []time.Duration
	var worst time.Duration
	i := 0
	for b.Loop() {
		lat, envoyLat := f.change(b, modes[i%2])
		i++
		p50s = append(p50s, pct(lat, 0.5))
		p99s = append(p99s, pct(lat, 0.99))
		envoyP99s = append(envoyP99s, pct(envoyLat, 0.99))
		worst = max(worst, lat[len(lat)-1])
	}
	// Per round percentiles over the clients; reported: the median round's
	// and the worst round's.
	for _, s := range [][]time.Duration{p50s, p99s, envoyP99s} {
		slices.Sort(s)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(pct(p50s, 0.5)), "p50-ms")
	b.ReportMetric(ms(pct(p99s, 0.5)), "p99-ms")
	b.ReportMetric(ms(p99s[len(p99s)-1]), "worst-round-p99-ms")
	b.ReportMetric(ms(worst), "max-ms")
	b.ReportMetric(ms(pct(envoyP99s, 0.5)), "p99-from-envoy-compile-ms")
	b.ReportMetric(float64(f.configBytes)/float64(f.n), "config-B/node")
	b.ReportMetric(float64(f.connectedBytes)/float64(f.n), "connected-B/node")
}

// BenchmarkFanoutSotW: a policy change reaching 1,000 SotW ADS clients
// (as gRPC-Go and SotW Envoys are), each on its own connection, and ACKed
// by them: per round, the p50 and p99 over the clients of the time from
// the start of the compilation to the ACK (the median round's, and the
// worst round's p99); the control plane's heap per node with the
// configuration published (config-B/node) and with the clients connected
// (connected-B/node).
func BenchmarkFanoutSotW(b *testing.B) { benchFanout(b, false) }

// BenchmarkFanoutDelta: the same with delta ADS clients (as Envoy with the
// generated bootstrap is).
func BenchmarkFanoutDelta(b *testing.B) { benchFanout(b, true) }

// TestFanout runs the fan-out with 200 clients of each kind: every client
// gets and ACKs the change. (The figures for 1,000 are the benchmarks'.)
func TestFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, delta := range []bool{false, true} {
		f := newFanout(t, 200, delta)
		lat, _ := f.change(t, v1alpha1.ModeMonitor)
		t.Logf("delta=%v: 200 clients ACKed the change: p50 %v, p99 %v, max %v", delta, pct(lat, 0.5), pct(lat, 0.99), lat[len(lat)-1])
		if p99 := pct(lat, 0.99); p99 > 5*time.Second {
			t.Errorf("delta=%v: p99 %v", delta, p99)
		}
		f.stop()
	}
}

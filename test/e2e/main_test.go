package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/demo"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// binaries are Bulkhead's three commands.
var binaries = []string{"bulkhead", "bulkhead-controlplane", "bulkhead-proxy"}

// bins finds or builds the binaries once, on the first test that needs
// them: $BULKHEAD_BIN when set (make test sets it), else `go build` of
// ./cmd/... from the module root into a temp dir that TestMain removes.
var bins struct {
	once   sync.Once
	dir    string
	tmp    string // ours to remove
	err    error
	logged bool
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if bins.tmp != "" {
		os.RemoveAll(bins.tmp)
	}
	removeHelpers()
	os.Exit(code)
}

// binDir returns the directory of the binaries, building them if needed.
func binDir(t *testing.T) string {
	t.Helper()
	bins.once.Do(func() { bins.dir, bins.err = findOrBuild() })
	if bins.err != nil {
		t.Fatalf("bulkhead binaries: %v", bins.err)
	}
	return bins.dir
}

func findOrBuild() (string, error) {
	if dir := os.Getenv("BULKHEAD_BIN"); dir != "" {
		for _, b := range binaries {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return "", fmt.Errorf("BULKHEAD_BIN=%s: %w", dir, err)
			}
		}
		return dir, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no BULKHEAD_BIN and no go command to build them: %w", err)
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the bulkhead module")
	}
	tmp, err := os.MkdirTemp("", "bulkhead-e2e-bin-")
	if err != nil {
		return "", err
	}
	bins.tmp = tmp
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp+string(filepath.Separator), "./cmd/...")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
	}
	return tmp, nil
}

// needRoot skips a test that cannot build namespaces here, and in -short
// runs.
func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end test: needs root (network namespaces, iptables); run make test as root, or go test -short to leave these out")
	}
	for _, tool := range []string{"ip", "iptables", "redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("end-to-end test: needs %s (apt-get install redis-server redis-tools iptables iproute2): %v", tool, err)
		}
	}
}

// testTimeout bounds one test from its start to its end; every wait inside
// has a shorter bound of its own.
const testTimeout = 2 * time.Minute

// Every test has its own lab: prefix "bhe2e<n>" and subnet 198.18.(100+n).0/24
// (the demo uses 198.18.0.0/24, test/lab's own tests 198.18.25x.0/24).
func labPrefix(n int) string { return fmt.Sprintf("bhe2e%d", n) }

func labSubnet(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(100 + n), 0}), 24)
}

// testCtx is the test's context, bounded by testTimeout. Processes started
// with it stop when it ends.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLog sends a lab's log to the test's output (shown with -v or on
// failure).
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// keep leaves the temp dirs of failed tests in place for a look.
var keep = os.Getenv("BULKHEAD_E2E_KEEP") != ""

// newEnv starts the demo's world for test n: hosts cart, redis (behind the
// proxy) and intruder in namespace "demo", default mode discover. It is
// removed when the test ends, also on failure, after the end of each
// process's output is logged when the test failed.
func newEnv(t *testing.T, ctx context.Context, n int) *demo.Env {
	t.Helper()
	e, err := demo.Start(ctx, demo.Config{
		BinDir:         binDir(t),
		Prefix:         labPrefix(n),
		Subnet:         labSubnet(n),
		Hosts:          []string{"cart", "redis", "intruder"},
		ReportInterval: 200 * time.Millisecond,
		Log:            testLog(t),
		Keep:           keep,
	})
	if err != nil {
		t.Fatalf("start the environment: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpProcs(t, map[string]*lab.Proc{"bulkhead-controlplane": e.ControlPlane, "bulkhead-proxy": e.Proxy, "redis-server": e.Redis})
			if keep {
				t.Logf("kept %s and %s", e.Dir, e.Lab.Dir())
			}
		}
		if err := e.Close(); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	return e
}

// dumpProcs logs the end of each process's output.
func dumpProcs(t *testing.T, procs map[string]*lab.Proc) {
	t.Helper()
	for name, p := range procs {
		if p != nil {
			t.Logf("last output of %s (%s):\n%s", name, p.LogPath(), p.Tail(40))
		}
	}
}

// The traffic of discovery: what cart does with redis, and the commands it
// must teach.
var (
	discoveryTraffic = [][]string{
		{"SET", "cart:42", "apples"},
		{"GET", "cart:42"},
		{"EXPIRE", "cart:42", "3600"},
		{"INCR", "cart:visits"},
		{"DEL", "cart:old"},
	}
	discoveryLearned = []string{"del", "expire", "get", "incr", "set"}
)

// The key and value discovery leaves in redis.
const (
	key      = "cart:42"
	value    = "apples"
	valueRep = "$6\r\napples\r\n"
)

// discover runs traffic from cart with redis-cli in discover mode and waits
// until the control plane has learned the commands from cart.
func discover(t *testing.T, ctx context.Context, e *demo.Env, traffic [][]string, learned []string) {
	t.Helper()
	for _, args := range traffic {
		out, err := e.RedisCLI(ctx, "cart", "", args...)
		if err != nil {
			t.Fatal(err)
		}
		if c := demo.Classify(out); c != demo.Allowed {
			t.Fatalf("discover: redis-cli %s from cart: %s (%q)", strings.Join(args, " "), c, out)
		}
	}
	if err := e.WaitLearned(ctx, map[string][]string{"cart": learned}); err != nil {
		t.Fatal(err)
	}
}

// setMode switches the server's segment with the CLI and returns when the
// CLI returned; it does not wait for the proxy.
func setMode(t *testing.T, ctx context.Context, e *demo.Env, m v1alpha1.Mode) time.Time {
	t.Helper()
	out, err := e.CLI(ctx, "mode", "set", e.Server, string(m), "-n", e.Namespace)
	if err != nil {
		t.Fatalf("bulkhead mode set %s: %v", m, err)
	}
	want := fmt.Sprintf("segment %s/%s: mode %s", e.Namespace, e.Server, m)
	if strings.TrimSpace(out) != want {
		t.Errorf("bulkhead mode set printed %q, want %q", out, want)
	}
	return time.Now()
}

// setModeAndWait switches the mode and waits until the proxy enforces a
// policy in that mode (its /debug/policy says so) and has acknowledged it.
//
// Waiting for "an acknowledged version other than the one before" is not
// enough: the version before may predate the learned rules, whose own push
// (still in discover mode) then satisfies the wait.
func setModeAndWait(t *testing.T, ctx context.Context, e *demo.Env, m v1alpha1.Mode) {
	t.Helper()
	setMode(t, ctx, e, m)
	waitProxyPolicy(t, ctx, e.Host(e.Server), func(s policySummary) bool { return s.Mode == string(m) && s.Connected })
	err := e.Poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		_, synced, err := e.AckedPolicy(ctx)
		return err == nil && synced, nil
	})
	if err != nil {
		t.Fatalf("proxy did not acknowledge mode %s: %v", m, err)
	}
}

// violations lists the namespace's violations with `bulkhead violations -o
// json`.
func violations(ctx context.Context, e *demo.Env) ([]cli.FlowRecord, error) {
	out, err := e.CLI(ctx, "violations", "-n", e.Namespace, "-o", "json")
	if err != nil {
		return nil, err
	}
	var recs []cli.FlowRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		return nil, fmt.Errorf("bulkhead violations -o json: %w\n%s", err, out)
	}
	return recs, nil
}

// waitViolation polls `bulkhead violations` until one record satisfies
// match, and returns it.
func waitViolation(t *testing.T, ctx context.Context, e *demo.Env, what string, match func(cli.FlowRecord) bool) cli.FlowRecord {
	t.Helper()
	var found cli.FlowRecord
	var last []cli.FlowRecord
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		recs, err := violations(ctx, e)
		if err != nil {
			return false, nil
		}
		last = recs
		for _, r := range recs {
			if match(r) {
				found = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no violation %s: %v\nviolations: %s", what, err, recordsString(last))
	}
	return found
}

func recordsString(recs []cli.FlowRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  %s %s(%s) -> %s(%s):%d %s %s %s verdict=%s mode=%s reason=%s count=%d",
			r.Direction, r.SrcSegment, r.SrcIP, r.DstSegment, r.DstIP, r.DstPort, r.Protocol, r.Verb, r.Sub, r.Verdict, r.Mode, r.Reason, r.Count)
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

// poll calls cond every 50ms until it returns true or an error, or timeout
// passes.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v: %w", timeout, ctx.Err())
		case <-tick.C:
		}
	}
}
